-- The resources of the Letta API, as the notes' SDK names them (with the newer names as aliases):
-- health, agents (+ messages, blocks, passages, identities), runs, blocks (+ identities),
-- identities. Each method is a thin map from arguments to one call of client:request; the paths
-- keep Letta's exact trailing slashes (/v1/blocks/ but /v1/agents/{id}/messages).
local json = require "letta.json"
local loop = require "letta.loop"
local errors = require "letta.errors"
local clientlib = require "letta.client"

local type, pairs, ipairs, setmetatable, error, string, table = type, pairs, ipairs, setmetatable, error, string, table
local check_id, check_table, escape = clientlib.check_id, clientlib.check_table, clientlib.escape

local _M = {}

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- Lists some fields are known to be: an empty Lua table there must still be a JSON array.
local ARRAY_FIELDS = { tags = true, agent_ids = true, block_ids = true, identity_ids = true,
                       properties = true, messages = true, include = true, run_ids = true,
                       memory_blocks = true, tool_ids = true }

local function body_of(fields)
  local b = copy(fields)
  for k, v in pairs(b) do
    if ARRAY_FIELDS[k] and type(v) == "table" and next(v) == nil then b[k] = json.array() end
  end
  return b
end

-- Adds attach(a, b) and detach(a, b): PATCH <prefix(a)>/attach/<b> (and /detach/), with no body.
-- Letta links things this way (blocks to agents, identities to agents and to blocks). opts (optional)
-- goes to client:request (e.g. {safe = false}: not repeated after a timeout).
local function linking(methods, prefix, what_a, what_b)
  for _, verb in ipairs({ "attach", "detach" }) do
    methods[verb] = function(self, a, b, opts)
      check_id(a, 1, verb, what_a)
      check_id(b, 2, verb, what_b)
      return self._c:patch(prefix(a) .. "/" .. verb .. "/" .. escape(b), opts)
    end
  end
end

-- A resource: methods get `self._c`, the client.
local function resource(client, methods)
  return setmetatable({ _c = client }, { __index = methods })
end

-- Adds list(query) and each(query) for a collection path built by path_of(self, ...).
local function listing(methods, path_of)
  methods.list = function(self, ...)
    local path, query = path_of(self, "list", ...)
    return self._c:get(path, { query = query })
  end
  methods.each = function(self, ...)
    local path, query = path_of(self, "each", ...)
    return self._c:each_item(path, query)
  end
end

-- ---------------------------------------------------------------------------------------------
local Health = {}
function Health:check() return self._c:get("/v1/health/") end

-- ---------------------------------------------------------------------------------------------
local Agents = {}
listing(Agents, function(self, fname, query)
  return "/v1/agents/", check_table(query, 1, fname, true)
end)
function Agents:retrieve(id, opts)
  check_id(id, 1, "retrieve", "agent id")
  return self._c:get("/v1/agents/" .. escape(id), { query = check_table(opts, 2, "retrieve", true) })
end
function Agents:context(id)
  check_id(id, 1, "context", "agent id")
  return self._c:get("/v1/agents/" .. escape(id) .. "/context")
end
function Agents:create(fields)
  return self._c:post("/v1/agents/", { body = body_of(check_table(fields, 1, "create", true)) })
end
function Agents:modify(id, fields)
  check_id(id, 1, "modify", "agent id")
  return self._c:patch("/v1/agents/" .. escape(id), { body = body_of(check_table(fields, 2, "modify")) })
end
Agents.update = Agents.modify
function Agents:delete(id)
  check_id(id, 1, "delete", "agent id")
  return self._c:delete("/v1/agents/" .. escape(id))
end

-- ---------------------------------------------------------------------------------------------
-- Messages. A request is a string (one user message), or a table with `text` (one user message)
-- or `messages`, plus any field of LettaRequest. `sender_id` (alias `identity_id`: the notes'
-- name) is set on every message: that is how Letta knows on whose behalf they are sent.
local Messages = {}

