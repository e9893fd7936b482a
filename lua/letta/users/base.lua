-- What the user workflows share: the Users object they are methods of, the rules for usernames and
-- agent ids (checked before any write), and the one way they read a 404 ("not there").
local errors = require "letta.errors"

local type, error, pcall, setmetatable, string = type, error, pcall, setmetatable, string

local _M = {}

local Users = { __name = "letta.users" }
Users.__index = Users
_M.Users = Users

-- A refusal of the workflows (code "refused"): prints "letta.users: <message>"; scripts print
-- the message alone.
function _M.fail(fmt, ...) error(errors.refusal("letta.users", string.format(fmt, ...)), 0) end
local fail = _M.fail

-- ---------------------------------------------------------------------------------------------
-- Usernames: the block label Persona_<username> must match the server's ^[a-zA-Z0-9_/-]+$ and be
-- at most 50 characters; '/' is refused too, since labels are path segments in the API.

local MAX_NAME = 50 - #"Persona_"

function _M.validate(username)
  if type(username) ~= "string" or username == "" then fail("invalid username: a non-empty name is required") end
  if #username > MAX_NAME then
    fail("invalid username '%s...': at most %d characters (the block label Persona_<username> is limited to 50)",
         username:sub(1, 20), MAX_NAME)
  end
  local bad = username:match("[^A-Za-z0-9_%-][\128-\191]*") -- a whole UTF-8 character
  if bad then
    fail("invalid username '%s': only letters A-Z a-z, digits, '_' and '-' are allowed (found '%s')", username, bad)
  end
  return username
end

function _M.label(username) return "Persona_" .. username end

-- Agent ids as Letta makes them: agent-<uuid> (the server's own rule, letta.client.is_id).
-- Anything else is a typo that no server holds (it answers 422), refused here before any write.
function _M.is_agent_id(s) return require("letta.client").is_id(s, "agent") end

function _M.check_agent_id(s)
  if type(s) ~= "string" or s == "" then fail("an agent id is required") end
  if not _M.is_agent_id(s) then
    fail("invalid agent id '%s': expected the form agent-<uuid> (agent-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
         #s > 60 and s:sub(1, 57) .. "..." or s)
  end
  return s
end

-- ---------------------------------------------------------------------------------------------

function _M.is_not_found(err) return errors.is(err) and err.status == 404 end

-- Calls fn(...) and returns its result, or nil when the server says 404.
function _M.unless_missing(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if _M.is_not_found(res) then return nil end
  error(res, 0)
end

-- letta.users{client=, store=} -> workflows bound to a client and a store.
function _M.new(opts)
  opts = opts or {}
  return setmetatable({
    client = opts.client or require("letta").client(),
    store = opts.store or require("letta.store").open(),
  }, Users)
end

function Users:record(username) return self.store:user(username) end

function Users:save(rec) return self.store:put_user(rec) end

function Users:list() return self.store:users() end

return _M
