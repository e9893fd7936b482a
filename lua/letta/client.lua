-- The Letta client: one HTTP session (kept-alive connections) and the request logic every resource
-- shares: URLs with Letta's exact trailing slashes, JSON both ways, letta.Error on failure, and
-- retries as the official SDKs do them, but only for requests that are safe to repeat.
local http = require "letta.http"
local json = require "letta.json"
local loop = require "letta.loop"
local errors = require "letta.errors"
local retry = require "letta.retry"
local core = require "letta.core"

local type, tostring, pairs, ipairs, setmetatable, error, select = type, tostring, pairs, ipairs, setmetatable, error, select
local string, table, math, os, io = string, table, math, os, io

local _M = {}

local Client = { __name = "letta.Client" }
Client.__index = Client

local DEFAULT_BASE_URL = "http://localhost:8283"

-- ---------------------------------------------------------------------------------------------
-- Arguments

-- Raises a Lua-style argument error for a resource method that called check_id or check_table
-- (level 4: argerror, the check, the method, then the method's caller).
local function argerror(n, fname, msg)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, msg), 4)
end

-- The form Letta 0.16.8 requires of an id: <prefix>-<uuid4>, lower-case hex (validators.py:
-- PRIMITIVE_ID_PATTERNS). Ids of these kinds in a path are checked by the router (422) or by the
-- manager (raise_on_invalid_id, 400) before anything is looked up; passage ids are not checked
-- there (a malformed one is a 404), so they are not checked here either.
local H = "[0-9a-f]"
local UUID4 = H:rep(8) .. "%-" .. H:rep(4) .. "%-4" .. H:rep(3) .. "%-[89ab]" .. H:rep(3) .. "%-" .. H:rep(12)
local ID_PREFIX = { ["agent id"] = "agent", ["block id"] = "block", ["identity id"] = "identity",
                    ["message id"] = "message", ["run id"] = "run", ["archive id"] = "archive" }

-- is_id(v, prefix) -> whether v is an id the server accepts for that prefix ("agent", "block", ...).
function _M.is_id(v, prefix)
  return type(v) == "string" and v:match("^" .. prefix .. "%-" .. UUID4 .. "$") ~= nil
end

-- id_problem(v, what) -> nil when v can be an id of that kind ("agent id", ...: a non-empty
-- string, for the kinds of ID_PREFIX of the form the server accepts), else what is wrong with it
-- ("agent id expected: agent-<uuid>, got 'x'"). Scripts check their arguments with it.
function _M.id_problem(v, what)
  if type(v) ~= "string" or v == "" then
    return (what or "id") .. " expected, got " .. (v == "" and "empty string" or type(v))
  end
  local prefix = ID_PREFIX[what]
  if prefix and not _M.is_id(v, prefix) then
    local shown = #v > 60 and v:sub(1, 57) .. "..." or v
    return string.format("%s expected: %s-<uuid>, got '%s'", what, prefix, (shown:gsub("%c", "?")))
  end
end

-- check_id(v, n, fname, what): raises an argument error when id_problem finds one, so that a
-- malformed id is refused before any request.
function _M.check_id(v, n, fname, what)
  local why = _M.id_problem(v, what)
  if why then argerror(n, fname, why) end
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
-- Retries: when and how long is letta.retry's (the official SDKs' policy); what is safe to
-- repeat without asking is the methods that cannot duplicate anything.

local SAFE = { GET = true, HEAD = true, PUT = true, DELETE = true, PATCH = true }

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
  local headers = req:headers()
  local err = errors.new{ status = kind and 0 or status, code = kind, message = kind and message or nil,
                          body = text, method = method, path = path, content_type = headers["content-type"] }
  err.hint = self:_hint(err)
  return false, err, headers
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
    if tries >= self.max_retries or not retry.should(res, headers, safe, opts.retry_500) then
      res.attempts = tries + 1
      error(res, 2)
    end
    loop.sleep(retry.delay(tries, headers))
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
-- Configuration: where the URL, the token and the CA come from (an option, the embedding host, the
-- environment), remembered so that an error can name what to change.

-- check_url(s) -> s without trailing slashes, or nil, why.
function _M.check_url(s)
  if type(s) ~= "string" or not s:match("^https?://[^/%s]+[^%s]*$") then
    return nil, "must be an http:// or https:// URL"
  end
  return (s:gsub("/+$", ""))
end