local function message_body(req, fname)
  if type(req) == "string" then req = { text = req } end
  check_table(req, 2, fname)
  local b = copy(req)
  local sender = b.sender_id or b.identity_id
  b.sender_id, b.identity_id, b.text = nil, nil, nil
  if req.text ~= nil then
    if type(req.text) ~= "string" then error("bad argument #2 to '" .. fname .. "' (text must be a string)", 3) end
    b.messages = { { role = "user", content = req.text } }
  end
  if b.messages == nil and b.input == nil then
    error("bad argument #2 to '" .. fname .. "' (text, messages or input expected)", 3)
  end
  if b.messages then
    local msgs = {}
    for i, m in ipairs(b.messages) do
      local c = copy(m)
      if sender and c.sender_id == nil then c.sender_id = sender end
      msgs[i] = c
    end
    b.messages = json.array(msgs)
  end
  return b
end

function Messages:create(agent_id, req)
  check_id(agent_id, 1, "create", "agent id")
  local body = message_body(req, "create")
  return self._c:post("/v1/agents/" .. escape(agent_id) .. "/messages",
                      { body = body, timeout = req and type(req) == "table" and req.timeout or nil })
end
listing(Messages, function(self, fname, agent_id, query)
  check_id(agent_id, 1, fname, "agent id")
  return "/v1/agents/" .. escape(agent_id) .. "/messages", check_table(query, 2, fname, true)
end)
function Messages:create_async(agent_id, req)
  check_id(agent_id, 1, "create_async", "agent id")
  return self._c:post("/v1/agents/" .. escape(agent_id) .. "/messages/async", { body = message_body(req, "create_async") })
end
Messages.createAsync = Messages.create_async
function Messages:modify(agent_id, message_id, fields)
  check_id(agent_id, 1, "modify", "agent id")
  check_id(message_id, 2, "modify", "message id")
  local ok, err = pcall(self._c.patch, self._c, "/v1/agents/" .. escape(agent_id) .. "/messages/" .. escape(message_id),
                        { body = body_of(check_table(fields, 3, "modify")) })
  if ok then return err end
  if errors.is(err) and err.status == 405 then
    err.code = "unsupported"
    err.message = "this server does not allow editing messages (" .. err.message .. ")"
  end
  error(err, 2)
end
Messages.update = Messages.modify
function Messages:cancel(agent_id, run_ids)
  check_id(agent_id, 1, "cancel", "agent id")
  local body = run_ids and { run_ids = json.array(copy(run_ids)) } or json.object()
  return self._c:post("/v1/agents/" .. escape(agent_id) .. "/messages/cancel", { body = body, safe = true })
end

-- Reads a stream: returns an iterator of decoded events (pings skipped; `[DONE]` ends it; an
-- `event: error` raises letta.Error). The open request is the for-loop's closing value.
local function event_iterator(client, req, path)
  local queue, qi, finished = {}, 0, false
  local function next_event()
    while true do
      if qi < #queue then
        qi = qi + 1
        local ev = queue[qi]
        if ev.data == "[DONE]" then
          finished = true
          req:close()
          return nil
        end
        local ok, value = pcall(json.decode, ev.data)
        if ev.event == "error" then
          req:close()
          local msg = ok and type(value) == "table" and (value.message or value.error_message or value.detail) or ev.data
          if type(msg) == "table" then msg = msg.message or json.encode(msg) end
          error(errors.new{ status = 0, code = "stream_error", message = tostring(msg), body = ev.data,
                            method = "POST", path = path, retryable = false }, 2)
        end
        if not ok then
          req:close()
          error(errors.new{ status = 0, code = "invalid_json", message = "the server sent an invalid event",
                            body = ev.data, method = "POST", path = path, retryable = false }, 2)
        end
        if not (type(value) == "table" and value.message_type == "ping") then return value end
      elseif finished then
        return nil
      else
        local evs = req:events()
        if #evs > 0 then
          queue, qi = evs, 0
        elseif req:done() then
          finished = true
          local status, _, kind, message = req:result()
          req:close()
          if kind then
            error(errors.new{ status = 0, code = kind, message = message, method = "POST", path = path }, 2)
          end
          return nil
        else
          loop.await(req)
        end
      end
    end
  end
  return next_event, nil, nil, req
