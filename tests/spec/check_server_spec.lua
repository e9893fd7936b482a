-- scripts/check-server.lua, run as a child `bin/lettash scripts/check-server.lua` against the
-- emulator: in secure mode every behaviour holds and nothing it made is left; with a switch that
-- imitates another server version it names exactly that difference; a refused password, a server
-- that is down and a bad command line end with one line and exit status 2; a needed behaviour that
-- differs exits 1; --json; Ctrl-C and a killed run leave nothing behind.
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local json = letta.json

-- The check names, in order: a contract (scripts parse the output).
local CHECKS = {
  "health", "auth", "trailing-slashes", "models", "agent-create",
  "identity-create", "identity-duplicate-key", "identity-list-by-key", "identity-modify", "identity-upsert-new-key",
  "block-create", "block-retrieve", "block-modify", "block-list-by-label", "block-identity-attach",
  "identity-blocks", "identity-block-ids",
  "block-attach", "block-attach-idempotent", "block-attach-label-clash", "block-detach", "block-detach-not-attached",
  "message-send", "message-sender-id", "message-stream", "run-async",
  "messages-newest-page", "messages-before", "messages-after",
  "passage-create", "passage-batch", "passage-list", "passage-search-tags", "passage-delete",
  "block-delete", "identity-delete", "agent-delete",
}

local PASSWORD = "pw-check-4711"

