-- Sends a message to an agent as a user: the user's persona block is attached for the send only
-- and detached afterwards, whatever happens (error, timeout, Ctrl-C). Prints the agent's reply.
local cli = require "letta.cli"
local users = require "letta.users"

-- An agent id must be agent-<uuid>, as Letta makes them: a usage error names the form otherwise.
local function agent_id_of(s, where)
  if not users.is_agent_id(s) then
    cli.usage_error(string.format("%s '%s' is not an agent id: expected the form agent-<uuid> "
                                  .. "(agent-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", where, s))
  end
  return s
end

-- The text of a message: a string, or Letta's content parts ({type = "text", text = ...}).
local function text_of(content)
  if type(content) == "string" then return content end
  local parts = {}
  if type(content) == "table" then
    for _, p in ipairs(content) do
      if type(p) == "table" and type(p.text) == "string" then parts[#parts + 1] = p.text end
    end
  end
  return table.concat(parts)
end

cli.main{
  name = "chat",
  usage = "<username> [agent_id] <text...> [--agent ID] [--stream] [--wait SECONDS] [--json]",
  summary = "Send <text> to an agent as <username>: attach the user's Persona_<username> block, send\n"
    .. "with the user's identity, detach the block (also on errors and Ctrl-C). Prints the reply.",
  notes = "Which agent: --agent ID if given; else the second argument when it starts with 'agent-'\n"
    .. "(it is then the agent id, and must be agent-<uuid> as Letta makes them); else the\n"
    .. "default_agent setting (lettash scripts/config.lua set default_agent agent-…). The other\n"
    .. "arguments after the username are the text, joined with spaces, and there must be one: a\n"
    .. "forgotten text is an error, never an agent id sent as the message. A text that starts with\n"
    .. "'agent-' needs --agent; put '--' before a text that starts with '-'.\n"
    .. "Chats from this store on one agent take turns; a chat from another lettash store (another\n"
    .. "host or Unix account) is seen by its persona on the agent, waited for, then reported with\n"
    .. "that user's name. --wait bounds both waits (default: 120 s for this store, 60 s for another).\n"
    .. "Repairs of an earlier interrupted chat are reported on stderr, so stdout is the reply.",
  options = {
    { "agent", arg = "ID", help = "the agent to talk to (then every argument after the username is text)" },
    { "stream", help = "print the reply as it arrives (token by token)" },
    { "wait", arg = "SECONDS", help = "how long to wait while another chat holds the agent" },
  },
  args = { min = 2 },
  run = function(cx)
    local username = cx:username(cx.args[1])
    local agent_id, first = cx.opts.agent, 2
    if agent_id then
      agent_id_of(agent_id, "--agent")
    elseif cx.args[2]:match("^agent%-") then
      agent_id, first = agent_id_of(cx.args[2], "the second argument"), 3
    end
    local wait
    if cx.opts.wait then
      wait = tonumber(cx.opts.wait)
      if not wait or wait < 0 or wait ~= wait or wait == math.huge then
        cli.usage_error("--wait must be a number of seconds, 0 or more")
      end
    end
    local text = table.concat(cx.args, " ", first)
    if text:match("^%s*$") then
      cli.usage_error(first == 3 and "nothing to send: give the text after the agent id" or "nothing to send: the text is empty")
    end
    if not agent_id then
      agent_id = cx:settings().default_agent
      if type(agent_id) ~= "string" or agent_id == "" then
        cli.usage_error("no agent: give an agent id (agent-…) or set one with: lettash scripts/config.lua set default_agent agent-…")
      end
    end
    local streamed = false
    local on_event
    if cx.opts.stream and not cx.json then
      on_event = function(ev)
        if type(ev) == "table" and ev.message_type == "assistant_message" then
          local piece = text_of(ev.content)
          if piece ~= "" then
            io.stdout:write(piece)
            io.stdout:flush()
            streamed = true
          end
        end
      end
    end
    local stream = cx.opts.stream and true or false
    local ok, r = pcall(cx:users().chat, cx:users(), username, agent_id, text,
                        { stream = stream, stream_tokens = stream, on_event = on_event,
                          foreign_timeout = wait, lease_timeout = wait })
    if not ok then
      if streamed then io.stdout:write("\n") end -- end the partial reply before the error line
      error(r, 0)
    end
    r.actions = cli.array(r.actions)
    r.username, r.agent_id = r.username or username, r.agent_id or agent_id
    if not cx.json then
      for _, a in ipairs(r.actions) do io.stderr:write(username, ": ", a, "\n") end
    end
    if streamed then
      io.stdout:write("\n")
      return r, {}
    end
    return r, { text_of(r.reply) }
  end,
}
