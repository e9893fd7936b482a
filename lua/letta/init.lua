-- The `letta` module: the entry point of the Lua library (`local letta = require "letta"`).
-- Each part lives in its own letta.* module; this one gathers what scripts use.
local core = require "letta.core"

local _M = {
  _VERSION = core.version,
  json = require "letta.json",
}

-- Versions of lettash and of what it runs on: {lettash=, lua=, curl=, lmdb=}.
function _M.versions()
  return core.versions()
end

-- letta.client{base_url=, token=, timeout=, max_retries=, ...}: see letta.client. It is
-- letta.client's `new` itself, loaded on first use (no wrapper: an argument error then names the
-- caller's line).
setmetatable(_M, { __index = function(t, k)
  if k == "client" then
    local new = require("letta.client").new
    rawset(t, "client", new)
    return new
  end
end })

-- Modules loaded on first use: letta.store (store.open([path])) and letta.users
-- (letta.users{client=, store=}, or letta.users.onboard(...) with the defaults).
local function lazy(name)
  return setmetatable({}, {
    __index = function(_, k) return require(name)[k] end,
    __call = function(_, ...) return require(name)(...) end,
  })
end
_M.store = lazy "letta.store"
_M.users = lazy "letta.users"

-- Concurrency (letta.loop): spawn(fn, ...) -> task, gather(tasks) -> results, run(), step(ms),
-- sleep(s), await(request).
local loop = require "letta.loop"
_M.spawn, _M.gather, _M.run, _M.step, _M.sleep = loop.spawn, loop.gather, loop.run, loop.step, loop.sleep

-- Errors: every failed call raises a letta.Error; letta.is_error(v [, code]) tells one.
local errors = require "letta.errors"
_M.Error, _M.is_error = errors.Error, errors.is

return _M
