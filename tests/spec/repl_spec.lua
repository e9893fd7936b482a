-- The REPL: expressions printed, multi-line input, readable tables, Ctrl-C, history.
local support = require "support"
local lettash, sh = support.lettash, support.sh

describe("lettash REPL", function()
  it("prints expression results from piped input without prompts", function()
    local r = lettash({ "-i" }, { stdin = "x = 6\nx * 7\n" })
    assert.equal(0, r.code)
    assert.equal("42\n", r.stdout)
  end)

  it("continues statements that are incomplete", function()
    local r = lettash({ "-i" }, { stdin = "function f(a)\n  return a + 1\nend\nf(41)\n" })
    assert.equal("42\n", r.stdout)
  end)

  it("prints several results, nil and strings as print would", function()
    local r = lettash({ "-i" }, { stdin = "1, nil, 'two'\n" })
    assert.equal("1\tnil\ttwo\n", r.stdout)
  end)

  it("prints tables nested, with sorted keys", function()
    local r = lettash({ "-i" }, { stdin = "{b = 2, a = 1, list = {1, 2}}\n" })
    assert.equal("{\n  a = 1,\n  b = 2,\n  list = { 1, 2 }\n}\n", r.stdout)
  end)

  it("cuts deep tables and marks cycles", function()
    local r = lettash({ "-i" }, { stdin = "t = {a = {b = {c = {d = {e = 1}}}}}\nt\nc = {} c.self = c\nc\n" })
    assert.matches("d = {...}", r.stdout, 1, true)
    assert.matches("self = <cycle>", r.stdout, 1, true)
  end)

  it("reports errors and keeps going", function()
    local r = lettash({ "-i" }, { stdin = "error('oops')\n1 + 1\n" })
    assert.equal("2\n", r.stdout)
    assert.matches("stdin:1: oops", r.stderr)
  end)

  it("has the letta module loaded", function()
    local r = lettash({ "-i" }, { stdin = "letta.json.encode{n = 1}\n" })
    assert.equal('{"n":1}\n', r.stdout)
  end)

  it("returns to the prompt when Ctrl-C interrupts a running chunk", function()
    local dir = support.tmpdir()
    local input = support.write_file(dir .. "/in", "while true do end\nprint('back')\n")
    -- (a watchdog kills it if the interrupt is lost, so the spec fails instead of hanging)
    local r = sh(string.format("%s -i < %s > %s/out 2> %s/err & pid=$!; sleep 0.5; kill -INT $pid; "
                               .. "(sleep 15; kill -9 $pid 2>/dev/null) & wait $pid",
                               support.quote(support.bin), input, dir, dir))
    local out, err = support.read_file(dir .. "/out"), support.read_file(dir .. "/err")
    support.rmdir(dir)
    assert.equal("back\n", out)
    assert.matches("interrupted!", err)
    assert.equal(0, r.code)
  end)

  it("edits lines, shows _PROMPT and saves history to ~/.lettash_history on a terminal", function()
    if sh("command -v script").code ~= 0 then
      pending("util-linux 'script' is needed to give the REPL a terminal")
      return
    end
    local home = support.tmpdir()
    local r = sh(string.format("printf 'answer = 40 + 2\\n_PROMPT = \"L> \"\\nanswer\\n' | HOME=%s timeout 20 script -qec %s /dev/null",
                               home, support.quote(support.bin)))
    local history = support.read_file(home .. "/.lettash_history")
    support.rmdir(home)
    assert.equal(0, r.code)
    assert.matches("> answer = 40 + 2", r.stdout, 1, true)
    assert.matches("L> answer", r.stdout, 1, true) -- _PROMPT is honoured, as in lua.c
    assert.matches("42", r.stdout, 1, true)
    assert.is_not_nil(history)
    assert.matches("answer = 40 + 2\n_PROMPT = \"L> \"\nanswer\n", history, 1, true)
  end)
end)
