-- One retry policy for everything that tries again: the client's requests, the workflows, the
-- import and the store (a full LMDB map grows, then the transaction runs again). The default is
-- the official Letta SDKs' (Stainless) policy: at most 2 retries, 0.5 s doubling up to 8 s, minus
-- up to 25% jitter, unless the server says how long to wait (Retry-After-ms, Retry-After) or
-- whether to retry at all (x-should-retry).
local errors = require "letta.errors"
local loop = require "letta.loop"

local tonumber, error, pcall, getmetatable, math, table = tonumber, error, pcall, getmetatable, math, table

local _M = {}

_M.POLICY = { max_retries = 2, base = 0.5, cap = 8, jitter = 0.25 }
local POLICY = _M.POLICY

-- A wait the server asks for is followed only up to a minute, as the SDKs do (longer: backoff).
local MAX_SERVER_WAIT = 60

-- The wait the server asks for, in seconds, or nil: Retry-After-ms, else Retry-After in seconds.
local function server_wait(headers)
  if headers == nil then return nil end
  local ms = tonumber(headers["retry-after-ms"] or "")
  if ms and ms >= 0 and ms / 1000 <= MAX_SERVER_WAIT then return ms / 1000 end
  local s = tonumber(headers["retry-after"] or "")
  if s and s >= 0 and s <= MAX_SERVER_WAIT then return s end
  return nil
end

-- delay(n, headers, policy) -> seconds to wait before retry n (0-based): what the headers (may be
-- nil) ask for, else min(base * 2^n, cap) less a random part of up to `jitter` of it.
function _M.delay(n, headers, policy)
  local wait = server_wait(headers)
  if wait then return wait end
  policy = policy or POLICY
  local base, cap, jitter = policy.base or POLICY.base, policy.cap or POLICY.cap, policy.jitter or POLICY.jitter
  return math.min(base * 2 ^ n, cap) * (1 - jitter * math.random())
end

-- should(err, headers, safe, retry_500) -> whether the client may repeat a failed request. A
-- request that may have reached the server is only repeated when repeating it cannot duplicate
-- anything (the method is safe, or the caller says so). retry_500 = false: a 500 is an answer,
-- not a hiccup (Letta answers 500 for some bad requests). x-should-retry: false always wins.
function _M.should(err, headers, safe, retry_500)
  if errors.is(err, "interrupted") then return false end
  local hint = headers and headers["x-should-retry"]
  if hint == "false" then return false end
  if err.status == 500 and retry_500 == false then return false end
  if err.status == 0 then
    if err.code == "connect" or err.code == "resolve" then return true end -- nothing was sent
    return safe and (err.code == "timeout" or err.code == "reset") or false
  end
  if hint == "true" then return safe or err.status == 429 end
  if err.status == 429 then return true end -- refused before any processing
  return safe and (err.status == 408 or err.status == 409 or err.status >= 500) or false
end

-- The default opts.when: a letta.Error that says trying again could help.
local function retryable(e)
  return getmetatable(e) == errors.Error and e.retryable == true
end

-- call(fn, {attempts = 3, base =, cap =, jitter =, when =, before_retry =}) -> fn()'s results.
-- Calls fn until it returns. After an error e it tries again when attempts remain and when(e) is
-- true (default: a retryable letta.Error), never after Ctrl-C (code "interrupted"): first
-- before_retry(e, n) (n = 0 for the first retry), then a wait of delay(n, nil, opts) (none when
-- that is 0). The last error is raised as it is.
function _M.call(fn, opts)
  opts = opts or POLICY
  local attempts, when, before = opts.attempts or 3, opts.when or retryable, opts.before_retry
  local n = 0
  while true do
    local res = table.pack(pcall(fn))
    if res[1] then return table.unpack(res, 2, res.n) end
    local e = res[2]
    if n + 1 >= attempts or errors.is(e, "interrupted") or not when(e) then error(e, 0) end
    if before then before(e, n) end
    local wait = _M.delay(n, nil, opts)
    if wait > 0 then loop.sleep(wait) end
    n = n + 1
  end
end

return _M
