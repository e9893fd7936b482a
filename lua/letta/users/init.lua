-- The user workflows of the notes, one file each: onboard (identity of type user + persona block
-- Persona_<name>, both ids cached in the store), chat (attach the persona, send as the identity,
-- always detach), offboard and doctor. Every server write is preceded by a note of intent in the
-- store, so a run killed at any point is finished by the next run (or by doctor): nothing lost,
-- nothing doubled, nothing left attached.
--   base.lua      the Users object, usernames and agent ids, reading a 404
--   records.lua   what the store holds (attachments, leases, the import journal, the persona value)
--   persona.lua   leases, attach and detach, repairs of what killed chats left
--   onboard.lua, chat.lua, offboard.lua, doctor.lua   the workflows
local base = require "letta.users.base"
require "letta.users.onboard"
require "letta.users.chat"
require "letta.users.offboard"
require "letta.users.doctor"

local ipairs, setmetatable = ipairs, setmetatable

local _M = {
  new = base.new,
  validate = base.validate,
  label = base.label,
  is_agent_id = base.is_agent_id,
  check_agent_id = base.check_agent_id,
}

-- The workflows as plain functions over the default client and store (from the environment):
-- users.onboard(username, opts), users.chat(...), users.offboard(...), users.doctor(...).
local default
for _, name in ipairs({ "onboard", "chat", "offboard", "doctor", "list" }) do
  _M[name] = function(...)
    default = default or _M.new()
    return default[name](default, ...)
  end
end

return setmetatable(_M, { __call = function(_, opts) return _M.new(opts) end })