local function getenv(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
end

-- "LETTA_CA_FILE=/x.pem", "the ca_file setting (/x.pem)": a value and where it came from.
local function origin(from, value)
  return from:find(" ", 1, true) and string.format("%s (%s)", from, value) or from .. "=" .. value
end

-- ca_from_env() -> file, dir, from: the CA bundle the environment names (nil when none), as the curl
-- tool reads it: LETTA_CA_FILE, else CURL_CA_BUNDLE, else SSL_CERT_FILE and SSL_CERT_DIR (a
-- directory of hashed certificates). from names the variable, for messages.
function _M.ca_from_env()
  for _, name in ipairs({ "LETTA_CA_FILE", "CURL_CA_BUNDLE" }) do
    local v = getenv(name)
    if v then return v, nil, name end
  end
  local file, dir = getenv("SSL_CERT_FILE"), getenv("SSL_CERT_DIR")
  if file or dir then return file, dir, file and "SSL_CERT_FILE" or "SSL_CERT_DIR" end
end

-- check_ca_file(path [, from [, dir]]) -> path, or nil and one line naming where it came from
-- ("LETTA_CA_FILE=/x.pem: no such file"). A file must be readable and not empty; dir = true: a
-- directory instead.
function _M.check_ca_file(path, from, dir)
  local shown = origin(from or "ca_file", path)
  local f, msg = io.open(path, "r")
  if not f then
    msg = tostring(msg):gsub("^.*: ", "")
    if msg == "No such file or directory" then msg = dir and "no such directory" or "no such file" end
    return nil, shown .. ": " .. msg:lower()
  end
  local is_dir = io.open(path .. "/.", "r")
  local data = not is_dir and f:read(1)
  f:close()
  if is_dir then is_dir:close() end
  if dir and not is_dir then return nil, shown .. ": not a directory" end
  if not dir and is_dir then return nil, shown .. ": a directory, not a certificate file" end
  if not dir and not data then return nil, shown .. ": an empty file, not a certificate" end
  return path
end

local function config_error(message)
  error(errors.new{ status = 0, code = "config", message = message, retryable = false }, 0)
end

-- What to do about an error, when the client's configuration can tell (err.hint, printed after
-- the error): an untrusted certificate, no server there, a 401.
function Client:_hint(err)
  if err.code == "tls" then
    local m, ca = err.message, self.ca
    if m:find("does not match target host", 1, true) or m:find("no alternative certificate subject", 1, true) then
      return "the server's certificate was not made for the host in " .. self.base_url
             .. ": use the name or IP address it was issued for (its subjectAltName)"
    elseif m:find("expired", 1, true) then
      return "the server's certificate has expired: renew it on the server"
    elseif m:find("wrong version number", 1, true) or m:find("packet length too long", 1, true) then
      return "the server does not speak TLS there: use http:// instead of https://, or check the port"
    elseif m:find("certificate file", 1, true) or m:find("verify locations", 1, true) then
      return ca and "could not load " .. origin(ca.from, ca.file or ca.dir) .. " (is it a PEM certificate?)"
    end
    if ca then
      -- what to change: the option wins over everything, LETTA_CA_FILE over the setting, and
      -- both over CURL_CA_BUNDLE and SSL_CERT_FILE (usually the system's bundle)
      local cert, fix = "the server's certificate (or the CA that signed it)", nil
      if ca.from == "LETTA_CA_FILE" then fix = "point LETTA_CA_FILE at " .. cert
      elseif ca.from == "the ca_file setting" then fix = "run: lettash scripts/config.lua set ca_file PATH with " .. cert
      elseif ca.from:match("^[%u_]+$") then
        fix = "set LETTA_CA_FILE to " .. cert .. ", or run: lettash scripts/config.lua set ca_file PATH"
      else fix = "give " .. cert .. " as ca_file" end
      return "the server's certificate is not trusted by " .. origin(ca.from, ca.file or ca.dir) .. "; " .. fix
    end
    return "the server's certificate is not trusted; set LETTA_CA_FILE to the certificate (or the CA that "
           .. "signed it), or run: lettash scripts/config.lua set ca_file PATH"
  elseif err.code == "connect" then
    return "is a Letta server running at " .. self.base_url .. "?"
           .. (self.url_from == "default" and " (LETTA_BASE_URL is not set)" or "")
  elseif err.code == "reset" and err.message:find("Empty reply", 1, true) and self.base_url:match("^http:") then
    return "if the server serves HTTPS there, use https:// in the URL"
  elseif err.status == 401 and self.token_from then
    if self.token_from == "none" then return "neither LETTA_PASSWORD nor LETTA_API_KEY is set" end
    return self.token_from .. " is set but the server refused it"
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

-- opts[k], a non-negative number, or def when unset (an error names the caller of letta.client).
local function number_opt(opts, k, def)
  local v = opts[k]
  if v == nil then return def end
  if type(v) ~= "number" or v < 0 then
    error(string.format("bad argument #1 to 'client' (%s must be a non-negative number)", k), 3)
  end
  return v
end

-- The server's URL without trailing slashes, and where it came from ("LETTA_BASE_URL", "default",
-- nil when given): the option, the host's, LETTA_BASE_URL, else http://localhost:8283.
local function resolve_url(opts, host)
  local base_url, url_from = opts.base_url or host.base_url, nil
  if base_url == nil then
    local env = getenv("LETTA_BASE_URL")
    if env and not _M.check_url(env) then
      config_error(origin("LETTA_BASE_URL", env) .. " is not a server URL: expected the form https://host:8283"
                   .. " (or http://host:8283)")
    end
    base_url = env or DEFAULT_BASE_URL
    url_from = env and "LETTA_BASE_URL" or "default"
  end
  if not _M.check_url(base_url) then
    error("bad argument #1 to 'client' (base_url must be an http:// or https:// URL)", 3)
  end
  return _M.check_url(base_url), url_from