end

-- messages:stream(agent_id, req [, on_event]) -> iterator of events, or (with on_event) calls it
-- for each event and returns {messages=, stop_reason=, usage=}. req.stream_tokens asks for token
-- deltas. Uses the /messages/stream route, which every server accepts whatever client it thinks
-- it is talking to (POST /messages with streaming=true is refused to non-SDK User-Agents).
function Messages:stream(agent_id, req, on_event)
  check_id(agent_id, 1, "stream", "agent id")
  local body = message_body(req, "stream")
  body.streaming = nil
  local path = "/v1/agents/" .. escape(agent_id) .. "/messages/stream"
  local ok, r = pcall(self._c.request, self._c, "POST", path, { body = body, stream = true, safe = false })
  -- (only when the route itself is missing: a 404 about the agent must not send the message again)
  if not ok and errors.is(r) and (r.status == 405 or (r.status == 404 and r.message == "Not Found")) then
    -- a server without the old route: the 1.x way, declaring ourselves a 1.x-compatible client
    path = "/v1/agents/" .. escape(agent_id) .. "/messages"
    body.streaming = true
    r = self._c:request("POST", path, { body = body, stream = true, safe = false,
                                        headers = { "X-Stainless-Package-Version: 1.0.0" } })
  elseif not ok then
    error(r, 2)
  end
  local iter, s, c, req = event_iterator(self._c, r, path)
  if on_event == nil then return iter, s, c, req end
  local result = { messages = {} }
  for ev in iter do
    if ev.message_type == "stop_reason" then result.stop_reason = ev
    elseif ev.message_type == "usage_statistics" then result.usage = ev
    else result.messages[#result.messages + 1] = ev end
    on_event(ev)
  end
  return result
end

-- ---------------------------------------------------------------------------------------------
local Runs = {}
function Runs:retrieve(id)
  check_id(id, 1, "retrieve", "run id")
  return self._c:get("/v1/runs/" .. escape(id))
end
listing(Runs, function(self, fname, query) return "/v1/runs/", check_table(query, 1, fname, true) end)
function Runs:messages(id, query)
  check_id(id, 1, "messages", "run id")
  return self._c:get("/v1/runs/" .. escape(id) .. "/messages", { query = check_table(query, 2, "messages", true) })
end

local TERMINAL = { completed = true, failed = true, cancelled = true }

-- runs:wait(id, {timeout = 300, interval = 0.5}) -> the run once completed, failed or cancelled.
function Runs:wait(id, opts)
  check_id(id, 1, "wait", "run id")
  opts = check_table(opts, 2, "wait", true)
  local deadline = loop.now() + (opts.timeout or 300)
  local interval = opts.interval or 0.5
  while true do
    local run = self:retrieve(id)
    if TERMINAL[run.status] then return run end
    if loop.now() >= deadline then
      error(errors.new{ status = 0, code = "timeout", method = "GET", path = "/v1/runs/" .. id,
                        message = string.format("run still %s after %gs", tostring(run.status), opts.timeout or 300),
                        retryable = true }, 2)
    end
    loop.sleep(interval)
  end
end

-- ---------------------------------------------------------------------------------------------
-- Blocks. blocks:list is documented as unreliable for discovery (it pages at 50 and leaves out
-- hidden and template blocks): keep the ids of the blocks you create.
local Blocks = {}

local function block_body(fields, n, fname)
  local b = body_of(check_table(fields, n, fname))
  if type(b.value) == "table" then b.value = json.encode(b.value) end
  return b
end

function Blocks:create(fields)
  local b = block_body(fields, 1, "create")
  if type(b.label) ~= "string" then error("bad argument #1 to 'create' (label expected)", 2) end
  if type(b.value) ~= "string" then error("bad argument #1 to 'create' (value expected: a string or a table)", 2) end
  return self._c:post("/v1/blocks/", { body = b })
end
function Blocks:retrieve(id)
  check_id(id, 1, "retrieve", "block id")
  return self._c:get("/v1/blocks/" .. escape(id))
end
function Blocks:modify(id, fields)
  check_id(id, 1, "modify", "block id")
  return self._c:patch("/v1/blocks/" .. escape(id), { body = block_body(fields, 2, "modify") })
end
Blocks.update = Blocks.modify
listing(Blocks, function(self, fname, query) return "/v1/blocks/", check_table(query, 1, fname, true) end)
function Blocks:delete(id)
  check_id(id, 1, "delete", "block id")
  return self._c:delete("/v1/blocks/" .. escape(id))
end

-- block <-> identity
local BlockIdentities = {}
linking(BlockIdentities, function(block_id) return "/v1/blocks/" .. escape(block_id) .. "/identities" end,
        "block id", "identity id")

-- ---------------------------------------------------------------------------------------------
-- An agent's core-memory blocks.
local AgentBlocks = {}
local function core_memory(agent_id) return "/v1/agents/" .. escape(agent_id) .. "/core-memory/blocks" end

linking(AgentBlocks, core_memory, "agent id", "block id") -- attach is idempotent; detach 404s if not attached
listing(AgentBlocks, function(self, fname, agent_id, query)
  check_id(agent_id, 1, fname, "agent id")
  return core_memory(agent_id), check_table(query, 2, fname, true)
end)
function AgentBlocks:retrieve(agent_id, label)
  check_id(agent_id, 1, "retrieve", "agent id")
  check_id(label, 2, "retrieve", "block label")
  return self._c:get(core_memory(agent_id) .. "/" .. escape(label))
end
function AgentBlocks:modify(agent_id, label, fields)
  check_id(agent_id, 1, "modify", "agent id")
  check_id(label, 2, "modify", "block label")
  return self._c:patch(core_memory(agent_id) .. "/" .. escape(label), { body = block_body(fields, 3, "modify") })
end
AgentBlocks.update = AgentBlocks.modify

-- ---------------------------------------------------------------------------------------------
-- Identities (deprecated on the server and gone from the official SDK; still served).
local Identities = {}
listing(Identities, function(self, fname, query) return "/v1/identities/", check_table(query, 1, fname, true) end)

local function identity_body(fields, n, fname, required)
  local b = body_of(check_table(fields, n, fname))
  if required then
    for _, k in ipairs({ "identifier_key", "name" }) do
      if type(b[k]) ~= "string" or b[k] == "" then error(string.format("bad argument #%d to '%s' (%s expected)", n, fname, k), 3) end
    end
    b.identity_type = b.identity_type or "user"
  end
  return b
end

function Identities:create(fields)
  return self._c:post("/v1/identities/", { body = identity_body(fields, 1, "create", true) })
end
function Identities:upsert(fields)
  return self._c:put("/v1/identities/", { body = identity_body(fields, 1, "upsert", true) })
end
function Identities:retrieve(id)
  check_id(id, 1, "retrieve", "identity id")
  return self._c:get("/v1/identities/" .. escape(id))
end
function Identities:modify(id, fields)
  check_id(id, 1, "modify", "identity id")
  return self._c:patch("/v1/identities/" .. escape(id), { body = identity_body(fields, 2, "modify") })
end
Identities.update = Identities.modify
function Identities:delete(id)
  check_id(id, 1, "delete", "identity id")
  return self._c:delete("/v1/identities/" .. escape(id))
end
function Identities:count() return self._c:get("/v1/identities/count") end
function Identities:agents(id, query)
  check_id(id, 1, "agents", "identity id")
  return self._c:get("/v1/identities/" .. escape(id) .. "/agents", { query = check_table(query, 2, "agents", true) })
end
function Identities:blocks(id, query)
  check_id(id, 1, "blocks", "identity id")
  return self._c:get("/v1/identities/" .. escape(id) .. "/blocks", { query = check_table(query, 2, "blocks", true) })
end

-- agent <-> identity
local AgentIdentities = {}
linking(AgentIdentities, function(agent_id) return "/v1/agents/" .. escape(agent_id) .. "/identities" end,
        "agent id", "identity id")

-- ---------------------------------------------------------------------------------------------
-- Archival memory (passages).
local Passages = {}
local function archival(agent_id) return "/v1/agents/" .. escape(agent_id) .. "/archival-memory" end

listing(Passages, function(self, fname, agent_id, query)
  check_id(agent_id, 1, fname, "agent id")
  return archival(agent_id), check_table(query, 2, fname, true)
end)

-- passages:create(agent_id, {text=, tags=, created_at=}) -> array of passages (Letta's shape)
function Passages:create(agent_id, fields)
  check_id(agent_id, 1, "create", "agent id")
  if type(fields) == "string" then fields = { text = fields } end
  local b = body_of(check_table(fields, 2, "create"))
  if type(b.text) ~= "string" then error("bad argument #2 to 'create' (text expected)", 2) end
  return self._c:post(archival(agent_id), { body = b, timeout = fields.timeout })
end

-- passages:search(agent_id, {query=, tags=, match="any"|"all", top_k=, start_datetime=,
-- end_datetime=}) -> {results = {...}, count = n}
function Passages:search(agent_id, opts)
  check_id(agent_id, 1, "search", "agent id")
  if type(opts) == "string" then opts = { query = opts } end
  local q = copy(check_table(opts, 2, "search"))
  if type(q.query) ~= "string" then error("bad argument #2 to 'search' (query expected)", 2) end
  if q.match ~= nil then
    if q.match ~= "any" and q.match ~= "all" then error("bad argument #2 to 'search' (match must be \"any\" or \"all\")", 2) end
    q.tag_match_mode, q.match = q.match, nil
  end
  return self._c:get(archival(agent_id) .. "/search", { query = q })
end
function Passages:delete(agent_id, id)
  check_id(agent_id, 1, "delete", "agent id")
  check_id(id, 2, "delete", "passage id")
  return self._c:delete(archival(agent_id) .. "/" .. escape(id))
end
-- Removed from Letta servers in 2025 (no replacement: delete, then create).
function Passages:modify(agent_id, id, fields)
  check_id(agent_id, 1, "modify", "agent id")
  check_id(id, 2, "modify", "passage id")
  local b = body_of(check_table(fields, 3, "modify"))
  b.id = b.id or id
  local ok, res = pcall(self._c.patch, self._c, archival(agent_id) .. "/" .. escape(id), { body = b })
  if ok then return res end
  if errors.is(res) and (res.status == 404 or res.status == 405) then
    res.code = "unsupported"
    res.message = "this server cannot modify passages (removed from Letta in 2025): delete it and create a new one"
  end
  error(res, 2)
end
Passages.update = Passages.modify

-- ---------------------------------------------------------------------------------------------

function _M.attach(client)
  client.health = resource(client, Health)
  client.agents = resource(client, Agents)
  client.agents.messages = resource(client, Messages)
  client.agents.blocks = resource(client, AgentBlocks)
  client.agents.passages = resource(client, Passages)
  client.agents.identities = resource(client, AgentIdentities)
  client.agents.core_memory = client.agents.blocks -- the notes' older name
  client.agents.archival_memory = client.agents.passages
  client.runs = resource(client, Runs)
  client.blocks = resource(client, Blocks)
  client.blocks.identities = resource(client, BlockIdentities)
  client.identities = resource(client, Identities)
end

return _M
