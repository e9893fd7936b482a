-- The notes' deployment from the scripts, the REPL and -e (issue 13, items 1 and 11): a server at
-- https://<vps>:8283 with a self-signed certificate and a password (the emulator with --tls-cert
-- and --password, the certificate made here with openssl). The certificate is trusted through
-- LETTA_CA_FILE, CURL_CA_BUNDLE, SSL_CERT_FILE, SSL_CERT_DIR or `config.lua set ca_file`; a TLS
-- failure says which to set. And the errors people meet there are one line they can act on: a
-- proxy's HTML page, a 401 (which variable is set), a bad LETTA_BASE_URL, a malformed id.
local support = require "support"
local emulator = require "emulator"

local PASSWORD = "vps-password-6f1e2d"

-- Every variable that says where the server is, how to log in or which CA to trust: unset, so
-- that each run says exactly what it uses.
local CLEAN = { LETTA_BASE_URL = false, LETTA_PASSWORD = false, LETTA_API_KEY = false, LETTA_CA_FILE = false,
                CURL_CA_BUNDLE = false, SSL_CERT_FILE = false, SSL_CERT_DIR = false, LETTASH_INIT = false }

-- run(dir, base_url, argv, env) -> {code, stdout, stderr}: bin/lettash with a clean environment,
-- the store in dir, the password and URL set unless env says otherwise (false unsets).
local function runner(get)
  return function(argv, env, opts)
    local emu, dir = get()
    local e = {}
    for k, v in pairs(CLEAN) do e[k] = v end
    e.LETTA_BASE_URL, e.LETTA_PASSWORD, e.LETTA_STORE = emu.url, PASSWORD, dir .. "/store"
    e.LETTASH_LUA_PATH, e.HOME = support.lua_path, dir
    for k, v in pairs(env or {}) do e[k] = v end
    local args = {}
    for i, a in ipairs(argv) do
      args[i] = (i == 1 and a:match("^scripts/")) and support.root .. "/" .. a or a
    end
    return support.lettash(args, { env = e, cwd = opts and opts.cwd, stdin = opts and opts.stdin })
  end
end

-- In a describe block: the emulator start(dir) returns (dir: a temporary directory, removed with
-- the emulator after the block), reset before each test with no store left; set(emu, dir) hands
-- them to the block's locals. Returns the block's run.
local function suite(start, set)
  local emu, dir
  lazy_setup(function()
    dir = support.tmpdir()
    emu = start(dir)
    set(emu, dir)
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    support.rmdir(dir)
  end)
  before_each(function()
    emu:reset()
    os.remove(dir .. "/store")
    os.remove(dir .. "/store-lock")
  end)
  return runner(function() return emu, dir end)
end

-- The one line a script printed on stderr, without its "<script>: " prefix (asserts it is one).
local function line(r, script)
  local msg = (r.stderr or ""):match("^" .. script .. ": ([^\n]+)\n$")
  assert(msg, "expected one line '" .. script .. ": ...' on stderr, got: " .. tostring(r.stderr))
  return msg
end