end

-- The token and where it came from: the variable ("LETTA_API_KEY", "LETTA_PASSWORD"), "none"
-- when neither is set (named on a 401), nil when the caller or the host gave it.
local function resolve_token(opts, host)
  local token, token_from = opts.token, nil
  if token == nil then token = host.token end
  if token == nil then
    token, token_from = getenv("LETTA_API_KEY"), "LETTA_API_KEY"
    if token == nil then token, token_from = getenv("LETTA_PASSWORD"), "LETTA_PASSWORD" end
    if token == nil then token_from = "none" end
  end
  if token ~= nil and type(token) ~= "string" then error("bad argument #1 to 'client' (token must be a string)", 3) end
  return token, token_from
end

-- The CA to verify the server with, {file=, dir=, from=} (nil: libcurl's default bundle), checked
-- readable now.
local function resolve_ca(opts)
  local ca
  if opts.ca_file ~= nil then
    if type(opts.ca_file) ~= "string" then error("bad argument #1 to 'client' (ca_file must be a string)", 3) end
    ca = { file = opts.ca_file, from = opts.ca_from or "ca_file" }
  elseif not opts.insecure then
    local file, dir, from = _M.ca_from_env()
    if from then ca = { file = file, dir = dir, from = from } end
  end
  if ca and ca.file then
    local ok, why = _M.check_ca_file(ca.file, ca.from)
    if not ok then config_error(why) end
  end
  if ca and ca.dir then
    local ok, why = _M.check_ca_file(ca.dir, "SSL_CERT_DIR", true)
    if not ok then config_error(why) end
  end
  return ca
end

-- The headers sent with every request: opts.headers, user_id, X-Project-Id.
local function extra_headers(opts)
  local headers = {}
  for _, h in ipairs(opts.headers or {}) do headers[#headers + 1] = h end
  if opts.user_id then headers[#headers + 1] = "user_id: " .. opts.user_id end
  if opts.project_id then headers[#headers + 1] = "X-Project-Id: " .. opts.project_id end
  return headers
end

-- letta.client{base_url=, token=, timeout=60, max_retries=2, connect_timeout=10, ca_file=, ca_from=,
-- insecure=false, max_body=64 MiB, user_id=, project_id=, headers={}} -> client. Unset: base_url from
-- the embedding host or LETTA_BASE_URL, token from the host or LETTA_API_KEY / LETTA_PASSWORD,
-- ca_file from LETTA_CA_FILE / CURL_CA_BUNDLE / SSL_CERT_FILE (+ SSL_CERT_DIR). ca_from names where
-- ca_file came from, in messages (default "ca_file"). A bad value from the environment, or a CA file
-- that cannot be read, raises a letta.Error with code "config" (one line naming it).
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", 2) end
  local host = core.defaults() or {} -- what an embedding host configured (lh_config)
  local base_url, url_from = resolve_url(opts, host)
  local token, token_from = resolve_token(opts, host)
  local ca = resolve_ca(opts)
  if opts.insecure then
    io.stderr:write("lettash: warning: TLS certificate verification is off (insecure = true)\n")
  end
  local self = setmetatable({
    base_url = base_url,
    timeout = number_opt(opts, "timeout", 60),
    max_retries = math.floor(number_opt(opts, "max_retries", retry.POLICY.max_retries)),
    authenticated = token ~= nil and token ~= "",
    token_from = token_from,
    url_from = url_from, -- "LETTA_BASE_URL", "default" or nil (given)
    ca = ca, -- {file=, dir=, from=}: named in TLS errors
    session = http.session{
      token = token ~= "" and token or nil,
      user_agent = "lettash/" .. core.version,
      connect_timeout_ms = math.floor(number_opt(opts, "connect_timeout", 10) * 1000),
      max_body = math.floor(number_opt(opts, "max_body", 64 * 1024 * 1024)),
      ca_file = ca and ca.file,
      ca_path = ca and ca.dir,
      insecure = opts.insecure and true or false,
      headers = extra_headers(opts),
      prefix = base_url .. "/", -- the transport sends the token nowhere else
    },
  }, Client)
  token = nil
  require("letta.resources").attach(self)
  return self
end

_M.Client = Client

return _M
