-- Sends a message to an agent as a user: the user's persona block is attached for the send only
-- and detached afterwards, whatever happens (error, timeout, Ctrl-C). Prints the agent's reply.
local cli = require "letta.cli"

-- An agent id as Letta makes them: agent-<uuid>.
local AGENT_ID = "^agent%-%x+%-%x+%-%x+%-%x+%-%x+$"

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
  usage = "<username> [agent_id] <text...> [--agent ID] [--stream] [--json]",
  summary = "Send <text> to an agent as <username>: attach the user's Persona_<username> block, send\n"
    .. "with the user's identity, detach the block (also on errors and Ctrl-C). Prints the reply.",
  notes = "Which agent: --agent ID if given; else the second argument when it is an agent id\n"
    .. "(agent-<uuid>, as Letta makes them) and more arguments follow; else the default_agent\n"
    .. "setting (lettash scripts/config.lua set default_agent agent-…). Every other argument after\n"
    .. "the username is the text, joined with spaces; put '--' before a text that starts with '-'.\n"
    .. "Repairs of an earlier interrupted chat are reported on stderr, so stdout is the reply.",
  options = {
    { "agent", arg = "ID", help = "the agent to talk to (then every argument after the username is text)" },
    { "stream", help = "print the reply as it arrives (token by token)" },
  },
  args = { min = 2 },
  run = function(cx)
    local username = cx:username(cx.args[1])
    local agent_id, first = cx.opts.agent, 2
    if not agent_id and #cx.args >= 3 and cx.args[2]:match(AGENT_ID) then agent_id, first = cx.args[2], 3 end
    local text = table.concat(cx.args, " ", first)
    if text:match("^%s*$") then cli.usage_error("nothing to send: the text is empty") end
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
                        { stream = stream, stream_tokens = stream, on_event = on_event })
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
