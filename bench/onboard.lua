-- The onboarding side of bench/store.sh: N users onboarded end to end (identity, persona block,
-- link, every step noted in the store first) by letta.users in one process, K at a time with
-- letta.spawn (K = 1: one after another).
--   LETTA_BASE_URL=... bin/lettash bench/onboard.lua STORE_PATH N K
-- Prints {"users": n, "seconds": s, "rate": n/s}; exits 1 unless every user is onboarded.
local letta = require "letta"
local now = require("letta.loop").now

local path, n, k, nosync = ...
n, k = math.tointeger(tonumber(n)), math.tointeger(tonumber(k))
if not path or not n or not k or k < 1 then
  io.stderr:write("usage: bin/lettash bench/onboard.lua STORE_PATH N K\n")
  os.exit(2)
end

local client <close> = letta.client{}
local store <close> = letta.store.open(path)
if nosync == "nosync" then store:durable(false) end -- only to show what the disk costs
local users = letta.users{ client = client, store = store }

local t0 = now()
local tasks = {}
for t = 1, k do
  tasks[t] = letta.spawn(function()
    for i = t, n, k do users:onboard(string.format("bench_%05d", i), { preferences = { tea = i % 2 == 0 } }) end
  end)
end
letta.gather(tasks)
local seconds = now() - t0

local done = 0
for _, rec in ipairs(store:users()) do
  if rec.onboarded and rec.identity_id and rec.block_id then done = done + 1 end
end
if done ~= n then
  io.stderr:write(string.format("onboard.lua: %d of %d users onboarded\n", done, n))
  os.exit(1)
end
print(letta.json.encode({ users = n, seconds = seconds, rate = n / seconds }))
