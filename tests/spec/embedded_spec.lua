-- The Lua library is compiled into the binary, and can be swapped for the source tree.
local support = require "support"
local lettash = support.lettash

describe("the compiled-in Lua library", function()
  it("loads from any directory with nothing installed", function()
    local r = lettash({ "-e", "print(require('letta')._VERSION, debug.getinfo(require('letta').versions, 'S').source)" },
                      { cwd = "/", env = { LUA_PATH = "/nonexistent/?.lua", LETTASH_LUA_PATH = false } })
    assert.equal(0, r.code, r.stderr)
    assert.matches("^%d+%.%d+%.%d+\t@letta/init%.lua\n$", r.stdout)
  end)

  it("uses the chunk names @letta/<file>.lua in errors", function()
    local r = lettash({ "-e", "require('letta.json').encode(print)" })
    assert.equal(1, r.code)
    assert.matches("json: cannot encode a value of type function", r.stderr)
    r = lettash({ "-e", "require('letta.pretty').repr(1, 5)" })
    assert.matches("@?letta/pretty%.lua:%d+", r.stderr)
  end)

  it("loads the sources from LETTASH_LUA_PATH instead, unless -E", function()
    local dir = support.tmpdir()
    os.execute("mkdir -p " .. dir .. "/letta")
    support.write_file(dir .. "/letta/init.lua", "return {_VERSION = 'from-tree'}")
    local r = lettash({ "-e", "print(require('letta')._VERSION)" }, { env = { LETTASH_LUA_PATH = dir } })
    assert.equal("from-tree\n", r.stdout)
    r = lettash({ "-E", "-e", "print(require('letta')._VERSION)" }, { env = { LETTASH_LUA_PATH = dir } })
    assert.matches("^%d+%.%d+%.%d+\n$", r.stdout)
    support.rmdir(dir)
  end)

  it("offers every file under lua/letta/ as a module", function()
    local p = io.popen("cd lua && find letta -name '*.lua'")
    for file in p:lines() do
      local name = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      local r = lettash({ "-e", "assert(package.preload['" .. name .. "'])" }, { env = { LETTASH_LUA_PATH = false } })
      assert.equal(0, r.code, name .. ": " .. (r.stderr or ""))
    end
    p:close()
  end)
end)
