-- letta.http's sockets: libcurl says which to watch (CURLMOPT_SOCKETFUNCTION) and they are
-- polled with poll(), so descriptors above FD_SETSIZE (1024) work like any other, in our own loop
-- and in a host's (examples/poll_host.c, through lh_loop_hooks). lh_pollfds: tests/c/test_http.c.
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local http = require "letta.http"

local bindir = support.bin:match("^(.*)/[^/]+$")
local FD_SETSIZE = 1024

-- Opens files until every descriptor below FD_SETSIZE is taken; returns them (to close).
local function fill_descriptors()
  local files = {}
  for _ = 1, FD_SETSIZE + 16 do files[#files + 1] = assert(io.open("/dev/null")) end
  return files
end

describe("letta.http sockets", function()
  local emu
  lazy_setup(function() emu = emulator.start{} end)
  lazy_teardown(function() if emu then emu:stop() end end)

  it("requests through two sessions complete promptly with over 1024 descriptors open", function()
    local files = fill_descriptors()
    local a, b = emu:client{ max_retries = 0 }, emu:client{ max_retries = 0 }
    local t0 = http.now()
    -- two sessions: before, their sockets went through curl_multi_fdset, which dropped every
    -- descriptor above FD_SETSIZE, and each wake-up waited for a 50 ms fallback instead
    local counts = letta.gather(function()
      local n = 0
      for _ = 1, 40 do n = n + (a.health:check().status == "ok" and 1 or 0) end
      return n
    end, function()
      local n = 0
      for _ = 1, 40 do n = n + (b.health:check().status == "ok" and 1 or 0) end
      return n
    end)
    local took = http.now() - t0
    a:close()
    b:close()
    for _, f in ipairs(files) do f:close() end
    assert.same({ 40, 40 }, counts)
    assert.truthy(took < 1.0, string.format("80 requests took %.2f s", took))
  end)

  it("poll_host: a host's own poll() loop, told of sockets and timer by lh_loop_hooks, completes its requests", function()
    local r = support.sh(support.quote(bindir .. "/poll_host") .. " 3", { env = { LETTA_BASE_URL = emu.url } })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("done: 9 answers\n", r.stdout)
    local steps, sockets = r.stdout:match("steps: (%d+), sockets watched: (%d+)")
    assert.truthy(tonumber(sockets) >= 3, r.stdout)
    assert.truthy(tonumber(steps) < 200, r.stdout) -- steps only on news, never on a tick
  end)

  it("poll_host watches sockets above FD_SETSIZE when the low descriptors are taken", function()
    -- the shell opens descriptors 3..1100 on /dev/null, and poll_host inherits them
    local cmd = string.format('for i in $(seq 3 %d); do eval "exec $i</dev/null"; done; exec %s 2',
                              FD_SETSIZE + 76, support.quote(bindir .. "/poll_host"))
    local r = support.sh("bash -c " .. support.quote(cmd), { env = { LETTA_BASE_URL = emu.url } })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("done: 6 answers\n", r.stdout)
    local highest = tonumber(r.stdout:match("highest fd: (%d+)"))
    assert.truthy(highest >= FD_SETSIZE, r.stdout)
  end)
end)
