-- The lettash side of bench/requests.sh: N health checks through the client, each answer decoded
-- into a Lua table, as a script would make them.
--   bin/lettash bench/requests.lua URL N                one after another, one kept-alive connection
--   bin/lettash bench/requests.lua URL N inflight K     K tasks sharing the N checks
local letta = require "letta"

local url, n, mode, k = ...
n = math.tointeger(tonumber(n))
k = math.tointeger(tonumber(k))
if not url or not n or (mode and (mode ~= "inflight" or not k or k < 1)) then
  io.stderr:write("usage: lettash bench/requests.lua URL N [inflight K]\n")
  os.exit(2)
end

local c <close> = letta.client{ base_url = url, max_retries = 0 }
local last

if not mode then
  for _ = 1, n do last = c.health:check() end
else
  local tasks = {}
  for i = 1, k do
    local share = n // k + (i <= n % k and 1 or 0) -- the first n % k tasks take one more
    tasks[i] = letta.spawn(function()
      local r
      for _ = 1, share do r = c.health:check() end
      return r
    end)
  end
  last = letta.gather(tasks)[1]
end

-- Looked at once, so that the loop cannot be reduced to nothing.
if type(last) ~= "table" or last.status ~= "ok" then
  io.stderr:write("requests.lua: unexpected answer\n")
  os.exit(1)
end
