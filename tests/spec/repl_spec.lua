-- The REPL: expressions printed, multi-line input, readable tables, Ctrl-C, history.
local support = require "support"
local emulator = require "emulator"
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
    assert.equal("interrupted\n", err) -- the letta.Error with code "interrupted", as itself
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

  -- Runs the REPL on a terminal (util-linux `script` gives it one) with HOME in a temporary
  -- folder; returns the result and what ~/.lettash_history holds afterwards (nil when unsaved).
  local function on_terminal(input, env)
    local home = support.tmpdir()
    local quoted = input:gsub("\\", "\\\\"):gsub("'", "'\\''"):gsub("\n", "\\n"):gsub("%%", "%%%%")
    local r = sh(string.format("printf '%s' | HOME=%s timeout 20 script -qec %s /dev/null",
                               quoted, home, support.quote(support.bin)), { env = env })
    local history = support.read_file(home .. "/.lettash_history")
    support.rmdir(home)
    return r, history
  end

  it("keeps lines holding a typed token, password or key out of the history", function()
    if sh("command -v script").code ~= 0 then
      pending("util-linux 'script' is needed to give the REPL a terminal")
      return
    end
    local r, history = on_terminal(table.concat({
      "a = 1",
      'c = letta.client{base_url = "http://127.0.0.1:1", token = "hunter2-typed"}',
      'auth = "Bearer abcdef123"',
      'key = "sk-let-Zm9vYmFyYmF6cXV4"',
      'pasted = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4"',
      'id = "agent-550e8400-e29b-41d4-a716-446655440000"',
      'p = "plain pw"', -- the value of LETTA_PASSWORD, however ordinary it looks
      "b = 2",
    }, "\n") .. "\n", { LETTA_PASSWORD = "plain pw" })
    assert.equal(0, r.code)
    assert.is_not_nil(history)
    assert.equal('a = 1\nid = "agent-550e8400-e29b-41d4-a716-446655440000"\nb = 2\n', history)
  end)
end)

describe("letta.repl.is_secret", function()
  local repl = require "letta.repl"

  it("finds secrets given to secret-named fields, bearer tokens and keys", function()
    for _, line in ipairs {
      'c = letta.client{token = "hunter2"}',
      "users.onboard('jose', {password = 'pw'})",
      'h = {["Authorization"] = "Bearer xyz"}',
      "body = '{\"api_key\": \"abc\"}'",
      'if LETTA_PASSWORD == "s3cret" then end',
      'c.session:set("Bearer abc.def")',
      'k = "sk-let-aGVsbG8gd29ybGQ"',
      "sk-proj-12345678abcd",
    } do
      assert.is_true(repl.is_secret(line), line)
    end
  end)

  it("finds long random-looking strings, quoted or pasted bare", function()
    assert.is_true(repl.is_secret('letta.client{base_url = u, key = "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4"}'))
    assert.is_true(repl.is_secret("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"))
    assert.is_true(repl.is_secret("x4Rt9bQ2mZ7pL0vK8sJ3"))
  end)

  it("leaves ordinary code, Letta ids, paths and dates alone", function()
    for _, line in ipairs {
      "client.agents:list()",
      'client.agents:retrieve("agent-550e8400-e29b-41d4-a716-446655440000")',
      'client.blocks:modify("block-6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab", {value = "x"})',
      'c = letta.client{base_url = "https://my-vps:8283", token = os.getenv("LETTA_PASSWORD")}',
      "for _, task in ipairs(tasks) do print(task) end",
      'import.run{agent_id = a, path = "/tmp/notes-2024-05-01.txt"}',
      "some_really_long_variable_name_2 = 1",
      "CamelCaseIdentifierNameHere = 3",
      'created_at = "2024-05-01T12:30:00Z"',
      "tokens = {}",
      "password = nil",
    } do
      assert.is_false(repl.is_secret(line), line)
    end
  end)
end)

