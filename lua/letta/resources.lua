-- The resources of the Letta API, as the notes' SDK names them (with the newer names as aliases):
-- health, models (+ embedding), agents (+ messages, blocks, passages, identities), runs, blocks
-- (+ identities), identities (+ agents, blocks), archives (+ passages). Each method is a thin map
-- from arguments to one call of client:request; the paths keep Letta's exact trailing slashes
-- (/v1/blocks/ but /v1/agents/{id}/messages). Where Letta 0.16.8 answers a request with a 500 or a
-- confusing 400, the request is refused here first, with one clear line.
local json = require "letta.json"
local loop = require "letta.loop"
local errors = require "letta.errors"
local clientlib = require "letta.client"

local type, pairs, ipairs, setmetatable, error, pcall, next, string, table, os, utf8 =
  type, pairs, ipairs, setmetatable, error, pcall, next, string, table, os, utf8
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

-- A resource: methods get `self._c`, the client. call (optional) makes it callable too, so that
-- client.identities.blocks:list(id) and the older client.identities:blocks(id) both work.
local function resource(client, methods, call)
  return setmetatable({ _c = client }, { __index = methods, __call = call })
end

-- A walk (client:each_item) that asks for the page after `page` with before = its last id, and
-- stops when that makes no progress.
local function before_last(q, page)
  if page[#page].id == q.before then return false end
  q.before = page[#page].id
  return true
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
-- Models: the handles (provider/name) an agent can be created with. Letta 0.16.8 refuses an agent
-- without a model (400), a handle without a provider (400) and one it does not serve (404).
local Models, EmbeddingModels = {}, {}
function Models:list(query)
  return self._c:get("/v1/models/", { query = check_table(query, 1, "list", true) })
end
function EmbeddingModels:list() return self._c:get("/v1/models/embedding") end

-- The handle to use: `wanted` (else the environment variable `env`) when the server lists it, else
-- the first one listed. A letta.Error (code "no_model") when there is none to use.
local function pick(self, wanted, env, path)
  if wanted ~= nil and type(wanted) ~= "string" then
    error("bad argument #1 to 'pick' (model handle expected, got " .. type(wanted) .. ")", 3)
  end
  if wanted == nil or wanted == "" then wanted = os.getenv(env) end
  if wanted == "" then wanted = nil end
  local first
  for _, m in ipairs(self:list() or {}) do
    if type(m) == "table" and type(m.handle) == "string" then
      if m.handle == wanted then return wanted end
      first = first or m.handle
    end
  end
  if wanted or not first then
    error(errors.new{ status = 0, code = "no_model", method = "GET", path = path, retryable = false,
                      message = wanted and ("the server does not list the model " .. wanted)
                                or "the server lists no model (configure a provider on the server)" }, 3)
  end
  return first
end

-- models:pick([handle]) -> an LLM handle the server serves: handle (default $LETTA_MODEL) if it is
-- listed, else the first one listed. models.embedding:pick([handle]): the same for embedding
-- models ($LETTA_EMBEDDING).
function Models:pick(wanted) return pick(self, wanted, "LETTA_MODEL", "/v1/models/") end
function EmbeddingModels:pick(wanted) return pick(self, wanted, "LETTA_EMBEDDING", "/v1/models/embedding") end

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
-- Letta 0.16.8 answers 500 for an agent name outside ^[\w '\-]+$ (schemas/agent.py:
-- CreateAgent.validate_name). Python's \w is Unicode (letters and digits of any script, and '_'):
-- ASCII is checked exactly; beyond it only characters that are surely not \w are refused, so that
-- no valid name is: these ranges (punctuation, symbols, emoji, combining marks, odd spaces, private
-- use), each checked against Python's re, hold no \w character.
local NOT_WORD = {
  0x80, 0xA9, 0xAB, 0xB1, 0xB4, 0xB4, 0xB6, 0xB8, 0xBB, 0xBB, 0xBF, 0xBF, 0xD7, 0xD7, 0xF7, 0xF7,
  0x300, 0x36F, 0x2000, 0x206F, 0x209D, 0x20FF, 0x218A, 0x245F, 0x249C, 0x24E9, 0x2500, 0x2775,
  0x2794, 0x2BFF, 0x2E00, 0x2E2E, 0x2E30, 0x2E7F, 0x3000, 0x3004, 0x3008, 0x3020, 0x302A, 0x3030,
  0x3036, 0x3037, 0x303D, 0x303F, 0xE000, 0xF8FF, 0xFE00, 0xFE0F, 0xFE30, 0xFE4F, 0xFF00, 0xFF0F,
  0xFF1A, 0xFF20, 0xFF3B, 0xFF40, 0xFF5B, 0xFF65, 0xFFF0, 0xFFFF, 0x1F000, 0x1F0FF, 0x1F10D, 0x1FAFF,
  0xE0000, 0xE0FFF,
}

-- The first character of an agent name that Letta refuses (quoted), or nil.
local function bad_name_char(name)
  if not utf8.len(name) then return "bytes that are not UTF-8" end
  for _, c in utf8.codes(name) do
    local ch = utf8.char(c)
    if c < 0x80 then
      if ch:match("%c") then return string.format("a control character (0x%02X)", c) end
      if not ch:match("[%w_ '%-]") then return "'" .. ch .. "'" end
    else
      for i = 1, #NOT_WORD, 2 do
        if c >= NOT_WORD[i] and c <= NOT_WORD[i + 1] then return string.format("'%s' (U+%04X)", ch, c) end
      end
    end
  end
end
_M.bad_name_char = bad_name_char

-- agents:create{name=, model=, embedding=, memory_blocks=, ...} -> agent. Letta 0.16.8 needs a
-- model handle (client.models:pick()); a name it would refuse with a 500 is refused here.
function Agents:create(fields)
  local b = body_of(check_table(fields, 1, "create", true))
  if type(b.name) == "string" and b.name ~= "" then
    local bad = bad_name_char(b.name)
    if bad then
      error("bad argument #1 to 'create' (agent name has " .. bad .. ": Letta allows only letters, digits, "
            .. "spaces, '_', '-' and apostrophes)", 2)
    end
  end
  return self._c:post("/v1/agents/", { body = b })
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
  -- Letta 0.16.8 answers 400 "Message content is empty or invalid" for "" or no content parts
  -- (helpers/message_helper.py:_convert_message_create_to_message); a blank string is accepted.
  local function empty(v) return v == "" or (type(v) == "table" and next(v) == nil) end
  if empty(b.input) then
    error("bad argument #2 to '" .. fname .. "' (empty message: Letta refuses a message with no content)", 3)
  end
  for i, m in ipairs(type(b.messages) == "table" and b.messages or {}) do
    if type(m) == "table" and empty(m.content) then
      error(string.format("bad argument #2 to '%s' (empty message%s: Letta refuses a message with no content)",
                          fname, #b.messages > 1 and " " .. i or ""), 3)
    end
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
-- How Letta 0.16.8 pages messages (server.py:get_agent_recall_async, message_manager.py:
-- list_messages): order = "desc" (the default) picks the NEWEST `limit` messages of the range and
-- returns them oldest first (chronological); order = "asc" picks the oldest `limit`. after = id
-- always means newer than that message and before = id older, whatever the order; an unknown
-- cursor is a 404. `limit` counts stored messages, each of which may list as several (a reasoning
-- and an assistant message share their id). include_return_message_types is applied after the
-- page is picked, so a filtered page can be empty with more messages to come.

-- messages:list(agent_id, {limit=100, order="desc"|"asc", before=, after=, ...}) -> one page, as
-- the server sends it (see above: chronological in both orders).
function Messages:list(agent_id, query)
  check_id(agent_id, 1, "list", "agent id")
  return self._c:get("/v1/agents/" .. escape(agent_id) .. "/messages", { query = check_table(query, 2, "list", true) })
end

-- messages:each(agent_id, {limit=, order=, before=, after=, include_return_message_types=, ...})
-- -> iterator over every message of the range, following the cursors:
--   order "desc" (the default): newest first, walking back with before = the oldest id of each page
--     (after = id, if given, stays as the lower bound: every message newer than it, newest first);
--   order "asc", or after = id without an order: oldest first, walking forward with after = the
--     newest id of each page (before = id, if given, stays as the upper bound).
-- include_return_message_types is applied here, not sent: a page the server filtered empty would
-- end the walk early.
function Messages:each(agent_id, query)
  check_id(agent_id, 1, "each", "agent id")
  local q = copy(check_table(query, 2, "each", true))
  local wanted
  if q.include_return_message_types ~= nil then
    wanted = {}
    local types = q.include_return_message_types
    for _, t in ipairs(type(types) == "table" and types or { types }) do wanted[t] = true end
    q.include_return_message_types = nil
  end
  if q.order == nil and q.after ~= nil then q.order = "asc" end
  local forward = q.order == "asc"
  return self._c:each_item("/v1/agents/" .. escape(agent_id) .. "/messages", q, {
    next = function(q, page)
      if forward then q.after = page[#page].id else q.before = page[1].id end
      return true
    end,
    items = function(page)
      local out = {}
      for k = 1, #page do
        local m = page[forward and k or #page - k + 1]
        if not wanted or (type(m) == "table" and wanted[m.message_type]) then out[#out + 1] = m end
      end
      return out
    end,
  })
end
function Messages:create_async(agent_id, req)
  check_id(agent_id, 1, "create_async", "agent id")
  return self._c:post("/v1/agents/" .. escape(agent_id) .. "/messages/async", { body = message_body(req, "create_async") })
end
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
function Runs:list(query) return self._c:get("/v1/runs/", { query = check_table(query, 1, "list", true) }) end

-- runs:each(query) -> iterator over every run, in the list's order (order = "desc", newest first,
-- by default). Letta 0.16.8 reads the runs list's cursors the other way round from its other lists
-- (services/helpers/run_manager_helper.py:_apply_pagination_async): `after` = id gives the runs
-- BEFORE it in the list's order and `before` = id those after it, in either order. So the next
-- page is asked with before = the last id of the page.
function Runs:each(query)
  return self._c:each_item("/v1/runs/", check_table(query, 1, "each", true), { next = before_last })
end
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
--
-- On Letta 0.16.8 every Identity the server returns has agent_ids = {} and block_ids = {}
-- (orm/identity.py:Identity.to_pydantic hard-codes them): the links are read through
-- identities.blocks:list(id), identities.agents:list(id) and an agent's identity_ids.
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

local function has_links(b)
  return (type(b.agent_ids) == "table" and #b.agent_ids > 0) or (type(b.block_ids) == "table" and #b.block_ids > 0)
end

-- Letta 0.16.8 answers 500 {"detail":"An unknown error occurred"} when agent_ids or block_ids name
-- an id it does not have (identity_manager.py:_process_relationship_async raises NoResultFound,
-- which no handler maps). Such a 500 is an answer: it is not retried, the ids are looked up and
-- the error names the missing one (code "not_found", status still 500).
local function identity_write(self, method, path, body)
  local links = has_links(body)
  local ok, res = pcall(self._c.request, self._c, method, path, { body = body, retry_500 = not links })
  if ok then return res end
  if links and errors.is(res) and res.status == 500 then
    local c = self._c
    for _, l in ipairs({ { "agent_ids", "agent", c.agents }, { "block_ids", "block", c.blocks } }) do
      for _, id in ipairs(type(body[l[1]]) == "table" and body[l[1]] or {}) do
        local found, err = pcall(l[3].retrieve, l[3], id)
        if not found and errors.is(err) and err.status == 404 then
          res.code, res.retryable = "not_found", false
          res.message = string.format("%s %s in %s does not exist (Letta answers 500 for an unknown id there)",
                                      l[2], id, l[1])
          error(res, 0)
        end
      end
    end
  end
  error(res, 0)
end

function Identities:create(fields)
  return identity_write(self, "POST", "/v1/identities/", identity_body(fields, 1, "create", true))
end

-- identities:upsert{...} (PUT) only UPDATES on Letta 0.16.8: an identifier_key the server does not
-- have answers 404 (identity_manager.py:upsert_identity_async reads it with read_async, which
-- raises; the create branch is unreachable). Fields the body omits (agent_ids, properties) are left
-- as they are, block_ids are ignored. To create or update on any server: create_or_update.
function Identities:upsert(fields)
  local ok, res = pcall(identity_write, self, "PUT", "/v1/identities/", identity_body(fields, 1, "upsert", true))
  if ok then return res end
  if errors.is(res) and res.status == 404 then
    res.message = res.message .. " (this server's PUT /v1/identities/ only updates an existing identity: "
                  .. "use identities:create_or_update)"
  end
  error(res, 0)
end

-- identities:find(identifier_key [, {identity_type=, project_id=}]) -> the identity with that key,
-- or nil. The list filters identifier_key exactly, so this is a look-up, not a scan.
function Identities:find(key, query)
  check_id(key, 1, "find", "identifier_key")
  local q = copy(check_table(query, 2, "find", true))
  q.identifier_key = key
  for identity in self:each(q) do
    if identity.identifier_key == key then return identity end
  end
  return nil
end

-- A failure after which a POST may have been applied (no answer, or a 5xx other than the
-- explained unknown-link 500).
local function maybe_applied(err)
  if err.status == 0 then return err.code == "timeout" or err.code == "reset" or err.code == "invalid_json" end
  return err.status >= 500 and err.code ~= "not_found"
end

-- identities:create_or_update{identifier_key=, name=, identity_type="user", properties=,
-- agent_ids=, block_ids=, project_id=} -> identity, created. Works on every server, whatever its
-- PUT does: POST; when the key exists (409, or a POST that may have landed unanswered) the identity
-- found by its key is PATCHed with the other fields (PATCH merges: properties by key, agent_ids
-- and block_ids appended). created is true only when this call's POST answered.
function Identities:create_or_update(fields)
  local b = identity_body(fields, 1, "create_or_update", true)
  local ok, res = pcall(identity_write, self, "POST", "/v1/identities/", b)
  if ok then return res, true end
  if not (errors.is(res) and (res.status == 409 or maybe_applied(res))) then error(res, 0) end
  local existing = self:find(b.identifier_key, { project_id = b.project_id })
  if not existing then error(res, 0) end
  local patch = copy(b)
  patch.identifier_key, patch.project_id = nil, nil
  if fields.identity_type == nil then patch.identity_type = nil end -- keep the one it has
  return identity_write(self, "PATCH", "/v1/identities/" .. escape(existing.id), patch), false
end

function Identities:retrieve(id)
  check_id(id, 1, "retrieve", "identity id")
  return self._c:get("/v1/identities/" .. escape(id))
end
function Identities:modify(id, fields)
  check_id(id, 1, "modify", "identity id")
  return identity_write(self, "PATCH", "/v1/identities/" .. escape(id), identity_body(fields, 2, "modify"))
end
Identities.update = Identities.modify
function Identities:delete(id)
  check_id(id, 1, "delete", "identity id")
  return self._c:delete("/v1/identities/" .. escape(id))
end
function Identities:count() return self._c:get("/v1/identities/count") end

-- identities.agents:list(id [, query]) / :each(id [, query]) and identities.blocks:list / :each:
-- what is linked to an identity (the only way to read those links). The older calls
-- identities:agents(id [, query]) and identities:blocks(id [, query]) are :list.
local IdentityAgents, IdentityBlocks = {}, {}
for what, methods in pairs({ agents = IdentityAgents, blocks = IdentityBlocks }) do
  listing(methods, function(self, fname, id, query)
    check_id(id, 1, fname, "identity id")
    return "/v1/identities/" .. escape(id) .. "/" .. what, check_table(query, 2, fname, true)
  end)
end
local function identity_links_call(what)
  return function(res, _, id, query)
    check_id(id, 1, what, "identity id")
    return res:list(id, query)
  end
end

-- agent <-> identity
local AgentIdentities = {}
linking(AgentIdentities, function(agent_id) return "/v1/agents/" .. escape(agent_id) .. "/identities" end,
        "agent id", "identity id")

-- ---------------------------------------------------------------------------------------------
-- Archival memory (passages).
local Passages = {}
local function archival(agent_id) return "/v1/agents/" .. escape(agent_id) .. "/archival-memory" end

-- passages:list(agent_id, {limit=100, ascending=true, after=, before=, search=}) -> one page.
-- search is a case-insensitive substring filter on the text (no embedding involved:
-- helpers/agent_manager_helper.py:build_agent_passage_query), unlike passages:search.
function Passages:list(agent_id, query)
  check_id(agent_id, 1, "list", "agent id")
  return self._c:get(archival(agent_id), { query = check_table(query, 2, "list", true) })
end

-- passages:each(agent_id, {ascending=true, limit=, search=, ...}) -> iterator over every passage.
-- Ascending pages with after = the last id. Descending (ascending = false) pages with before = the
-- last id: Letta 0.16.8 applies `after` as "created later" whatever the order, so an after-cursor
-- would repeat the newer items. Its descending order breaks created_at ties by id ascending while
-- `before` keeps smaller ids only, so passages sharing a page's last created_at can come again
-- (skipped here: no item is given twice) or, with a larger id, be left out (only passages created
-- in the same instant, e.g. with the same created_at given by hand: page ascending to see all).
function Passages:each(agent_id, query)
  check_id(agent_id, 1, "each", "agent id")
  local q = copy(check_table(query, 2, "each", true))
  if not (q.ascending == false or q.ascending == "false") then
    return self._c:each_item(archival(agent_id), q)
  end
  local previous = {} -- the ids of the page before: a created_at tie can bring them again
  return self._c:each_item(archival(agent_id), q, {
    next = function(q, page)
      previous = {}
      for _, p in ipairs(page) do previous[p.id] = true end
      return before_last(q, page)
    end,
    items = function(page)
      local out = {}
      for _, p in ipairs(page) do
        if not previous[p.id] then out[#out + 1] = p end
      end
      return out
    end,
  })
end

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
-- Archives: an agent's archival memory is its archive (Letta 0.16.8 gives an agent one, created by
-- its first passage: archive_manager.get_or_create_default_archive_for_agent_async), and the archive
-- routes take many passages in one request (one embedding request, one transaction).
local Archives = {}
local function archive_path(id) return "/v1/archives/" .. escape(id) end

-- archives:list{agent_id=, name=, limit=50, order="desc", before=, after=} -> one page.
listing(Archives, function(self, fname, query) return "/v1/archives/", check_table(query, 1, fname, true) end)

function Archives:retrieve(id)
  check_id(id, 1, "retrieve", "archive id")
  return self._c:get(archive_path(id))
end

-- The passages of an archive. A passage is {text=, tags=, metadata=, created_at= (an ISO 8601
-- string: the server reads it with datetime.fromisoformat)}.
local ArchivePassages = {}

local function archive_passage(p, n, fname)
  if type(p) == "string" then p = { text = p } end
  local b = body_of(check_table(p, n, fname))
  if type(b.text) ~= "string" then error(string.format("bad argument #%d to '%s' (text expected)", n, fname), 3) end
  return b
end

-- passages:create(archive_id, {text=, ...}) -> the passage
function ArchivePassages:create(archive_id, fields)
  check_id(archive_id, 1, "create", "archive id")
  return self._c:post(archive_path(archive_id) .. "/passages", { body = archive_passage(fields, 2, "create") })
end

-- passages:create_many(archive_id, {{text=, ...}, ...} [, opts]) -> the passages, in the server's
-- order (created_at, not the request's): find yours by a tag. All or nothing: one refused text
-- (the embedding provider's error) fails the whole request, with nothing written. opts go to
-- client:request (e.g. {timeout = 120}).
function ArchivePassages:create_many(archive_id, list, opts)
  check_id(archive_id, 1, "create_many", "archive id")
  check_table(list, 2, "create_many")
  local body = {}
  for i, p in ipairs(list) do
    if type(p) ~= "table" or type(p.text) ~= "string" then
      error(string.format("bad argument #2 to 'create_many' (item %d: text expected)", i), 2)
    end
    body[i] = body_of(p)
  end
  local o = copy(opts)
  o.body = { passages = json.array(body) }
  return self._c:post(archive_path(archive_id) .. "/passages/batch", o)
end
ArchivePassages.createMany = ArchivePassages.create_many -- the TypeScript client's name

function ArchivePassages:delete(archive_id, passage_id)
  check_id(archive_id, 1, "delete", "archive id")
  check_id(passage_id, 2, "delete", "passage id")
  return self._c:delete(archive_path(archive_id) .. "/passages/" .. escape(passage_id)) or true -- 204, no body
end

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
  client.identities.agents = resource(client, IdentityAgents, identity_links_call("agents"))
  client.identities.blocks = resource(client, IdentityBlocks, identity_links_call("blocks"))
  client.archives = resource(client, Archives)
  client.archives.passages = resource(client, ArchivePassages)
  client.models = resource(client, Models)
  client.models.embedding = resource(client, EmbeddingModels)
end

return _M
