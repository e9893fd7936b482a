-- A Letta emulator (tests/emulator/letta_emulator.py) for the specs: started on a free loopback
-- port, stopped (and waited for) afterwards, plus helpers over its admin API (/_emulator/...),
-- called through lettash's own client.
--
--   local emulator = require "emulator"
--   describe("...", function()
--     local emu, client
--     lazy_setup(function() emu = emulator.start{ "--latency-ms", "100" }; client = emu:client() end)
--     lazy_teardown(function() emu:stop() end)
--     before_each(function() emu:reset() end)
--     ...
--   end)
--
-- A watchdog shell stops the emulator if the process running the specs dies without stop().
local support = require "support"
local letta = require "letta"

local _M = {}

local Emulator = {}
Emulator.__index = Emulator

local SCRIPT = support.root .. "/tests/emulator/letta_emulator.py"
local START_TIMEOUT = 15 -- seconds until the URL line must have appeared

local function pid_of_self()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local pid = f:read("n")
  f:close()
  return pid
end

-- Whether a process is still running (a zombie counts as gone: it is not ours to reap).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function sleep(s) letta.sleep(s) end

-- suite(_ENV, set [, {args=, client=, each=}]): in a describe block, an emulator and a client of
-- it for the block's tests: started before them, stopped after, the emulator reset (and each()
-- run) before every test. set(emu, client) hands them to the spec's locals. (busted's hooks live in
-- the spec's environment, hence _ENV.)
function _M.suite(env, set, opts)
  opts = opts or {}
  local emu, client
  env.lazy_setup(function()
    emu = _M.start(opts.args)
    client = emu:client(opts.client)
    pcall(_M.models, client) -- asked once, before the tests: their request logs do not hold it
    set(emu, client)
  end)
  env.lazy_teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)
  env.before_each(function()
    emu:reset()
    if opts.each then opts.each() end
  end)
end

-- start(args) -> emulator. args: extra command-line arguments (strings).
function _M.start(args)
  local dir = support.tmpdir()
  local out, err, pidfile = dir .. "/stdout", dir .. "/stderr", dir .. "/pid"
  local parts = { "exec python3", support.quote(SCRIPT), "--host 127.0.0.1 --port 0" }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = support.quote(tostring(a)) end
  local owner = pid_of_self()
  -- The emulator in the background (its pid in pidfile), and a watchdog that stops it when the
  -- spec runner goes away; the watchdog ends by itself once the emulator has stopped.
  local cmd = string.format(
    "(%s) </dev/null >%s 2>%s & emu=$!; echo $emu >%s; "
      .. "(while kill -0 %d 2>/dev/null && kill -0 $emu 2>/dev/null; do sleep 0.5; done; "
      .. "kill $emu 2>/dev/null) </dev/null >/dev/null 2>&1 &",
    table.concat(parts, " "), support.quote(out), support.quote(err), support.quote(pidfile), owner or 1)
  local ok = os.execute(cmd)
  local pid = tonumber(support.read_file(pidfile) or "")
  if not ok or not pid then
    support.rmdir(dir)
    error("emulator: could not start python3 " .. SCRIPT, 2)
  end
  local self = setmetatable({ pid = pid, dir = dir, args = args or {} }, Emulator)
  local deadline = os.time() + START_TIMEOUT
  while true do
    local text = support.read_file(out) or ""
    local url = text:match("LETTA_EMULATOR_URL=(%S+)")
    if url then
      self.url = url
      break
    end
    if not alive(pid) or os.time() > deadline then
      local why = alive(pid) and ("no LETTA_EMULATOR_URL line after " .. START_TIMEOUT .. " s") or "it exited"
      local stderr = support.read_file(err) or ""
      self:stop()
      error("emulator: failed to start (" .. why .. ")\n" .. stderr, 2)
    end
    sleep(0.02)
  end
  assert(self.url:match("^https?://127%.0%.0%.1:%d+$"), "emulator: not on loopback: " .. self.url) -- https: --tls-cert
  -- over TLS the admin client trusts the emulator's own certificate (self-signed in the specs)
  local ca_file
  for i, a in ipairs(self.args) do
    if a == "--tls-cert" then ca_file = self.args[i + 1] end
  end
  self.admin = letta.client{ base_url = self.url, token = "", max_retries = 0, timeout = 30, ca_file = ca_file }
  return self
