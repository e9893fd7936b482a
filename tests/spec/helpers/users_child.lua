-- A workflow run in its own bin/lettash process, for the specs that kill it (kill -9) or run
-- several at once: users_spec.lua and users_crash_spec.lua start it through users_procs.lua.
--
--   bin/lettash tests/spec/helpers/users_child.lua BASE_URL STORE_PATH OP ARGS...
--     onboard NAME...             onboard each name in turn
--     onboard-many PREFIX N       onboard PREFIX1 .. PREFIXN
--     chat NAME AGENT TEXT [N]    N chats (default 1)
--     offboard NAME
--     doctor [fix]
--
-- Prints one JSON line per result on stdout; a failure is a non-zero exit with the error on stderr.
local letta = require "letta"
local json = letta.json

local url, path, op = arg[1], arg[2], arg[3]
local client = letta.client{ base_url = url, token = "" }
local store = letta.store.open(path)
local users = letta.users{ client = client, store = store }

local function out(v) io.stdout:write(json.encode(v), "\n") io.stdout:flush() end

if op == "onboard" then
  for i = 4, #arg do out(users:onboard(arg[i])) end
elseif op == "onboard-many" then
  for i = 1, tonumber(arg[5]) do out(users:onboard(arg[4] .. i)) end
elseif op == "chat" then
  for _ = 1, tonumber(arg[7] or "1") do
    local r = users:chat(arg[4], arg[5], arg[6])
    out({ reply = r.reply, actions = r.actions })
  end
elseif op == "offboard" then
  out(users:offboard(arg[4]))
elseif op == "doctor" then
  out(users:doctor{ fix = arg[4] == "fix" })
else
  error("users_child: unknown op " .. tostring(op))
end
store:close()
client:close()
