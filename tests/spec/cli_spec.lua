-- The command line behaves like lua5.4's: options, arg, errors and exit codes.
local support = require "support"
local lettash, sh = support.lettash, support.sh

describe("lettash command line", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.rmdir(dir) end)

  it("passes script arguments in arg and as ...", function()
    local s = support.write_file(dir .. "/s.lua", "print(arg[1], ...)")
    local r = lettash({ s, "x", "y" })
    assert.equal(0, r.code)
    assert.equal("x\tx\ty\n", r.stdout)
  end)

  it("puts the script at arg[0] and the interpreter and options at negative indices", function()
    local s = support.write_file(dir .. "/s.lua", "print(arg[-3], arg[-2], arg[-1], arg[0], #arg)")
    local r = lettash({ "-e", "x=1", s, "a" })
    assert.equal(support.bin .. "\t-e\tx=1\t" .. s .. "\t1\n", r.stdout)
  end)

  it("runs -e statements and -l libraries in order before the script", function()
    local r = lettash({ "-l", "letta", "-e", "print(letta._VERSION)", "-l", "J=letta.json", "-e", "print(J.encode{1})" })
    assert.equal(0, r.code)
    assert.matches("^%d+%.%d+%.%d+\n%[1%]\n$", r.stdout)
  end)

  it("exits 1 with 'lettash:' and a traceback on an uncaught error", function()
    local r = lettash({ "-e", "error('boom')" })
    assert.equal(1, r.code)
    assert.matches("^lettash: %(command line%):1: boom\nstack traceback:\n", r.stderr)
    assert.equal("", r.stdout)
  end)

  it("prints an error object's __tostring alone, as lua5.4 does (no traceback)", function()
    local r = lettash({ "-e", "error(setmetatable({}, {__tostring = function() return 'custom failure' end}))" })
    assert.equal(1, r.code)
    assert.equal("lettash: custom failure\n", r.stderr)
  end)

  it("names non-string error objects", function()
    local r = lettash({ "-e", "error({})" })
    assert.equal(1, r.code)
    assert.matches("^lettash: %(error object is a table value%)", r.stderr)
  end)

  it("reports a syntax error in a script and a missing script", function()
    local s = support.write_file(dir .. "/bad.lua", "x = = 1")
    local r = lettash({ s })
    assert.equal(1, r.code)
    assert.matches("^lettash: .*bad%.lua:1: unexpected symbol near '='", r.stderr)
    r = lettash({ dir .. "/missing.lua" })
    assert.equal(1, r.code)
    assert.matches("^lettash: cannot open .*missing%.lua", r.stderr)
  end)

  it("refuses an unknown option with a usage hint", function()
    local r = lettash({ "-z" })
    assert.equal(1, r.code)
    assert.matches("unrecognized option '%-z'", r.stderr)
    assert.matches("lettash %-%-help", r.stderr)
    r = lettash({ "-e" })
    assert.equal(1, r.code)
    assert.matches("'%-e' needs argument", r.stderr)
  end)

  it("runs stdin with '-' and with no script when stdin is not a terminal", function()
    local r = lettash({ "-", "a1" }, { stdin = "print('from stdin', ...)" })
    assert.equal("from stdin\ta1\n", r.stdout)
    r = lettash({}, { stdin = "print(6 * 7)" })
    assert.equal("42\n", r.stdout)
  end)

  it("treats everything after -- as the script and its arguments", function()
    local s = support.write_file(dir .. "/s.lua", "print(...)")
    local r = lettash({ "--", s, "-e", "x" })
    assert.equal("-e\tx\n", r.stdout)
  end)

  it("prints the versions of lettash, Lua, libcurl and LMDB with -v", function()
    local r = lettash({ "-v" })
    assert.equal(0, r.code)
    assert.matches("^lettash %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libcurl %d+%.%d+%.%d+, LMDB %d+%.%d+%.%d+%)\n$", r.stdout)
  end)

  it("lists options and environment variables with --help", function()
    local r = lettash({ "--help" })
    assert.equal(0, r.code)
    for _, word in ipairs({ "-e stat", "-l mod", "-i", "-v", "-E", "--", "LETTA_BASE_URL", "LETTA_API_KEY",
                            "LETTA_PASSWORD", "LETTASH_LUA_PATH", "LETTASH_INIT" }) do
      assert.truthy(r.stdout:find(word, 1, true), word)
    end
  end)

  it("runs LETTASH_INIT first, and -E ignores it", function()
    local r = lettash({ "-e", "print(INIT)" }, { env = { LETTASH_INIT = "INIT = 'yes'" } })
    assert.equal("yes\n", r.stdout)
    local f = support.write_file(dir .. "/init.lua", "INIT = 'file'")
    r = lettash({ "-e", "print(INIT)" }, { env = { LETTASH_INIT = "@" .. f } })
    assert.equal("file\n", r.stdout)
    r = lettash({ "-E", "-e", "print(INIT)" }, { env = { LETTASH_INIT = "INIT = 'yes'" } })
    assert.equal("nil\n", r.stdout)
  end)

  it("exits 0 after a script that returns normally, 1 after os.exit(false)", function()
    assert.equal(0, lettash({ "-e", "local x = 1" }).code)
    assert.equal(1, lettash({ "-e", "os.exit(false)" }).code)
    assert.equal(3, lettash({ "-e", "os.exit(3)" }).code)
  end)

  -- Ctrl-C (SIGINT; SIGTERM the same) while a script runs: lettash raises the letta.Error with
  -- code "interrupted" (not a string to match), so cli.main says "interrupted" and exits 130.
  local function interrupt(code)
    local s = support.write_file(dir .. "/s.lua", code)
    -- (a watchdog kills it if the interrupt is lost, so the spec fails instead of hanging)
    local r = sh(string.format("%s %s 2> %s/err & pid=$!; sleep 0.5; kill -INT $pid; (sleep 15; kill -9 $pid 2>/dev/null) & wait $pid",
                               support.quote(support.bin), support.quote(s), dir))
    return r.code, support.read_file(dir .. "/err"), r.stdout
  end

  it("raises Ctrl-C as the letta.Error 'interrupted', which scripts tell by its code", function()
    local code, err, out = interrupt([[
      local errors = require "letta.errors"
      local ok, e = pcall(function() while true do end end)
      print(errors.is(e, "interrupted"), tostring(e))
    ]])
    assert.equal(0, code)
    assert.equal("true\tinterrupted\n", out)
    assert.equal("", err)
    code, err = interrupt("while true do end")
    assert.equal(1, code)
    assert.equal("lettash: interrupted\n", err)
  end)

  it("cli.main exits 130 on Ctrl-C, and only then: not for a message that ends like the old one", function()
    local code, err = interrupt([[
      require("letta.cli").main{ name = "t", usage = "", summary = "", run = function() while true do end end }
    ]])
    assert.equal(130, code)
    assert.equal("t: interrupted\n", err)
    local s = support.write_file(dir .. "/s.lua", [[
      require("letta.cli").main{ name = "t", usage = "", summary = "", run = function() error("was interrupted!", 0) end }
    ]])
    local r = lettash({ s })
    assert.equal(1, r.code)
    assert.equal("t: was interrupted!\n", r.stderr)
  end)

  it("leaks no memory (valgrind)", function()
    if os.getenv("LETTASH_ASAN") then
      pending("the asan build checks leaks with LeakSanitizer instead")
      return
    end
    local r = sh("valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=9 "
                 .. support.quote(support.bin) .. " -e 'print(require(\"letta\").json.encode({1}))'")
    assert.equal(0, r.code, r.stderr)
    assert.equal("[1]\n", r.stdout)
    assert.matches("All heap blocks were freed", r.stderr)
  end)
end)
