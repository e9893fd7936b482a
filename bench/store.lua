-- The store side of bench/store.sh: lookups of user records from Lua, in a fresh store at PATH
-- holding RECORDS users (as onboarding writes them, reverse lookups included).
--   bin/lettash bench/store.lua PATH RECORDS LOOKUPS
-- Prints {"user": lookups/s, "raw": gets/s}: "user" is store:user(name) (a read transaction and a
-- JSON decode each, what a workflow calls), "raw" the C binding's get in one read transaction (the
-- bytes only: LMDB plus the binding).
local letta = require "letta"
local store_mod = require "letta.store"
local now = require("letta.loop").now

local path, records, lookups = ...
records, lookups = math.tointeger(tonumber(records)), math.tointeger(tonumber(lookups))
if not path or not records or not lookups then
  io.stderr:write("usage: lettash bench/store.lua PATH RECORDS LOOKUPS\n")
  os.exit(2)
end

local store <close> = letta.store.open(path)
local names = {}
for i = 1, records do names[i] = string.format("user%04d", i) end
store:update(function(txn)
  for i, name in ipairs(names) do
    store_mod.put_user(txn, {
      username = name, name = "User " .. i, block_label = "Persona_" .. name, onboarded = true,
      identity_id = string.format("identity-00000000-0000-4000-8000-%012d", i),
      block_id = string.format("block-00000000-0000-4000-8000-%012d", i),
      preferences = { tea = i % 2 == 0, language = "en" },
    })
  end
end)

local seen = 0
local t0 = now()
for i = 1, lookups do
  local rec = store:user(names[i % records + 1])
  if rec then seen = seen + 1 end
end
local user_rate = lookups / (now() - t0)

local bytes = 0
local txn <close> = store.env:begin(false)
t0 = now()
for i = 1, lookups do
  local raw = txn:get("users", names[i % records + 1])
  if raw then bytes = bytes + #raw end
end
local raw_rate = lookups / (now() - t0)
txn:abort()

if seen ~= lookups or bytes == 0 then
  io.stderr:write("store.lua: records missing\n")
  os.exit(1)
end
print(letta.json.encode({ user = user_rate, raw = raw_rate }))