describe("lettash REPL results", function()
  it("prints objects with __tostring (client, store, error) as their summary", function()
    local dir = support.tmpdir()
    local r = lettash({ "-i" }, {
      env = { LETTA_BASE_URL = "http://127.0.0.1:1", LETTA_API_KEY = false, LETTA_PASSWORD = false },
      stdin = "client\n{client}\nletta.store.open('" .. dir .. "/store')\n"
        .. "require('letta.errors').new{status = 404, message = 'gone'}\n",
    })
    support.rmdir(dir)
    assert.equal(0, r.code)
    local lines = {}
    for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("letta.Client (http://127.0.0.1:1, no token)", lines[1])
    assert.equal("{ letta.Client (http://127.0.0.1:1, no token) }", lines[2])
    assert.equal("letta.store (" .. dir .. "/store)", lines[3])
    assert.equal("404 Not Found: gone", lines[4])
    assert.not_matches("session", r.stdout, 1, true)
  end)

  it("shows an object's fields with pretty.repr(x, {raw = true})", function()
    local r = lettash({ "-i" }, {
      env = { LETTA_BASE_URL = "http://127.0.0.1:1" },
      stdin = "pretty.repr(client, {raw = true, depth = 1})\n",
    })
    assert.equal(0, r.code)
    assert.matches('base_url = "http://127.0.0.1:1"', r.stdout, 1, true)
    assert.matches("agents = {...}", r.stdout, 1, true)
  end)

  it("prints a long list as a summary line and its first 20 rows; pretty.all(_) prints it all", function()
    local r = lettash({ "-i" }, { stdin = "t = {} for i = 1, 500 do t[i] = 'row' .. i end\nt\npretty.all(_)\n" })
    assert.equal(0, r.code)
    local shown, all = r.stdout:match("^(.-\n})\n(.*)$")
    assert.is_not_nil(shown)
    assert.matches("^500 items, showing the first 20 %(all: pretty.all%(_%)%)\n{\n", shown)
    assert.matches('"row20",\n  ... (480 more)\n}', shown, 1, true)
    assert.not_matches('"row21"', shown, 1, true)
    assert.matches('"row21"', all, 1, true)
    assert.matches('"row500"\n}\n$', all)
  end)

  it("keeps the last result in _", function()
    local r = lettash({ "-i" }, { stdin = "6 * 7\n_ + 1\nx = 1\n_\n" })
    assert.equal("42\n43\n43\n", r.stdout)
  end)
end)

describe("lettash REPL errors", function()
  local emu
  lazy_setup(function() emu = emulator.start() end)
  lazy_teardown(function() emu:stop() end)

  local function repl(input)
    return lettash({ "-i" }, { stdin = input, env = { LETTA_BASE_URL = emu.url, LETTA_API_KEY = false,
                                                       LETTA_PASSWORD = false } })
  end

  it("prints an API error on one line, without a traceback", function()
    local r = repl('client.agents:retrieve("agent-550e8400-e29b-41d4-a716-446655440000")\n1 + 1\n')
    assert.equal("2\n", r.stdout)
    assert.matches("^client: [^\n]*\n404 Not Found: [^\n]*agent%-550e8400[^\n]*\n$", r.stderr)
  end)

  it("prints the library's argument errors and error() calls on one line", function()
    local r = repl("client.agents:retrieve(nil)\nletta.client(42)\nerror('oops')\nstring.rep()\n")
    local lines = {}
    for l in r.stderr:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(5, #lines, r.stderr)
    assert.matches("bad argument #1 to 'retrieve'", lines[2], 1, true)
    assert.matches("bad argument #1 to 'client'", lines[3], 1, true)
    assert.equal("stdin:1: oops", lines[4])
    assert.matches("^stdin:1: bad argument #1 to 'rep'", lines[5])
  end)

  it("keeps the traceback for Lua errors (calling nil, indexing nil)", function()
    local r = repl("undefined_function()\nlocal t t.x = 1\n")
    assert.matches("stdin:1: attempt to call a nil value (global 'undefined_function')\nstack traceback:\n",
                   r.stderr, 1, true)
    assert.matches("stdin:1: attempt to index a nil value (local 't')\nstack traceback:\n", r.stderr, 1, true)
  end)

  it("leaves scripts as lua5.4 has them: a string error with its traceback, an error object as its line", function()
    local r = lettash({ "-e", "error('custom')" })
    assert.equal(1, r.code)
    assert.matches("^lettash: %(command line%):1: custom\nstack traceback:", r.stderr)
    r = lettash({ "-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))" })
    assert.equal(1, r.code)
    assert.equal("lettash: custom\n", r.stderr)
  end)
end)
