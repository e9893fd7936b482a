-- The `letta` module: the entry point of the Lua library (`local letta = require "letta"`).
-- It grows with the client, the store and the workflows; each lives in its own letta.* module.
local core = require "letta.core"

local _M = {
  _VERSION = core.version,
  json = require "letta.json",
}

-- Versions of lettash and of what it runs on: {lettash=, lua=, curl=, lmdb=}.
function _M.versions()
  return core.versions()
end

return _M