end

-- emu:stop(): SIGTERM, wait until it is gone (SIGKILL after 5 s). Safe to call twice.
function Emulator:stop()
  if self.admin then
    pcall(self.admin.close, self.admin)
    self.admin = nil
  end
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    local deadline = os.time() + 5
    while alive(self.pid) and os.time() <= deadline do sleep(0.02) end
    if alive(self.pid) then
      os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
      while alive(self.pid) do sleep(0.02) end
    end
    self.pid = nil
  end
  if self.dir then
    support.rmdir(self.dir)
    self.dir = nil
  end
end

-- What the emulator wrote on stderr so far (tracebacks, --log-requests lines).
function Emulator:stderr()
  return self.dir and support.read_file(self.dir .. "/stderr") or ""
end

-- emu:client(opts) -> a letta client on this emulator (no token unless opts.token).
function Emulator:client(opts)
  local o = { base_url = self.url, token = "", max_retries = 2 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return letta.client(o)
end

-- ---------------------------------------------------------------------------------------------
-- Admin API

function Emulator:state() return self.admin:get("/_emulator/state") end

-- emu:stats() -> {embedding = {calls, requests, texts, refused, failed_calls, in_flight}}: calls
-- counts the server's request_embeddings calls (one per insert or batch), requests what reached
-- the provider (one per 2048 texts, and the halving retries).
function Emulator:stats() return self.admin:get("/_emulator/stats") end

-- emu:requests([since]) -> array of logged API requests ({seq, method, path, query, headers, body,
-- status, fault, ...}).
function Emulator:requests(since)
  local r = self.admin:get("/_emulator/requests", { query = { since = since } })
  return r.requests, r.last_seq
end

-- emu:raw(method, path [, body_text [, headers]]) -> status, body text: one plain HTTP exchange
-- outside the client (no token, no retries, no decoding), to see exactly what the server sent.
function Emulator:raw(method, path, body, headers)
  local http = require "letta.http"
  local s = http.session{ user_agent = "lettash/spec", headers = headers }
  local req = s:request{ method = method, url = self.url .. path, body = body, timeout_ms = 10000 }
  while not req:wait(100) do end
  local status, text, kind, message = req:result()
  req:close()
  s:close()
  assert(not kind, "emulator: " .. method .. " " .. path .. ": " .. tostring(kind) .. " " .. tostring(message))
  return status, text
end

-- The raw text of the request log, as the server sends it.
function Emulator:requests_text()
  local status, body = self:raw("GET", "/_emulator/requests")
  assert(status == 200, "GET /_emulator/requests: " .. tostring(status))
  return body
end

-- emu:wait_requests(n) -> the request log once it holds at least n requests (2 s at most). The
-- emulator logs a stream when it has sent its last chunk, which can be after the client has read
-- `[DONE]` and moved on: read the log of a stream through this.
function Emulator:wait_requests(n)
  local deadline = require("letta.http").now() + 2
  while true do
    local reqs = self:requests()
    if #reqs >= n or require("letta.http").now() > deadline then return reqs end
    sleep(0.01)
  end
end

function Emulator:clear_requests() return self.admin:delete("/_emulator/requests") end

-- emu:count(method, path_pattern) -> how many logged requests match (path_pattern is a Lua pattern
-- anchored at both ends, or a plain path).
function Emulator:count(method, path)
  local n = 0
  for _, r in ipairs(self:requests()) do
    if (method == nil or r.method == method) and (path == nil or r.path == path or r.path:match("^" .. path .. "$")) then
      n = n + 1
    end
  end
  return n
end

-- emu:faults(spec) adds fault rules: spec is a SPEC string, or a table {spec=, rules=, clear=}, or
-- an array of rule tables. emu:faults() lists them; emu:clear_faults() removes them.
function Emulator:faults(spec)
  if spec == nil then return self.admin:get("/_emulator/faults").faults end
  local body
  if type(spec) == "string" then
    body = { spec = spec }
  elseif spec[1] ~= nil then
    body = { rules = spec }
  else
    body = spec
  end
  return self.admin:post("/_emulator/faults", { body = body }).faults
end

function Emulator:clear_faults() return self.admin:delete("/_emulator/faults") end

-- emu:reset([keep_faults]): empty state, no faults, empty request log.
function Emulator:reset(keep_faults)
  return self.admin:post("/_emulator/reset", { body = keep_faults and { keep_faults = true } or letta.json.object() })
end

-- emu:config([fields]) reads or changes latency_ms, run_delay_ms, flaky_block_list, password.
function Emulator:config(fields)
  if fields == nil then return self.admin:get("/_emulator/config") end
  return self.admin:post("/_emulator/config", { body = fields })
end

-- ---------------------------------------------------------------------------------------------
-- Agents as a script makes them on a real server: with a model (and an embedding model) the
-- server lists (GET /v1/models/, GET /v1/models/embedding). The handles are asked once per
-- server, so that request logs hold them at most once.

local models = {} -- base_url -> {model=, embedding=}

-- emulator.models(client) -> {model=, embedding=}: the handles specs create agents with.
function _M.models(client)
  local m = models[client.base_url]
  if not m then
    -- the first listed, as models:pick() does without LETTA_MODEL (not read here: specs are hermetic)
    m = { model = assert(client.models:list()[1], "the server lists no model").handle,
          embedding = assert(client.models.embedding:list()[1], "the server lists no embedding model").handle }
    models[client.base_url] = m
  end
  return m
end

-- emulator.agent_fields(client, fields) -> a copy of fields with model and embedding set (unless
-- fields has them).
function _M.agent_fields(client, fields)
  local f, m = {}, _M.models(client)
  for k, v in pairs(fields or {}) do f[k] = v end
  if f.model == nil then f.model = m.model end
  if f.embedding == nil then f.embedding = m.embedding end
  return f
end

-- emulator.new_agent(client, fields) -> client.agents:create(agent_fields(client, fields)).
function _M.new_agent(client, fields)
  return client.agents:create(_M.agent_fields(client, fields))
end

-- ---------------------------------------------------------------------------------------------
-- Shared checks

-- A well-formed id: prefix-uuid4.
function _M.id_pattern(prefix)
  return "^" .. prefix .. "%-%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
end

-- An id of the right shape that the server does not have.
function _M.missing_id(prefix)
  return prefix .. "-00000000-0000-4000-8000-000000000000"
end

-- pcall(fn, ...) that must fail: returns the error.
function _M.fails(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, the call succeeded")
  return err
end

-- Every key of a decoded value, at any depth (a set).
local function keys_of(v, set)
  set = set or {}
  if type(v) == "table" then
    for k, x in pairs(v) do
      if type(k) == "string" then set[k] = true end
      keys_of(x, set)
    end
  end
  return set
end

local function count_nulls(v)
  if v == letta.json.null then return 1 end
  local n = 0
  if type(v) == "table" then for _, x in pairs(v) do n = n + count_nulls(x) end end
  return n
end

-- complete(raw_text, value): every key the server wrote in raw_text is a key of value (at some
-- depth), and every JSON null came back as letta.json.null (as many of them). Returns the number
-- of keys checked. For answers whose strings hold no JSON-looking text.
function _M.complete(text, value)
  local keys, n = keys_of(value), 0
  for k in text:gmatch('"([^"\\]+)"%s*:') do
    n = n + 1
    assert(keys[k], "field '" .. k .. "' the server sent is missing from the decoded value")
  end
  local nulls = 0
  for _ in text:gmatch(":%s*null") do nulls = nulls + 1 end
  assert(nulls == count_nulls(value),
         string.format("the server sent %d nulls, the value holds %d letta.json.null", nulls, count_nulls(value)))
  return n
end

-- emu:check_complete(path, value): GETs path raw and checks value against it with complete().
function Emulator:check_complete(path, value)
  local status, text = self:raw("GET", path)
  assert(status == 200, "GET " .. path .. ": " .. status)
  return _M.complete(text, value)
end

_M.Emulator = Emulator
_M.alive = alive

return _M
