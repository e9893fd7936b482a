-- Embedding: the example hosts (built by the test command), the Lua module for stock lua5.4, and
-- an installed lettash used through pkg-config only. The sandbox and the C API's error paths are
-- unit tests in tests/c/test_embed.c.
local support = require "support"
local emulator = require "emulator"

local bindir = support.bin:match("^(.*)/[^/]+$")
local asan = os.getenv("LETTASH_ASAN") ~= nil

describe("embedding", function()
  local emu
  lazy_setup(function() emu = emulator.start{ "--latency-ms", "200" } end)
  lazy_teardown(function() if emu then emu:stop() end end)

  it("embed_min: the smallest host creates a runtime, runs a script and calls it", function()
    local r = support.sh(support.quote(bindir .. "/embed_min"))
    assert.equal(0, r.code, r.stderr)
    assert.matches("^hello host from lettash %d+%.%d+%.%d+\n$", r.stdout)
  end)

  it("game_loop: requests complete at 200 ms latency while no frame spends over 5 ms in lettash", function()
    local r = support.sh(support.quote(bindir .. "/game_loop"), { env = { LETTA_BASE_URL = emu.url } })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("done: 2 reply messages, %d+ streamed chunks", r.stdout)
    local frames, longest = r.stdout:match("frames: (%d+), longest lettash step: ([%d.]+) ms")
    assert.truthy(tonumber(frames) >= 24, r.stdout) -- the answers took over 400 ms of 60 fps frames
    assert.truthy(tonumber(longest) <= 5.0, r.stdout)
  end)

  it("bin/letta.so loads in stock lua5.4", function()
    if asan then pending("the asan build of letta.so needs the sanitizer runtime preloaded") return end
    local r = support.sh("lua5.4 -e 'package.cpath=\"" .. bindir .. "/?.so;\"..package.cpath; print(require(\"letta\")._VERSION)'")
    assert.equal(0, r.code, r.stderr)
    assert.matches("^%d+%.%d+%.%d+\n$", r.stdout)
  end)

  it("runs the client through the module under stock lua5.4, streaming included", function()
    if asan then pending("the asan build of letta.so needs the sanitizer runtime preloaded") return end
    local dir = support.tmpdir()
    local script = support.write_file(dir .. "/c.lua", [[
      package.cpath = arg[1] .. "/?.so;" .. package.cpath
      local letta = require "letta"
      local c = letta.client{ base_url = arg[2] }
      local agent = c.agents:create{ name = "stock", model = c.models:pick() }
      local b = c.blocks:create{ label = "Persona_x", value = { name = "X" } }
      c.agents.blocks:attach(agent.id, b.id)
      local tasks = {}
      for i = 1, 4 do tasks[i] = letta.spawn(function() return c.health:check().status end) end
      local n = 0
      for ev in c.agents.messages:stream(agent.id, "hi") do n = n + 1 end
      print(table.concat(letta.gather(tasks), ","), n, math.type(c.blocks:retrieve(b.id).limit))
    ]])
    local r = support.sh(string.format("lua5.4 %s %s %s", script, support.quote(bindir), support.quote(emu.url)))
    support.rmdir(dir)
    assert.equal(0, r.code, r.stderr)
    assert.equal("ok,ok,ok,ok\t4\tinteger\n", r.stdout)
  end)

  it("builds and runs a host with only pkg-config after make install PREFIX=...", function()
    if asan then pending("checked on the release build") return end
    local dir = support.tmpdir()
    local prefix = dir .. "/prefix"
    local r = support.sh("make -s install PREFIX=" .. support.quote(prefix), { cwd = support.root })
    assert.equal(0, r.code, r.stderr)
    support.write_file(dir .. "/host.c", [[
      #include <stdio.h>
      #include <lettash.h>
      int main(void) {
        lh_runtime *rt = lh_new(NULL);
        if (!rt || lh_run_string(rt, "function v() return require('letta')._VERSION end", "=h") != LH_OK ||
            lh_call(rt, "v", NULL) != LH_OK) return 1;
        printf("host on lettash %s\n", lh_result(rt));
        lh_close(rt);
        return 0;
      }
    ]])
    r = support.sh(string.format("cd %s && cc host.c $(pkg-config --cflags --libs lettash) -o host && ./host", support.quote(dir)),
                   { env = { PKG_CONFIG_PATH = prefix .. "/lib/pkgconfig" } })
    local files = support.sh("cd " .. support.quote(prefix) .. " && find . -type f | sort").stdout
    support.rmdir(dir)
    assert.equal(0, r.code, r.stderr)
    assert.matches("^host on lettash %d+%.%d+%.%d+\n$", r.stdout)
    for _, f in ipairs({ "./bin/lettash", "./include/lettash/lettash.h", "./lib/liblettash.a", "./lib/liblettash.so",
                         "./lib/lua/5.4/letta.so", "./lib/pkgconfig/lettash.pc" }) do
      assert.truthy(files:find(f, 1, true), f)
    end
  end)
end)
