-- letta.Error: what every failed call raises. It carries the HTTP status (0 for transport
-- failures), a short code, the server's message and body, the method and path, and whether trying
-- again could help; tostring() reads like "404 Not Found: Block not found (GET /v1/blocks/block-1)".
-- It never holds the token: errors are built from the status, the body and the path only.
local json = require "letta.json"

local setmetatable, getmetatable, type, tostring, string = setmetatable, getmetatable, type, tostring, string

local _M = {}

local Error = { __name = "letta.Error" }
Error.__index = Error

local REASONS = {
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [413] = "Payload Too Large", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [499] = "Client Closed Request", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local CODES = {
  [400] = "bad_request", [401] = "unauthorized", [403] = "forbidden", [404] = "not_found",
  [405] = "method_not_allowed", [408] = "request_timeout", [409] = "conflict",
  [422] = "unprocessable_entity", [429] = "rate_limited",
}

-- Codes of failures that are not the server's or the network's: an error with one of them prints
-- as its message alone. "config": a bad setting or environment variable; "interrupted": Ctrl-C or
-- SIGTERM (lettash's hook raises it; never retried); "map_full": the local store could not grow.
local PLAIN = { config = true, interrupted = true, map_full = true }

-- "<status> <reason>: <message> (<method> <path>): <hint>", where hint (optional) says what to do.
-- An HTML page from a proxy reads "502 Bad Gateway from the proxy in front of Letta (...)"; an
-- error with a code of PLAIN is its message alone.
function Error:__tostring()
  if self.module then return self.module .. ": " .. self.message end
  local where = self.method and string.format(" (%s %s)", self.method, self.path or "?") or ""
  local hint = self.hint and ": " .. self.hint or ""
  if self.status and self.status > 0 then
    if self.html then return string.format("%d %s%s%s", self.status, self.message, where, hint) end
    return string.format("%d %s: %s%s%s", self.status, REASONS[self.status] or "Error", self.message, where, hint)
  end
  if PLAIN[self.code] then return self.message .. where .. hint end
  return string.format("%s: %s%s%s", self.code or "error", self.message, where, hint)
end

-- An answer that is an HTML page (content type text/html, or a body that starts like one) comes
-- from whatever stands in front of Letta (nginx, a load balancer), not from Letta, which answers JSON.
local function is_html(content_type, body)
  if type(content_type) == "string" and content_type:lower():find("text/html", 1, true) then return true end
  local start = type(body) == "string" and body:sub(1, 200):match("^%s*(<[!%a]+)") or ""
  start = start:lower()
  return start == "<!doctype" or start == "<html"
end

-- What such a page most likely means, after "<status> <reason> from the proxy in front of Letta".
local PROXY_HINTS = {
  [502] = "is the Letta server running?", [503] = "is the Letta server running?",
  [504] = "the Letta server did not answer in time: is it running, or overloaded?",
}

-- The message a Letta server puts in an error body: {"detail": "..."}, {"detail": {"message"}},
-- {"error": {"message"}}, else the body itself (shortened).
local function server_message(body)
  if type(body) ~= "string" or body == "" then return nil end
  local ok, v = pcall(json.decode, body)
  if ok and type(v) == "table" then
    local d = v.detail
    if type(d) == "string" then return d end
    if type(d) == "table" and type(d.message) == "string" then return d.message end
    if type(v.error) == "table" and type(v.error.message) == "string" then return v.error.message end
    if type(v.message) == "string" then return v.message end
    if d ~= nil then
      local okd, text = pcall(json.encode, d)
      if okd then return text end
    end
  end
  body = body:gsub("%s+", " ")
  return #body > 200 and body:sub(1, 200) .. "..." or body
end

-- new{status=, code=, message=, body=, method=, path=, retryable=, content_type=, hint=} -> error.
-- An HTML answer gets html = true and a message saying where it came from.
function _M.new(fields)
  local e = setmetatable(fields, Error)
  e.status = e.status or 0
  local content_type = e.content_type
  e.content_type = nil
  if e.status > 0 then
    e.code = e.code or CODES[e.status] or (e.status >= 500 and "server_error" or "http_error")
    if e.message == nil and e.status >= 400 and is_html(content_type, e.body) then
      e.html = true
      local hint = PROXY_HINTS[e.status] or "an HTML page, not an answer from Letta"
      if type(e.body) == "string" and e.body:find("HTTP request was sent to HTTPS port", 1, true) then hint = "it wants https://, not http://" end
      e.message = string.format("%s from the proxy in front of Letta (%s)", REASONS[e.status] or "Error", hint)
    end
    e.message = e.message or server_message(e.body) or REASONS[e.status] or "HTTP error"
  else
    e.code = e.code or "transport"
    e.message = e.message or e.code
  end
  if e.retryable == nil then
    local s = e.status
    e.retryable = s == 408 or s == 409 or s == 429 or s >= 500
      or (s == 0 and (e.code == "timeout" or e.code == "connect" or e.code == "resolve" or e.code == "reset"))
  end
  return e
end

-- refusal(module, message [, code]) -> what a library module raises when it refuses a call
-- before doing anything (an argument judged by its meaning, a store that already holds records, a
-- user not onboarded): code "refused" unless given, printed "<module>: <message>" ("letta.store:
-- ..."); scripts (letta.cli) print the message alone.
function _M.refusal(module, message, code)
  return _M.new{ status = 0, code = code or "refused", module = module, message = message, retryable = false }
end

-- interrupted() -> the error Ctrl-C raises: code "interrupted", printed "interrupted".
function _M.interrupted()
  return _M.new{ status = 0, code = "interrupted", message = "interrupted", retryable = false }
end

-- is(v [, code]) -> true if v is a letta.Error (with that code).
function _M.is(v, code)
  return getmetatable(v) == Error and (code == nil or v.code == code)
end

-- not_applied(err) -> true when the failed request certainly changed nothing on the server: it
-- answered 4xx (refused; not 499, a proxy saying the client gave up after the server may have
-- acted), or no connection was ever made for it (TLS handshake, refused, name not resolved). A
-- request that was sent and then lost its answer is a "reset" instead (lh_http.c lost_after_send),
-- also when libcurl's own resend on a new connection fails. Callers that must not duplicate a
-- write (onboard, chat, import) ask this before forgetting what they sent.
function _M.not_applied(err)
  if getmetatable(err) ~= Error then return false end
  if err.status == 0 then return err.code == "tls" or err.code == "connect" or err.code == "resolve" end
  return err.status >= 400 and err.status < 500 and err.status ~= 499
end

_M.Error = Error

return _M