local function has_position(text) return text:find("%.lua:%d+:") ~= nil or text:find("%(command line%):%d+:") ~= nil end

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- ---------------------------------------------------------------------------------------------
describe("a self-signed server", function()
  local emu, dir, cert, other
  local run = suite(function(d)
    local key
    cert, key = support.self_signed_cert(d, "server")
    other = support.self_signed_cert(d, "other")
    return emulator.start{ "--password", PASSWORD, "--tls-cert", cert, "--tls-key", key }
  end, function(e, d) emu, dir = e, d end)

  it("is refused without a CA, and the script's one line says to set LETTA_CA_FILE or config.lua's ca_file", function()
    local r = run({ "scripts/onboard.lua", "alice" })
    assert.equal(1, r.code)
    assert.matches("^tls: SSL certificate problem: self%-signed certificate %(%u+ /v1/[^)]*%): the server's "
                   .. "certificate is not trusted; set LETTA_CA_FILE to the certificate %(or the CA that signed "
                   .. "it%), or run: lettash scripts/config%.lua set ca_file PATH$", line(r, "onboard"))
    assert.equal(0, #emu:requests())
    -- a system bundle in CURL_CA_BUNDLE does not hold it either: the line names it, and both ways out
    r = run({ "scripts/onboard.lua", "alice" }, { CURL_CA_BUNDLE = other })
    assert.matches("not trusted by CURL_CA_BUNDLE=" .. escape(other) .. "; set LETTA_CA_FILE to the server's "
                   .. "certificate %(or the CA that signed it%), or run: lettash scripts/config%.lua set ca_file PATH$",
                   line(r, "onboard"))
  end)

  it("LETTA_CA_FILE makes the scripts work (doctor, onboard, users)", function()
    local env = { LETTA_CA_FILE = cert }
    local r = run({ "scripts/doctor.lua" }, env)
    assert.equal(0, r.code, r.stdout .. r.stderr)
    r = run({ "scripts/onboard.lua", "alice", "--name", "Alice" }, env)
    assert.equal(0, r.code, r.stderr)
    r = run({ "scripts/users.lua" }, env)
    assert.equal(0, r.code, r.stderr)
    assert.matches("alice", r.stdout)
    assert.equal(1, #emu:state().identities)
  end)

  it("CURL_CA_BUNDLE, SSL_CERT_FILE and SSL_CERT_DIR work as they do for curl", function()
    for _, env in ipairs({ { CURL_CA_BUNDLE = cert }, { SSL_CERT_FILE = cert } }) do
      local r = run({ "scripts/doctor.lua" }, env)
      assert.equal(0, r.code, r.stdout .. r.stderr)
    end
    -- a directory of certificates named by their hash, as c_rehash makes it
    local certs = dir .. "/certs"
    local h = support.sh("mkdir -p " .. support.quote(certs) .. " && openssl x509 -hash -noout -in " .. support.quote(cert))
    assert.equal(0, h.code)
    os.execute("cp " .. support.quote(cert) .. " " .. support.quote(certs .. "/" .. h.stdout:gsub("%s+$", "") .. ".0"))
    local r = run({ "scripts/doctor.lua" }, { SSL_CERT_DIR = certs })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    -- LETTA_CA_FILE wins over CURL_CA_BUNDLE
    r = run({ "scripts/doctor.lua" }, { LETTA_CA_FILE = cert, CURL_CA_BUNDLE = other })
    assert.equal(0, r.code, r.stdout .. r.stderr)
  end)

  it("a wrong LETTA_CA_FILE is named in the TLS error; a missing one is refused before any request", function()
    local r = run({ "scripts/onboard.lua", "alice" }, { LETTA_CA_FILE = other })
    assert.equal(1, r.code)
    assert.matches("^tls: .*: the server's certificate is not trusted by LETTA_CA_FILE=" .. escape(other)
                   .. "; point LETTA_CA_FILE at the server's certificate %(or the CA that signed it%)$", line(r, "onboard"))
    r = run({ "scripts/onboard.lua", "alice" }, { LETTA_CA_FILE = dir .. "/nope/cert.pem" })
    assert.equal(1, r.code)
    assert.equal("LETTA_CA_FILE=" .. dir .. "/nope/cert.pem: no such file", line(r, "onboard"))
    r = run({ "scripts/doctor.lua" }, { CURL_CA_BUNDLE = dir .. "/missing.pem" })
    assert.matches("CURL_CA_BUNDLE=" .. escape(dir) .. "/missing%.pem: no such file", r.stdout .. r.stderr)
    r = run({ "scripts/onboard.lua", "alice" }, { SSL_CERT_FILE = dir })
    assert.equal("SSL_CERT_FILE=" .. dir .. ": a directory, not a certificate file", line(r, "onboard"))
    assert.equal(0, #emu:requests())
  end)

  it("config.lua set ca_file stores the absolute path of a readable file, and every script uses it", function()
    local r = run({ "scripts/config.lua", "set", "ca_file", "nope.pem" }, {}, { cwd = dir })
    assert.equal(1, r.code)
    assert.equal("ca_file=" .. dir .. "/nope.pem: no such file", line(r, "config"))
    r = run({ "scripts/config.lua", "get", "ca_file" })
    assert.equal(1, r.code) -- nothing was stored
    r = run({ "scripts/config.lua", "set", "ca_file", "server.pem" }, {}, { cwd = dir })
    assert.equal(0, r.code, r.stderr)
    assert.equal("ca_file = " .. cert .. "\n", r.stdout)
    -- used without any variable, and over CURL_CA_BUNDLE / SSL_CERT_FILE (the system's bundle)
    r = run({ "scripts/doctor.lua" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    r = run({ "scripts/onboard.lua", "bob" }, { CURL_CA_BUNDLE = other, SSL_CERT_FILE = other })
    assert.equal(0, r.code, r.stderr)
    -- LETTA_CA_FILE wins over it, and config.lua says so
    r = run({ "scripts/onboard.lua", "carol" }, { LETTA_CA_FILE = other })
    assert.matches("not trusted by LETTA_CA_FILE=", line(r, "onboard"))
    r = run({ "scripts/config.lua", "list" }, { LETTA_CA_FILE = other })
    assert.matches("ca_file = " .. escape(cert) .. "  %(LETTA_CA_FILE wins%)", r.stdout)
    -- a setting that no longer trusts the server: the line names the setting and how to change it
    r = run({ "scripts/config.lua", "set", "ca_file", other })
    assert.equal(0, r.code, r.stderr)
    r = run({ "scripts/onboard.lua", "dave" })
    assert.matches("not trusted by the ca_file setting %(" .. escape(other) .. "%); run: lettash "
                   .. "scripts/config%.lua set ca_file PATH with the server's certificate", line(r, "onboard"))
    r = run({ "scripts/config.lua", "--help" })
    assert.matches("ca_file +certificate %(PEM%) to trust", r.stdout)
  end)

  it("the REPL's client and -e use LETTA_CA_FILE too", function()
    local r = run({ "-e", "print(require('letta').client().health:check().status)" }, { LETTA_CA_FILE = cert })
    assert.equal(0, r.code, r.stderr)
    assert.equal("ok\n", r.stdout)
    r = run({ "-i" }, { LETTA_CA_FILE = cert }, { stdin = "client.health:check().status\n#client.blocks:list()\n" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("ok\n0\n", r.stdout)
  end)

  it("a certificate made for another host name says so", function()
    local port = emu.url:match(":(%d+)$")
    local r = run({ "scripts/onboard.lua", "alice" }, { LETTA_BASE_URL = "https://localhost:" .. port, LETTA_CA_FILE = cert })
    assert.matches("^tls: .*: the server's certificate was not made for the host in https://localhost:" .. port
                   .. ": use the name or IP address it was issued for", line(r, "onboard"))
  end)

  it("http:// to the TLS port suggests https://", function()
    local r = run({ "scripts/onboard.lua", "alice" }, { LETTA_BASE_URL = emu.url:gsub("^https", "http") })
    assert.matches(": if the server serves HTTPS there, use https:// in the URL$", line(r, "onboard"))
  end)
end)

-- ---------------------------------------------------------------------------------------------
describe("errors a person can act on", function()
  local emu, dir
  local run = suite(function() return emulator.start{ "--password", PASSWORD } end,
                    function(e, d) emu, dir = e, d end)

  it("nginx's 502 page (Letta down behind it) reads as the proxy's, asking whether Letta runs", function()
    emu:faults("kind=proxy-502")
    local c = emu:client{ token = PASSWORD, max_retries = 0 }
    local err = emulator.fails(c.blocks.list, c.blocks)
    c:close()
    assert.equal(502, err.status)
    assert.equal("server_error", err.code)
    assert.is_true(err.html)
    assert.matches("<center>nginx", err.body)
    assert.equal("502 Bad Gateway from the proxy in front of Letta (is the Letta server running?) (GET /v1/blocks/)",
                 tostring(err))
    local r = run({ "scripts/onboard.lua", "alice" })
    assert.equal(1, r.code)
    assert.matches("^502 Bad Gateway from the proxy in front of Letta %(is the Letta server running%?%)",
                   line(r, "onboard"))
    assert.is_nil(r.stderr:find("<", 1, true))
  end)

  it("503 and 504 pages likewise; an HTML page is told by its start too; Letta's own JSON 502 is unchanged", function()
    local c = emu:client{ token = PASSWORD, max_retries = 0 }
    emu:faults("kind=proxy-503,times=1;kind=proxy-504,times=1;kind=502,times=1")
    local e503 = emulator.fails(c.health.check, c.health)
    local e504 = emulator.fails(c.health.check, c.health)
    local e502 = emulator.fails(c.health.check, c.health)
    c:close()
    assert.matches("^503 Service Unavailable from the proxy in front of Letta %(is the Letta server running%?%)",
                   tostring(e503))
    assert.matches("^504 Gateway Timeout from the proxy in front of Letta %(the Letta server did not answer in time",
                   tostring(e504))
    assert.equal("502 Bad Gateway: Bad Gateway (GET /v1/health/)", tostring(e502))
    local errors = require "letta.errors"
    local e = errors.new{ status = 502, body = "\n<!DOCTYPE html><html><body>Bad gateway</body></html>", method = "GET",
                          path = "/v1/agents/" }
    assert.equal("502 Bad Gateway from the proxy in front of Letta (is the Letta server running?) (GET /v1/agents/)",
                 tostring(e))
    e = errors.new{ status = 413, body = "<html><head><title>413 Request Entity Too Large</title></head></html>" }
    assert.equal("413 Payload Too Large from the proxy in front of Letta (an HTML page, not an answer from Letta)",
                 tostring(e))
  end)

  it("a 401 says whether LETTA_PASSWORD or LETTA_API_KEY is set, never their value", function()
    local r = run({ "scripts/onboard.lua", "alice" }, { LETTA_PASSWORD = "wrong-pw-1234" })
    assert.matches("^401 Unauthorized: .*: LETTA_PASSWORD is set but the server refused it$", line(r, "onboard"))
    assert.is_nil(r.stderr:find("wrong-pw-1234", 1, true))
    r = run({ "scripts/onboard.lua", "alice" }, { LETTA_PASSWORD = PASSWORD, LETTA_API_KEY = "wrong-key-5678" })
    assert.matches("^401 Unauthorized: .*: LETTA_API_KEY is set but the server refused it$", line(r, "onboard"))
    assert.is_nil(r.stderr:find("wrong-key-5678", 1, true))
    r = run({ "scripts/onboard.lua", "alice" }, { LETTA_PASSWORD = false })
    assert.matches("^401 Unauthorized: .*: neither LETTA_PASSWORD nor LETTA_API_KEY is set$", line(r, "onboard"))
    r = run({ "-e", "require('letta').client{ max_retries = 0 }.blocks:list()" }, { LETTA_PASSWORD = false })
    assert.equal(1, r.code)
    assert.matches("^lettash: 401 Unauthorized: [^\n]*: neither LETTA_PASSWORD nor LETTA_API_KEY is set\n", r.stderr)
  end)

  local BAD_URLS = { "localhost:8283", "htp://x", "127.0.0.1" }
  local function bad_url_line(url)
    return "LETTA_BASE_URL=" .. url .. " is not a server URL: expected the form https://host:8283 (or http://host:8283)"
  end

  it("a bad LETTA_BASE_URL is one line naming it and the expected form, with no Lua position", function()
    for _, url in ipairs(BAD_URLS) do
      local want = bad_url_line(url)
      for _, script in ipairs({ "doctor", "onboard", "chat" }) do
        local argv = { "scripts/" .. script .. ".lua" }
        if script ~= "doctor" then argv[2] = "alice" end
        if script == "chat" then argv[3], argv[4] = emulator.missing_id("agent"), "hi" end
        local r = run(argv, { LETTA_BASE_URL = url })
        assert.equal(1, r.code, script)
        assert.equal(want, line(r, script))
      end
      local r = run({ "-i" }, { LETTA_BASE_URL = url }, { stdin = "client\n" })
      assert.matches("client not created: " .. escape(want) .. "\n", r.stderr)
      assert.is_false(has_position(r.stdout .. r.stderr), r.stderr)
    end
  end)

  -- needs src/lh_runtime.c's lh_traceback to print an error object without a traceback, as lua.c
  -- does (proposal in /tmp/proposals/tls.md): the client raises a letta.Error here
  it("a bad LETTA_BASE_URL in -e is the same one line", function()
    for _, url in ipairs(BAD_URLS) do
      local r = run({ "-e", "local c = require('letta').client()" }, { LETTA_BASE_URL = url })
      assert.equal(1, r.code)
      assert.equal("lettash: " .. bad_url_line(url) .. "\n", r.stderr)
    end
  end)

  it("a malformed id is refused before any request, naming the form the server expects", function()
    local c = emu:client{ token = PASSWORD }
    local err = emulator.fails(c.agents.retrieve, c.agents, "agent-1234")
    assert.matches("bad argument #1 to 'retrieve' %(agent id expected: agent%-<uuid>, got 'agent%-1234'%)$", err)
    for _, call in ipairs({
      { c.blocks, "retrieve", "block-1", "block id expected: block%-<uuid>, got 'block%-1'" },
      { c.identities, "delete", "identity-x", "identity id expected: identity%-<uuid>" },
      { c.agents.messages, "list", "agent-ABCDEF", "agent id expected: agent%-<uuid>" },
      { c.runs, "retrieve", "run-1", "run id expected: run%-<uuid>" },
    }) do
      assert.matches(call[4], emulator.fails(call[1][call[2]], call[1], call[3]))
    end
    assert.matches("message id expected: message%-<uuid>",
                   emulator.fails(c.agents.messages.modify, c.agents.messages, emulator.missing_id("agent"), "message-1", {}))
    -- what the server accepts goes through (a 404 for an id it does not have)
    assert.equal(404, emulator.fails(c.agents.retrieve, c.agents, emulator.missing_id("agent")).status)
    assert.equal(1, #emu:requests())
    c:close()
    -- in a script: one line
    local r = run({ "scripts/onboard.lua", "alice" })
    assert.equal(0, r.code, r.stderr)
    r = run({ "scripts/chat.lua", "alice", "--agent", "agent-1234", "hi" })
    assert.equal(1, r.code)
    local msg = line(r, "chat")
    assert.matches("agent%-<uuid>", msg)
    assert.matches("agent%-1234", msg)
    assert.is_false(has_position(msg), msg)
    -- and the default_agent setting is checked with the same rule
    r = run({ "scripts/config.lua", "set", "default_agent", "agent-1234" })
    assert.equal("default_agent must be an agent id (agent-<uuid>), got 'agent-1234'", line(r, "config"))
  end)
end)
