-- Secrets and TLS (issue 8). After a full run with a known token (every workflow script, a failing
-- call, the REPL on a terminal) the token appears nowhere: stdout, stderr, error messages,
-- ~/.lettash_history, the store's files (bytes), the emulator's request log as printed. A token
-- typed in the REPL is kept out of the history. TLS: the emulator serves HTTPS with a self-signed
-- certificate made here with openssl; the client refuses it by default (letta.Error code "tls"),
-- accepts it with ca_file = the certificate, and with insecure = true (warning on stderr).
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"

local TOKEN = "lettash-secret-tok-9d41c27be6a04f5f"

local function has_command(name) return support.sh("command -v " .. name).code == 0 end

describe("secrets", function()
  local emu, admin, dir, home, agent_id
  local outputs = {} -- every stdout and stderr seen, labelled

  -- run("onboard", {...}) -> r: a workflow script as a child, the token from LETTA_PASSWORD
  local function run(script, args, env)
    local e = { LETTA_BASE_URL = emu.url, LETTA_STORE = dir .. "/store", LETTA_PASSWORD = TOKEN,
                LETTA_API_KEY = false, LETTASH_LUA_PATH = support.lua_path, HOME = home }
    for k, v in pairs(env or {}) do e[k] = v end
    local argv = { support.root .. "/scripts/" .. script .. ".lua" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local r = support.lettash(argv, { env = e })
    outputs[#outputs + 1] = { script .. " stdout", r.stdout or "" }
    outputs[#outputs + 1] = { script .. " stderr", r.stderr or "" }
    return r
  end

  -- the REPL on a pseudo-terminal (so that readline runs and writes the history)
  local function repl(lines, env)
    local input = support.write_file(dir .. "/repl_in", table.concat(lines, "\n") .. "\n")
    local prefix = ""
    for k, v in pairs(env) do prefix = prefix .. k .. "=" .. support.quote(v) .. " " end
    return support.sh(string.format("%s HOME=%s timeout 30 script -qec %s /dev/null < %s", prefix,
                                    support.quote(home), support.quote(support.bin), support.quote(input)),
                      { env = { LETTA_API_KEY = false, LETTASH_LUA_PATH = support.lua_path, LETTA_STORE = dir .. "/store" } })
  end

  local function assert_clean(label, text)
    assert.is_nil((text or ""):find(TOKEN, 1, true), "the token is in " .. label .. ":\n" .. tostring(text))
  end

  lazy_setup(function()
    emu = emulator.start{ "--password", TOKEN, "--log-requests" }
    admin = emu:client{ token = TOKEN }
    dir = support.tmpdir()
    home = dir .. "/home"
    os.execute("mkdir -p " .. support.quote(home))
    agent_id = emulator.new_agent(admin, { name = "bot", memory_blocks = { { label = "human", value = "?" },
                                                                    { label = "persona", value = "helpful" } } }).id
  end)
  lazy_teardown(function()
    if admin then admin:close() end
    if emu then emu:stop() end
    support.rmdir(dir)
  end)

  it("a full run of the workflows leaves the token in no output", function()
    local r = run("onboard", { "alice", "--name", "Alice" })
    assert.equal(0, r.code, r.stderr)
    r = run("chat", { "alice", agent_id, "--stream", "hello", "there" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("you said: hello there", r.stdout)
    local file = support.write_file(dir .. "/passages.jsonl",
      '{"text": "Alice likes green tea"}\n{"text": "Alice lives in Lyon", "tags": ["home"]}\nnot json\n')
    r = run("import", { agent_id, file })
    assert.equal(0, r.code, r.stderr)
    r = run("doctor", {})
    assert.equal(0, r.code, r.stdout .. r.stderr)
    -- failing calls: a missing agent (404), and a wrong password (401), and no server at all
    r = run("chat", { "alice", "--agent", "agent-00000000-0000-4000-8000-000000000000", "hi" })
    assert.equal(1, r.code)
    assert.matches("^chat: [^\n]+\n$", r.stderr)
    r = run("doctor", {}, { LETTA_PASSWORD = TOKEN .. "-wrong" })
    assert.are_not.equal(0, r.code)
    r = run("onboard", { "bob" }, { LETTA_BASE_URL = "http://127.0.0.1:1" })
    assert.equal(1, r.code)
    assert.matches("^onboard: [^\n]+\n$", r.stderr)
    -- an uncaught letta.Error from a script, with its traceback
    local script = support.write_file(dir .. "/fail.lua", [[
      local letta = require "letta"
      local c = letta.client{ max_retries = 0 }
      local ok, err = pcall(c.blocks.retrieve, c.blocks, "block-00000000-0000-4000-8000-000000000000")
      print(tostring(err), err.message, err.body, err.method, err.path)
      print(require("letta.pretty").repr(err), tostring(c), require("letta.pretty").repr(c))
      c.agents:retrieve("agent-00000000-0000-4000-8000-000000000000")
    ]])
    r = support.lettash({ script }, { env = { LETTA_BASE_URL = emu.url, LETTA_PASSWORD = TOKEN, LETTA_API_KEY = false,
                                              HOME = home } })
    outputs[#outputs + 1] = { "script stdout", r.stdout }
    outputs[#outputs + 1] = { "script stderr", r.stderr }
    assert.equal(1, r.code)
    assert.matches("404 Not Found", r.stdout)
    assert.matches("^lettash: 404 Not Found", r.stderr)

    for _, o in ipairs(outputs) do assert_clean(o[1], o[2]) end
    -- the run did what it should (so the files below hold real records)
    assert.equal(2, #admin.agents.passages:list(agent_id))
  end)

  it("the REPL on a terminal: neither its output nor ~/.lettash_history holds the token", function()
    if not has_command("script") then return pending("util-linux 'script' is needed for a terminal") end
    local r = repl({
      "client",
      "client.health:check()",
      "#client.blocks:list()",
      "client.blocks:retrieve('block-00000000-0000-4000-8000-000000000000')",
      "local ok, e = pcall(client.agents.retrieve, client.agents, 'agent-1') return e",
      "tostring(client), client.session",
      "os.exit(0)",
    }, { LETTA_BASE_URL = emu.url, LETTA_PASSWORD = TOKEN })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("token set", r.stdout)
    assert.matches('status = "ok"', r.stdout)
    assert.matches("404 Not Found", r.stdout)
    assert_clean("the REPL's output", r.stdout .. r.stderr)
    local history = support.read_file(home .. "/.lettash_history")
    assert.truthy(history and history:find("client.health:check()", 1, true), "no history written")
    assert_clean("~/.lettash_history", history)
  end)

  it("a token typed in the REPL is kept out of the history", function()
    if not has_command("script") then return pending("util-linux 'script' is needed for a terminal") end
    local r = repl({
      "c2 = letta.client{ token = '" .. TOKEN .. "' }",
      "c2.health:check().status",
      "t = '" .. TOKEN .. "'",
      "k = 'api-key-typed-" .. TOKEN:sub(-8) .. "'",
      "os.exit(0)",
    }, { LETTA_BASE_URL = emu.url, LETTA_PASSWORD = TOKEN, LETTA_API_KEY = "api-key-typed-" .. TOKEN:sub(-8) })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("ok", r.stdout)
    local history = support.read_file(home .. "/.lettash_history")
    assert.truthy(history:find("c2.health:check().status", 1, true), history)
    assert_clean("~/.lettash_history", history)
    assert.is_nil(history:find("api-key-typed-", 1, true), "LETTA_API_KEY's value is in the history")
  end)

  it("a long token (4 KB, as some JWTs) is sent whole, and shows nowhere either", function()
    -- the Authorization line was once built in a 1 KiB buffer, which cut such a token: 401
    local long = "eyJ" .. string.rep("LongTokenPart-", 290)
    emu:config{ password = long }
    local ok, res = pcall(function()
      local c = emu:client{ token = long, max_retries = 0 }
      local n = #c.blocks:list()
      local err = emulator.fails(c.blocks.retrieve, c.blocks, "block-00000000-0000-4000-8000-000000000000")
      c:close()
      return { n = n, err = tostring(err) .. tostring(err.body) }
    end)
    emu:config{ password = TOKEN }
    assert(ok, tostring(res))
    assert.is_number(res.n)
    assert.matches("^404 Not Found", res.err)
    assert.is_nil(res.err:find("LongTokenPart", 1, true))
    assert.is_nil(emu:requests_text():find("LongTokenPart", 1, true))
  end)

  it("the store's files and the emulator's request log hold no token", function()
    -- the LMDB file and its lock file, byte for byte
    local db = support.read_file(dir .. "/store")
    local lock = support.read_file(dir .. "/store-lock")
    assert.truthy(db and #db > 0 and lock, "no store files")
    assert.truthy(db:find("alice", 1, true), "the store holds no record of alice: wrong file?")
    assert_clean("the store file", db)
    assert_clean("the store's lock file", lock)
    -- every file under the temporary HOME (history and anything else written there)
    local p = io.popen("find " .. support.quote(home) .. " -type f")
    for f in p:lines() do assert_clean(f, support.read_file(f)) end
    p:close()
    -- the request log, as the emulator prints it (GET /_emulator/requests), and its stderr lines
    local log = emu:requests_text()
    assert.truthy(log:find("/v1/identities/", 1, true), "the log does not hold the run")
    assert.matches('"authorization":"%*%*%*"', log)
    assert_clean("the emulator's request log", log)
    assert_clean("the emulator's stderr", emu:stderr())
  end)
end)

describe("TLS", function()
  local emu, dir, cert, key

  lazy_setup(function()
    dir = support.tmpdir()
    cert, key = support.self_signed_cert(dir)
    emu = emulator.start{ "--password", TOKEN, "--tls-cert", cert, "--tls-key", key }
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    support.rmdir(dir)
  end)

  -- a child lettash running code with the client options opts (Lua source); prints its results
  local function child(opts_src)
    local script = support.write_file(dir .. "/tls.lua", string.format([[
      local letta = require "letta"
      local c = letta.client{ base_url = os.getenv("EMU_URL"), max_retries = 0, %s }
      local ok, res = pcall(function() return c.health:check().status end)
      print("health", ok, ok and res or res.code, not ok and tostring(res) or "")
      if ok then
        local b = c.blocks:create{ label = "tls", value = "over https" }
        print("block", c.blocks:retrieve(b.id).value)
      end
    ]], opts_src))
    return support.lettash({ script }, { env = { EMU_URL = emu.url, LETTA_PASSWORD = TOKEN, LETTA_API_KEY = false } })
  end

  it("is served by the emulator over HTTPS", function()
    assert.matches("^https://127%.0%.0%.1:%d+$", emu.url)
  end)

  it("is verified by default: a self-signed certificate is refused (code tls), nothing sent", function()
    emu:clear_requests()
    local c = letta.client{ base_url = emu.url, token = TOKEN, max_retries = 0 }
    local err = emulator.fails(c.health.check, c.health)
    c:close()
    assert.equal("letta.Error", getmetatable(err).__name)
    assert.equal("tls", err.code)
    assert.equal(0, err.status)
    assert.matches("^tls: ", tostring(err))
    assert.is_nil(tostring(err):find(TOKEN, 1, true))
    assert.equal(0, #emu:requests(), "a request reached the server over an unverified connection")
    -- and in a child: the same, and it still has no warning to print
    local r = child("")
    assert.equal(0, r.code, r.stderr)
    assert.matches("health\tfalse\ttls\ttls: ", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("accepts the server with ca_file = its certificate", function()
    local c = letta.client{ base_url = emu.url, token = TOKEN, max_retries = 0, ca_file = cert }
    assert.equal("ok", c.health:check().status)
    local b = c.blocks:create{ label = "tls", value = "over https" }
    assert.equal("over https", c.blocks:retrieve(b.id).value)
    c:close()
    local r = child(string.format("ca_file = %q", cert))
    assert.equal(0, r.code, r.stderr)
    assert.matches("health\ttrue\tok", r.stdout)
    assert.matches("block\tover https", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("a wrong ca_file is refused too (code tls)", function()
    local other = support.self_signed_cert(dir, "other")
    local c = letta.client{ base_url = emu.url, token = TOKEN, max_retries = 0, ca_file = other }
    local err = emulator.fails(c.health.check, c.health)
    c:close()
    assert.equal("tls", err.code)
  end)

  it("insecure = true works, with a warning on stderr", function()
    local r = child("insecure = true")
    assert.equal(0, r.code, r.stderr)
    assert.matches("health\ttrue\tok", r.stdout)
    assert.matches("block\tover https", r.stdout)
    assert.matches("^lettash: warning: TLS certificate verification is off %(insecure = true%)\n$", r.stderr)
  end)
end)