describe("scripts/check-server.lua", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.rmdir(dir) end)

  local function env_for(url, env)
    local e = { LETTA_BASE_URL = url, LETTA_STORE = dir .. "/store", LETTA_API_KEY = false, LETTA_PASSWORD = PASSWORD,
                LETTA_MODEL = false, LETTA_EMBEDDING = false, LETTASH_LUA_PATH = support.lua_path }
    for k, v in pairs(env or {}) do e[k] = v end
    return e
  end

  -- run(url, args, env) -> {code=, stdout=, stderr=}
  local function run(url, args, env)
    local argv = { support.root .. "/scripts/check-server.lua" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return support.lettash(argv, { env = env_for(url, env) })
  end

  -- The check lines of an output: {{status = "ok"|"differs"|"skipped", name =, line =}, ...}.
  local function checks_of(out)
    local t = {}
    for l in out:gmatch("[^\n]+") do
      local status, name = l:match("^(%a+) ([%w%-]+)")
      if status == "ok" or status == "differs" or status == "skipped" then
        t[#t + 1] = { status = status, name = name:gsub(":$", ""), line = l }
      end
    end
    return t
  end

  local function names(checks)
    local t = {}
    for i, c in ipairs(checks) do t[i] = c.name end
    return t
  end

  local function last_line(out) return out:match("([^\n]*)\n$") end

  -- Nothing the check made is on the server: the emulator's whole state, and every passage it
  -- made deleted (passages outlive their agent, and the state lists an agent's passages only).
  local function assert_clean(emu)
    local s = emu:state()
    assert.same({}, s.agents)
    assert.same({}, s.identities)
    assert.same({}, s.blocks)
    assert.same({}, s.runs)
    assert.is_nil(next(s.passages))
    assert.is_nil(next(s.messages))
    local made, deleted = 0, 0
    for _, q in ipairs(emu:requests()) do
      if q.path:match("^/v1/agents/[^/]+/archival%-memory") and q.status == 200 then
        if q.method == "POST" then made = made + 1 elseif q.method == "DELETE" then deleted = deleted + 1 end
      elseif q.path:match("^/v1/archives/[^/]+/passages/batch$") and q.status == 200 then
        made = made + #q.body.passages
      end
    end
    assert.equal(made, deleted, "passages made and deleted")
  end

  -- check-server --json against emu: exit 0, every check ok but `name`, which differs (seen and
  -- lettash matching those patterns) and is not needed; then nothing of the check is left.
  local function assert_one_differs(emu, name, seen, lettash)
    local r = run(emu.url, { "--json" })
    assert.equal(0, r.code, r.stderr)
    local doc = json.decode(r.stdout)
    assert.is_true(doc.ok)
    assert.same({ checks = #CHECKS, ok = #CHECKS - 1, differ = 1, skipped = 0 }, doc.totals)
    for _, c in ipairs(doc.checks) do
      if c.name == name then
        assert.is_false(c.ok)
        assert.is_false(c.needed)
        assert.matches(seen, c.seen)
        assert.matches(lettash, c.lettash)
      else
        assert.is_true(c.ok, c.name)
      end
    end
    assert_clean(emu)
  end

  -- Starts the script in the background; returns a handle with :kill(signal), :wait() -> code,
  -- :stdout(), :stderr().
  local function start(url, args)
    local argv = { support.quote(support.bin), support.quote(support.root .. "/scripts/check-server.lua") }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = support.quote(a) end
    local prefix = ""
    for k, v in pairs(env_for(url)) do
      prefix = prefix .. (v == false and ("unset " .. k .. "; ") or ("export " .. k .. "=" .. support.quote(v) .. "; "))
    end
    local script = string.format("%s%s >%s/out 2>%s/err </dev/null & echo $! >%s/pid; wait $!; echo $? >%s/code",
                                 prefix, table.concat(argv, " "), dir, dir, dir, dir)
    assert(os.execute("(sh -c " .. support.quote(script) .. ") >/dev/null 2>&1 &"))
    local pid
    for _ = 1, 500 do
      pid = tonumber(support.read_file(dir .. "/pid") or "")
      if pid then break end
      letta.sleep(0.01)
    end
    assert(pid, "the script did not start")
    return {
      kill = function(_, sig) os.execute("kill -" .. sig .. " " .. pid) end,
      wait = function()
        for _ = 1, 3000 do
          local code = tonumber(support.read_file(dir .. "/code") or "")
          if code then return code end
          letta.sleep(0.01)
        end
        error("the script did not end within 30 s")
      end,
      stdout = function() return support.read_file(dir .. "/out") or "" end,
      stderr = function() return support.read_file(dir .. "/err") or "" end,
    }
  end

  -- Waits until the emulator has seen a request method+path (a Lua pattern), 20 s at most.
  local function wait_for(emu, method, path)
    for _ = 1, 2000 do
      if emu:count(method, path) > 0 then return end
      letta.sleep(0.01)
    end
    error("no " .. method .. " " .. path .. " within 20 s")
  end

  -- -------------------------------------------------------------------------------------------
  describe("against the emulator in secure mode", function()
    local emu, admin
    emulator.suite(_ENV, function(e, c) emu, admin = e, c end,
                   { args = { "--password", PASSWORD }, client = { token = PASSWORD } })

    it("finds every behaviour as lettash expects it, exits 0 and leaves nothing on the server", function()
      local r = run(emu.url)
      assert.equal("", r.stderr)
      assert.equal(0, r.code, r.stdout)
      assert.equal("server " .. emu.url .. ": Letta 0.16.8", r.stdout:match("^([^\n]*)\n"))
      local checks = checks_of(r.stdout)
      assert.same(CHECKS, names(checks))
      for _, c in ipairs(checks) do assert.equal("ok " .. c.name, c.line) end
      assert.equal(#CHECKS .. " checks: " .. #CHECKS .. " ok, 0 differ", last_line(r.stdout))
      assert_clean(emu)
    end)

    it("names every object it makes lettash-check-<random> and leaves the server's own objects alone", function()
      local agent = emulator.new_agent(admin, { name = "mine" })
      local block = admin.blocks:create{ label = "mine", value = "keep me" }
      local identity = admin.identities:create{ identifier_key = "mine", name = "Mine" }
      emu:clear_requests()
      local r = run(emu.url)
      assert.equal(0, r.code, r.stdout .. r.stderr)
      local tags = {}
      for _, q in ipairs(emu:requests()) do
        local named = q.method == "POST" and (q.path == "/v1/agents/" and q.body.name
          or q.path == "/v1/identities/" and q.body.identifier_key or q.path == "/v1/blocks/" and q.body.label)
        if named then
          local tag = named:match("^(lettash%-check%-%x+)")
          assert.truthy(tag, named)
          tags[tag] = true
        end
        if q.method == "DELETE" then
          assert.no.matches(agent.id, q.path, 1, true)
          assert.no.matches(block.id, q.path, 1, true)
          assert.no.matches(identity.id, q.path, 1, true)
        end
      end
      local n = 0
      for _ in pairs(tags) do n = n + 1 end
      assert.equal(1, n) -- one <random> per run
      local s = emu:state()
      assert.same({ agent.id }, { s.agents[1].id })
      assert.same({ block.id }, { s.blocks[1].id })
      assert.same({ identity.id }, { s.identities[1].id })
    end)

    it("prints one JSON document with --json", function()
      local r = run(emu.url, { "--json" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stderr)
      local doc = json.decode(r.stdout)
      assert.same({ url = emu.url, version = "0.16.8" }, doc.server)
      assert.is_true(doc.ok)
      assert.same({ checks = #CHECKS, ok = #CHECKS, differ = 0, skipped = 0 }, doc.totals)
      assert.is_true(json.is_array(doc.left_on_server))
      assert.equal(0, #doc.left_on_server)
      local got = {}
      for i, c in ipairs(doc.checks) do
        got[i] = c.name
        assert.is_true(c.ok)
        assert.equal("boolean", type(c.needed))
        assert.equal("string", type(c.seen))
        assert.is_nil(c.lettash)
      end
      assert.same(CHECKS, got)
      assert_clean(emu)
    end)

    it("exits 1 when a behaviour a workflow needs differs, and still deletes what it made", function()
      emu:faults("kind=run-fail")
      local r = run(emu.url)
      assert.equal(1, r.code, r.stdout .. r.stderr)
      local differs = {}
      for _, c in ipairs(checks_of(r.stdout)) do
        if c.status ~= "ok" then differs[#differs + 1] = c end
      end
      assert.equal(1, #differs, r.stdout)
      assert.equal("run-async", differs[1].name)
      assert.matches("^differs run%-async: saw created %-> failed.*; lettash needs it: ", differs[1].line)
      assert.equal(#CHECKS .. " checks: " .. (#CHECKS - 1) .. " ok, 1 differ", last_line(r.stdout))
      assert_clean(emu)
    end)

    it("says which checks it could not run when one they need differs", function()
      emu:faults("kind=500,route=PATCH /v1/agents/*/core-memory/blocks/attach/*")
      local r = run(emu.url, { "--json" })
      assert.equal(1, r.code, r.stderr)
      local doc = json.decode(r.stdout)
      local by = {}
      for _, c in ipairs(doc.checks) do by[c.name] = c end
      assert.is_false(by["block-attach"].ok)
      assert.matches("^500 Internal Server Error", by["block-attach"].seen)
      assert.matches("^needs it: ", by["block-attach"].lettash)
      for _, n in ipairs({ "block-attach-idempotent", "block-attach-label-clash", "block-detach", "block-detach-not-attached" }) do
        assert.is_true(by[n].skipped, n)
        assert.is_false(by[n].ok)
      end
      assert.same({ checks = #CHECKS, ok = #CHECKS - 5, differ = 1, skipped = 4 }, doc.totals)
      assert.is_false(doc.ok)
      assert_clean(emu)
    end)

    it("refuses a wrong password with one line and exit status 2, never printing it, making nothing", function()
      local r = run(emu.url, {}, { LETTA_PASSWORD = "wrong-pw-123" })
      assert.equal(2, r.code)
      assert.equal("check-server: the server refused the password (401 Unauthorized): check LETTA_PASSWORD or LETTA_API_KEY\n",
                   r.stderr)
      assert.no.matches("wrong%-pw%-123", r.stdout .. r.stderr)
      assert.no.matches(PASSWORD, r.stdout .. r.stderr, 1, true)
      assert.equal(0, emu:count("POST") + emu:count("PUT") + emu:count("PATCH") + emu:count("DELETE"))
      assert_clean(emu)
    end)

    it("says a password is needed when none is set", function()
      local r = run(emu.url, {}, { LETTA_PASSWORD = false })
      assert.equal(2, r.code)
      assert.equal("check-server: the server asks for a password (401 Unauthorized): set LETTA_PASSWORD or LETTA_API_KEY\n",
                   r.stderr)
    end)

    for _, sig in ipairs{ "INT", "TERM" } do
      it("deletes what it made when interrupted with SIG" .. sig, function()
        emu:config{ latency_ms = 20 }
        local p = start(emu.url)
        wait_for(emu, "POST", "/v1/agents/[^/]+/archival%-memory")
        p:kill(sig)
        assert.equal(130, p:wait())
        assert.matches("\ncheck%-server: interrupted\n$", "\n" .. p:stderr())
        assert.equal(1, emu:count("POST", "/v1/agents/"))
        assert_clean(emu)
      end)
    end

    it("after a run killed with SIGKILL, the next run deletes what it left", function()
      emu:config{ latency_ms = 20 }
      local p = start(emu.url)
      wait_for(emu, "POST", "/v1/agents/[^/]+/messages/stream")
      p:kill("KILL")
      p:wait()
      local s = emu:state()
      assert.equal(1, #s.agents)
      assert.truthy(#s.identities + #s.blocks > 0)
      emu:config{ latency_ms = 0 }
      local r = run(emu.url)
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.matches("^check%-server: also deleted %d+ objects named lettash%-check%-%* %(left by an interrupted check%)\n$",
                     r.stderr)
      assert_clean(emu)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("against a server that creates identities on PUT (--compat upsert-creates)", function()
    local emu
    emulator.suite(_ENV, function(e) emu = e end, { args = { "--password", PASSWORD, "--compat", "upsert-creates" } })

    it("names exactly that behaviour, as one lettash does not depend on (exit 0), and deletes what the PUT made", function()
      local r = run(emu.url)
      assert.equal("", r.stderr)
      assert.equal(0, r.code, r.stdout)
      local checks = checks_of(r.stdout)
      assert.same(CHECKS, names(checks))
      for _, c in ipairs(checks) do
        if c.name == "identity-upsert-new-key" then
          assert.matches("^differs identity%-upsert%-new%-key: saw 200: PUT /v1/identities/ created \"identity%-[%x%-]+\" "
                         .. "for a new key %(Letta 0%.16%.8 answers 404%); lettash does not depend on it: ", c.line)
        else
          assert.equal("ok " .. c.name, c.line)
        end
      end
      assert.equal(#CHECKS .. " checks: " .. (#CHECKS - 1) .. " ok, 1 differ", last_line(r.stdout))
      assert.equal(2, emu:count("DELETE", "/v1/identities/identity%-[%x%-]+"))
      assert_clean(emu)
    end)

    it("reports it in --json with needed = false", function()
      assert_one_differs(emu, "identity-upsert-new-key", "^200: PUT /v1/identities/ created", "^does not depend on it: ")
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("against a server without the archive batch route (--compat no-archive-batch, Letta 0.16.3)", function()
    local emu
    emulator.suite(_ENV, function(e) emu = e end, { args = { "--password", PASSWORD, "--compat", "no-archive-batch" } })

    it("names exactly that behaviour, as one lettash does not depend on (exit 0)", function()
      assert_one_differs(emu, "passage-batch", "^405 Method Not Allowed: .* %(Letta before 0%.16%.4 has no batch route%)$",
                         "^does not depend on it: import then sends one passage per request")
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("against the emulator without a password", function()
    local emu
    emulator.suite(_ENV, function(e) emu = e end)

    it("finds auth fine when no password is set either", function()
      local r = run(emu.url, {}, { LETTA_PASSWORD = false })
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.matches("\nok auth\n", r.stdout)
      assert.equal(#CHECKS .. " checks: " .. #CHECKS .. " ok, 0 differ", last_line(r.stdout))
      assert_clean(emu)
    end)

    it("says so when a password is set but the server takes requests without one (exit 0)", function()
      local r = run(emu.url)
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.matches("\ndiffers auth: saw 200 without the password %(the server is not in secure mode%); "
                     .. "lettash does not depend on it: [^\n]+\n", r.stdout)
      assert.equal(#CHECKS .. " checks: " .. (#CHECKS - 1) .. " ok, 1 differ", last_line(r.stdout))
      assert.no.matches(PASSWORD, r.stdout .. r.stderr, 1, true)
      assert_clean(emu)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("when it cannot run", function()
    it("says the server cannot be reached (exit 2)", function()
      local emu = emulator.start()
      local url = emu.url
      emu:stop()
      local r = run(url)
      assert.equal(2, r.code)
      assert.equal("", r.stdout)
      assert.matches("^check%-server: cannot connect to " .. url:gsub("%p", "%%%0") .. " %([^\n]+%)\n$", r.stderr)
      local j = run(url, { "--json" })
      assert.equal(2, j.code)
      local doc = json.decode(j.stdout)
      assert.is_false(doc.ok)
      assert.matches("^cannot connect to ", doc.error)
    end)

    it("does not show a password written into the URL", function()
      local r = run("http://someone:url-secret-77@127.0.0.1:1")
      assert.equal(2, r.code)
      assert.matches("^check%-server: cannot connect to http://127%.0%.0%.1:1 ", r.stderr)
      assert.no.matches("url%-secret%-77", r.stdout .. r.stderr)
    end)

    it("refuses a bad command line with one line and exit status 2; --help exits 0", function()
      local r = run("http://127.0.0.1:1", { "--bogus" })
      assert.equal(2, r.code)
      assert.equal("check-server: unknown option '--bogus' (try --help)\n", r.stderr)
      assert.equal("", r.stdout)
      r = run("http://127.0.0.1:1", { "extra" })
      assert.equal(2, r.code)
      assert.matches("^check%-server: unexpected argument 'extra'", r.stderr)
      r = run("http://127.0.0.1:1", { "--model" })
      assert.equal(2, r.code)
      assert.equal("check-server: option '--model' needs a value (HANDLE)\n", r.stderr)
      r = run("http://127.0.0.1:1", { "--help" })
      assert.equal(0, r.code)
      assert.equal("", r.stderr)
      assert.matches("^usage: lettash %S*scripts/check%-server%.lua %[%-%-model HANDLE%] %[%-%-json%]\n", r.stdout)
      assert.matches("Exit status: 0 when", r.stdout)
      assert.falsy(support.read_file(dir .. "/store/data.mdb"), "--help must not create the store")
    end)
  end)

  describe("--model", function()
    local emu
    emulator.suite(_ENV, function(e) emu = e end, { args = { "--password", PASSWORD, "--models", "openai/gpt-4o,openai/gpt-4o-mini",
                                                             "--embedding-models", "openai/text-embedding-3-small" } })

    local function agent_bodies()
      local t = {}
      for _, q in ipairs(emu:requests()) do
        if q.method == "POST" and q.path == "/v1/agents/" then t[#t + 1] = q.body end
      end
      return t
    end

    it("makes the agent with that model (else LETTA_MODEL), and refuses one the server does not list (exit 2)", function()
      local r = run(emu.url, { "--model", "openai/gpt-4o-mini" }, { LETTA_MODEL = "openai/gpt-4o" })
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.equal("openai/gpt-4o-mini", agent_bodies()[1].model)
      emu:clear_requests()
      r = run(emu.url, {}, { LETTA_MODEL = "openai/gpt-4o-mini", LETTA_EMBEDDING = "openai/text-embedding-3-small" })
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.equal("openai/gpt-4o-mini", agent_bodies()[1].model)
      assert.equal("openai/text-embedding-3-small", agent_bodies()[1].embedding)
      emu:clear_requests()
      r = run(emu.url, {}, { LETTA_EMBEDDING = "nope/embed" })
      assert.equal(2, r.code)
      assert.matches("^check%-server: LETTA_EMBEDDING nope/embed is not among", r.stderr)
      emu:clear_requests()
      r = run(emu.url, { "--model", "nope/nothing" })
      assert.equal(2, r.code)
      assert.matches("^check%-server: %-%-model nope/nothing is not among the %d+ models the server lists", r.stderr)
      r = run(emu.url, {}, { LETTA_MODEL = "nope/nothing" })
      assert.equal(2, r.code)
      assert.matches("^check%-server: LETTA_MODEL nope/nothing is not among", r.stderr)
      assert.equal(0, #agent_bodies())
      assert_clean(emu)
    end)

    it("without a choice, makes the agent with the first model and embedding model the server lists", function()
      local r = run(emu.url)
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.equal("openai/gpt-4o", agent_bodies()[1].model)
      assert.equal("openai/text-embedding-3-small", agent_bodies()[1].embedding)
    end)
  end)
end)
