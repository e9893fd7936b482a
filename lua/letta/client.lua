-- The Letta client: one HTTP session (kept-alive connections) and the request logic every resource
-- shares: URLs with Letta's exact trailing slashes, JSON both ways, letta.Error on failure, and
-- retries as the official SDKs do them, but only for requests that are safe to repeat.
local http = require "letta.http"
local json = require "letta.json"
local loop = require "letta.loop"
local errors = require "letta.errors"
local core = require "letta.core"

local type, tostring, pairs, ipairs, setmetatable, error, select = type, tostring, pairs, ipairs, setmetatable, error, select
local string, table, math, os, io = string, table, math, os, io

local _M = {}

local Client = { __name = "letta.Client" }
Client.__index = Client

local DEFAULT_BASE_URL = "http://localhost:8283"

-- ---------------------------------------------------------------------------------------------
-- Arguments

-- Raises a Lua-style argument error from a resource method (level 3: the method's caller).
local function argerror(n, fname, msg)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

-- check_id(v, n, fname, what): v must be a non-empty string.
function _M.check_id(v, n, fname, what)
  if type(v) ~= "string" or v == "" then
    argerror(n, fname, (what or "id") .. " expected, got " .. (v == "" and "empty string" or type(v)))
  end
  return v
end

function _M.check_table(v, n, fname, optional)
  if v == nil and optional then return {} end
  if type(v) ~= "table" then argerror(n, fname, "table expected, got " .. type(v)) end
  return v
end

-- ---------------------------------------------------------------------------------------------
-- URLs

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
_M.escape = escape

local function query_string(q)
  if not q then return "" end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    local vals = type(v) == "table" and v or { v }
    for _, x in ipairs(vals) do
      if x ~= json.null then parts[#parts + 1] = escape(k) .. "=" .. escape(tostring(x)) end
    end
  end
  return #parts > 0 and "?" .. table.concat(parts, "&") or ""
end

-- ---------------------------------------------------------------------------------------------
-- Retries

local SAFE = { GET = true, HEAD = true, PUT = true, DELETE = true, PATCH = true }


-- Seconds to wait before retry number n (0-based), from the headers or exponential backoff.
local function retry_delay(headers, n)
  local ms = tonumber(headers["retry-after-ms"] or "")
  if ms and ms >= 0 then return ms / 1000 end
  local s = tonumber(headers["retry-after"] or "")
  if s and s >= 0 and s <= 60 then return s end
  return math.min(0.5 * 2 ^ n, 8.0) * (1 - 0.25 * math.random())
end

-- Whether a failed attempt may be repeated. A request that may have reached the server is only
-- repeated when repeating it cannot duplicate anything (the method is safe, or the caller says so).
-- retry_500 = false: a 500 is an answer, not a hiccup (Letta answers 500 for some bad requests).
local function should_retry(err, headers, safe, retry_500)
  local hint = headers["x-should-retry"]
  if hint == "false" then return false end
  if err.status == 500 and retry_500 == false then return false end
  if err.status == 0 then
    if err.code == "connect" or err.code == "resolve" then return true end -- nothing was sent
    return safe and (err.code == "timeout" or err.code == "reset")
  end
  if hint == "true" then return safe or err.status == 429 end
  if err.status == 429 then return true end -- refused before any processing
  return safe and (err.status == 408 or err.status == 409 or err.status >= 500)
end

-- ---------------------------------------------------------------------------------------------
-- Requests

-- One attempt. Returns true, value (nil for JSON null or an empty body) on success; false, err,
-- headers on an HTTP or transport failure; or, for a stream that started, true, req (open: the
-- caller reads its events and closes it). The request is closed on every other way out, errors
-- (Ctrl-C too) included, which aborts its transfer: nothing is left running.
local function attempt(self, method, url, path, body, headers, timeout_ms, once, stream)
  local req <close> = self.session:request(method, url, body, headers, stream and 0 or timeout_ms,
                                           stream and timeout_ms or 0, stream, once)
  repeat loop.await(req) until req:done() or (stream and req:streaming())
  if stream and req:streaming() then
    return true, req:keep() -- the caller reads the events and closes it
  end
  local status, text, kind, message = req:result()
  if not kind and status >= 200 and status < 300 then
    if text == "" then return true, nil end
    local ok, value = pcall(json.decode, text)
    if not ok then
      error(errors.new{ status = 0, code = "invalid_json", method = method, path = path, body = text,
                        message = "the server sent invalid JSON (" .. tostring(value):gsub("^.-json: ", "") .. ")",
                        retryable = false }, 0)
    end
    if value == json.null then value = nil end
    return true, value
  end
  return false, errors.new{ status = kind and 0 or status, code = kind, message = kind and message or nil,
                            body = text, method = method, path = path }, req:headers()
end

local NO_OPTS = {}

-- client:request(method, path, {query=, body=, timeout=, headers=, safe=, retry_500=, stream=}) -> value
-- Sends one API call (with retries) and returns the decoded JSON answer (nil for a JSON null).
-- With stream = true, returns the open request once its answer has started (see stream()).
-- retry_500 = false: a 500 is raised at once, even for a safe method.
function Client:request(method, path, opts)
  opts = opts or NO_OPTS
  local url = self.base_url .. path
  if opts.query then url = url .. query_string(opts.query) end
  local body = opts.body ~= nil and json.encode(opts.body) or nil
  local safe = opts.safe
  if safe == nil then safe = SAFE[method] or false end
  local timeout_ms = math.floor((opts.timeout or self.timeout) * 1000)
  local tries = 0
  while true do
    local ok, res, headers = attempt(self, method, url, path, body, opts.headers, timeout_ms, not safe, opts.stream)
    if ok then return res end
    if tries >= self.max_retries or not should_retry(res, headers, safe, opts.retry_500) then
      res.attempts = tries + 1
      error(res, 2)
    end
    loop.sleep(retry_delay(headers, tries))
    tries = tries + 1
  end
end

for _, m in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE" }) do
  Client[m:lower()] = function(self, path, opts)
    return self:request(m, path, opts)
  end
end

-- ---------------------------------------------------------------------------------------------
-- Pagination: Letta lists are bare arrays paged by cursor (after = id of the last item, in the
-- list's own order); the end is an empty page. Messages and passages page differently: see
-- resources.lua.

-- client:each_item(path, query [, walk]) -> iterator over every item of every page. For lists
-- that page otherwise, walk.next(q, page) sets the cursor of the page after `page` in the query q
-- and returns false at the end (default: after = the last id), and walk.items(page) gives the
-- items of a page to yield, in order (default: the page). An empty page is always the end.
local function after_last(q, page)
  q.after = page[#page].id
  return true
end

function Client:each_item(path, query, walk)
  local q = {}
  for k, v in pairs(query or {}) do q[k] = v end
  local advance, items = walk and walk.next or after_last, walk and walk.items
  local page, list, i = nil, nil, 0
  return function()
    while true do
      if list and i < #list then
        i = i + 1
        return list[i]
      end
      if page and (#page == 0 or not advance(q, page)) then return nil end
      page, i = self:get(path, { query = q }), 0
      if type(page) ~= "table" then return nil end
      list = items and items(page) or page
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- The client

function Client:__tostring()
  return string.format("letta.Client (%s, %s)", self.base_url, self.authenticated and "token set" or "no token")
end

function Client:close()
  self.session:close()
end
Client.__close = Client.close

-- letta.client{base_url=, token=, timeout=60, max_retries=2, connect_timeout=10, ca_file=,
-- insecure=false, max_body=64 MiB, user_id=, project_id=, headers={}} -> client
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", 2) end
  local function num(k, def)
    local v = opts[k]
    if v == nil then return def end
    if type(v) ~= "number" or v < 0 then
      error(string.format("bad argument #1 to 'client' (%s must be a non-negative number)", k), 3)
    end
    return v
  end
  local host = core.defaults() or {} -- what an embedding host configured (lh_config)
  local base_url = opts.base_url or host.base_url or os.getenv("LETTA_BASE_URL")
  if base_url == nil or base_url == "" then base_url = DEFAULT_BASE_URL end
  if type(base_url) ~= "string" or not base_url:match("^https?://[^/]") then
    error("bad argument #1 to 'client' (base_url must be an http:// or https:// URL)", 2)
  end
  local token = opts.token
  if token == nil then token = host.token end
  if token == nil then
    token = os.getenv("LETTA_API_KEY")
    if token == nil or token == "" then token = os.getenv("LETTA_PASSWORD") end
  end
  if token ~= nil and type(token) ~= "string" then error("bad argument #1 to 'client' (token must be a string)", 2) end
  local headers = {}
  for _, h in ipairs(opts.headers or {}) do headers[#headers + 1] = h end
  if opts.user_id then headers[#headers + 1] = "user_id: " .. opts.user_id end
  if opts.project_id then headers[#headers + 1] = "X-Project-Id: " .. opts.project_id end
  if opts.insecure then
    io.stderr:write("lettash: warning: TLS certificate verification is off (insecure = true)\n")
  end
  base_url = base_url:gsub("/+$", "")
  local self = setmetatable({
    base_url = base_url,
    timeout = num("timeout", 60),
    max_retries = math.floor(num("max_retries", 2)),
    authenticated = token ~= nil and token ~= "",
    session = http.session{
      token = token ~= "" and token or nil,
      user_agent = "lettash/" .. core.version,
      connect_timeout_ms = math.floor(num("connect_timeout", 10) * 1000),
      max_body = math.floor(num("max_body", 64 * 1024 * 1024)),
      ca_file = opts.ca_file,
      insecure = opts.insecure and true or false,
      headers = headers,
      prefix = base_url .. "/", -- the transport sends the token nowhere else
    },
  }, Client)
  token = nil
  require("letta.resources").attach(self)
  return self
end

_M.Client = Client
_M.query_string = query_string

return _M
