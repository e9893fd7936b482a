-- Lists, shows, creates and deletes the server's agents: what a user needs before the other
-- scripts, which all take an agent id. create uses a model (and an embedding model) the server
-- lists, as Letta 0.16.8 refuses any other; --quiet prints the new id alone, for $(...).
local cli = require "letta.cli"
local letta = require "letta"
local resources = require "letta.resources"

local json = letta.json

local function handles(list)
  local t = {}
  for _, m in ipairs(list or {}) do
    if type(m) == "table" and type(m.handle) == "string" then t[#t + 1] = m.handle end
  end
  return t
end

-- The handle models:pick(wanted) chooses (wanted, else the environment's, else the first listed),
-- or a one-line error listing what the server offers. embedding: nil when the server lists no
-- embedding model and none was asked for (the agent then searches its archive by text).
local function pick(models, wanted, what, env)
  local ok, handle = pcall(models.pick, models, wanted)
  if ok then return handle end
  if not letta.is_error(handle, "no_model") then error(handle, 0) end
  local listed, from = handles(models:list()), ""
  if not wanted and (os.getenv(env) or "") ~= "" then wanted, from = os.getenv(env), " (from " .. env .. ")" end
  if not wanted and #listed == 0 and what == "embedding model" then return nil end
  if #listed == 0 then error("the server lists no " .. what .. " (configure a provider on the server)", 0) end
  error(string.format("the server does not list the %s '%s'%s; it lists: %s", what, wanted, from,
                      table.concat(listed, ", ")), 0)
end

-- A missing agent, in one line that says where to look.
local function retrieve(client, id, what)
  cli.check_id(id, "agent id")
  local ok, agent = pcall(client.agents.retrieve, client.agents, id)
  if ok then return agent end
  if letta.is_error(agent, "not_found") then
    error("no agent " .. id .. " on " .. client.base_url .. (what or "") .. " (agents.lua list shows them)", 0)
  end
  error(agent, 0)
end

local function list_of(v) return type(v) == "table" and v or {} end
local function model_of(a) return a.model or (type(a.llm_config) == "table" and a.llm_config.handle) or nil end
local function embedding_of(a)
  return a.embedding or (type(a.embedding_config) == "table" and a.embedding_config.handle) or nil
end
local function str(v) return (v == nil or v == json.null) and "-" or tostring(v) end

-- The blocks of an agent as Letta 0.16.8 loads them for a legacy client (agent.blocks, or
-- agent.memory.blocks).
local function blocks_of(a)
  if type(a.blocks) == "table" then return a.blocks end
  return list_of(type(a.memory) == "table" and a.memory.blocks)
end

-- An agent as list shows it. Only chosen fields: an agent also holds its tools' environment
-- variables and secrets, which never leave the server through this script.
local function summary(a)
  local labels = {}
  for _, b in ipairs(blocks_of(a)) do labels[#labels + 1] = b.label end
  return { id = a.id, name = a.name, model = model_of(a), embedding = embedding_of(a), description = a.description,
           created_at = a.created_at, block_labels = cli.array(labels) }
end

local function details(a)
  local r = summary(a)
  r.block_labels = nil
  local blocks, tools, identities = {}, {}, {}
  for _, b in ipairs(blocks_of(a)) do
    blocks[#blocks + 1] = { id = b.id, label = b.label, chars = type(b.value) == "string" and utf8.len(b.value) or nil }
  end
  for _, t in ipairs(list_of(a.tools)) do tools[#tools + 1] = { id = t.id, name = t.name } end
  for _, i in ipairs(list_of(a.identities)) do
    identities[#identities + 1] = { id = i.id, identifier_key = i.identifier_key, name = i.name }
  end
  if #identities == 0 then
    for _, id in ipairs(list_of(a.identity_ids)) do identities[#identities + 1] = { id = id } end
  end
  r.blocks, r.tools, r.identities = cli.array(blocks), cli.array(tools), cli.array(identities)
  r.tags = cli.array(list_of(a.tags))
  r.timezone = a.timezone
  return r
end

-- Rows as aligned columns (the last one unpadded).
local function columns(rows)
  local w = {}
  for _, r in ipairs(rows) do
    for i = 1, #r - 1 do w[i] = math.max(w[i] or 0, utf8.len(r[i]) or #r[i]) end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local parts = {}
    for i = 1, #r - 1 do parts[i] = r[i] .. string.rep(" ", w[i] - (utf8.len(r[i]) or #r[i])) end
    parts[#r] = r[#r]
    out[#out + 1] = table.concat(parts, "  ")
  end
  return out
end

local commands = {}

function commands.list(cx)
  local c, list = cx:client(), {}
  for a in c.agents:each() do list[#list + 1] = summary(a) end
  list = cli.array(list)
  local lines = {}
  if cx.opts.quiet then
    for _, a in ipairs(list) do lines[#lines + 1] = a.id end
    return list, lines
  end
  local rows = { { "ID", "NAME", "MODEL", "BLOCKS" } }
  for _, a in ipairs(list) do rows[#rows + 1] = { a.id, str(a.name), str(a.model), tostring(#a.block_labels) } end
  if #list > 0 then lines = columns(rows) end
  lines[#lines + 1] = #list == 0 and ("no agents on " .. c.base_url .. " (create one: agents.lua create NAME)")
                      or string.format("%d agent%s", #list, #list == 1 and "" or "s")
  return list, lines
end

function commands.show(cx, id)
  local r = details(retrieve(cx:client(), id))
  local function names(t, f)
    local out = {}
    for _, x in ipairs(t) do out[#out + 1] = f(x) end
    return #out > 0 and table.concat(out, ", ") or "none"
  end
  local lines = {
    r.id .. "  " .. str(r.name),
    "  model:       " .. str(r.model),
    "  embedding:   " .. (r.embedding and tostring(r.embedding) or "none (archival search is a text search)"),
  }
  if r.description and r.description ~= json.null then lines[#lines + 1] = "  description: " .. r.description end
  lines[#lines + 1] = "  created:     " .. str(r.created_at)
  lines[#lines + 1] = string.format("  blocks:      %d", #r.blocks)
  for _, b in ipairs(r.blocks) do
    lines[#lines + 1] = string.format("    %-24s %s%s", str(b.label), str(b.id), b.chars and (" (" .. b.chars .. " chars)") or "")
  end
  local tools = names(r.tools, function(t) return str(t.name) end)
  lines[#lines + 1] = string.format("  tools:       %d%s", #r.tools, #r.tools > 0 and (" (" .. tools .. ")") or "")
  lines[#lines + 1] = "  identities:  "
    .. names(r.identities, function(i) return i.identifier_key and (i.identifier_key .. " " .. i.id) or i.id end)
  lines[#lines + 1] = "  tags:        " .. names(r.tags, tostring)
  return r, lines
end

function commands.create(cx, name)
  if not name:find("%S") then cli.usage_error("the agent name is empty") end
  local bad = resources.bad_name_char(name)
  if bad then
    cli.usage_error("agent name '" .. name .. "' has " .. bad
                    .. ": Letta allows only letters, digits, spaces, '_', '-' and apostrophes")
  end
  local c = cx:client()
  local model = pick(c.models, cx.opts.model, "model", "LETTA_MODEL")
  local embedding = pick(c.models.embedding, cx.opts.embedding, "embedding model", "LETTA_EMBEDDING")
  -- the two blocks of core memory Letta's own examples give an agent (users' personas come and go)
  local a = c.agents:create{
    name = name, model = model, embedding = embedding, description = cx.opts.description,
    memory_blocks = { { label = "human", value = "The people I talk to." },
                      { label = "persona", value = "A helpful assistant." } },
  }
  local r = summary(a)
  if cx.opts.quiet then return r, { a.id } end
  return r, { string.format("created agent %s (%s; model %s, embedding %s)", a.id, name, model,
                            embedding or "none: archival search is a text search") }
end

function commands.delete(cx, id)
  local c = cx:client()
  local a = retrieve(c, id, ": nothing deleted")
  c.agents:delete(id)
  local r = summary(a)
  return r, { string.format("deleted agent %s (%s), with its messages and archival memory", id, str(a.name)) }
end

local ARITY = { list = 0, show = 1, create = 1, delete = 1 }
local ARG = { show = "an agent id", create = "a NAME", delete = "an agent id" }

cli.main{
  name = "agents",
  usage = "list | show <id> | create <name> [--model HANDLE] [--embedding HANDLE] [--description TEXT] | delete <id> [--quiet] [--json]",
  summary = "List the server's agents (id, name, model, number of core-memory blocks), show one (its\n"
    .. "model, blocks, tools, identities), create one with a model the server lists, or delete one.",
  notes = "create: --model (else LETTA_MODEL, else the first model the server lists) must be one the\n"
    .. "server lists (GET /v1/models/); the same for --embedding (LETTA_EMBEDDING); without any\n"
    .. "embedding model the agent's archival search is a text search. The agent gets two core-memory\n"
    .. "blocks, human and persona. Names: letters, digits, spaces, '_', '-' and apostrophes.\n"
    .. "To capture the new id:  AGENT=$(bin/lettash scripts/agents.lua create support --quiet)\n"
    .. "delete removes the agent with its messages and archival memory (not the users' persona\n"
    .. "blocks, which belong to the users).",
  options = {
    { "model", arg = "HANDLE", help = "create: the LLM (provider/name), one the server lists" },
    { "embedding", arg = "HANDLE", help = "create: the embedding model, one the server lists" },
    { "description", arg = "TEXT", help = "create: the agent's description" },
    { "quiet", help = "create: print only the new agent's id; list: only the ids" },
  },
  args = { min = 1, max = 2 },
  run = function(cx)
    local cmd, arg = cx.args[1], cx.args[2]
    local want = ARITY[cmd]
    if not want then cli.usage_error("unknown command '" .. cmd .. "' (list, show, create or delete; try --help)") end
    if want == 0 and arg then cli.usage_error("list takes no arguments") end
    if want == 1 and not arg then cli.usage_error(cmd .. " needs " .. ARG[cmd] .. " (try --help)") end
    if cmd ~= "create" and (cx.opts.model or cx.opts.embedding or cx.opts.description) then
      cli.usage_error("--model, --embedding and --description are for create")
    end
    return commands[cmd](cx, arg)
  end,
}
