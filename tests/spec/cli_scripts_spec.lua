-- The workflow scripts (scripts/onboard.lua, chat.lua, offboard.lua, doctor.lua, users.lua,
-- config.lua), each run as a child `bin/lettash scripts/X.lua ...` against the emulator, with a
-- store of its own: what they print, their exit statuses, and what they leave on the server.
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local letta = require "letta"
local json = letta.json

local SCRIPTS = { "onboard", "chat", "offboard", "doctor", "users", "config" }

describe("workflow scripts", function()
  local emu, admin
  local sr, ctx = script_runner.suite(_ENV, function(e, c) emu, admin = e, c end)
  local run, ok, fails = sr.run, sr.ok, sr.fails

  local function json_out(script, args, opts)
    local out = ok(script, args, opts)
    return json.decode(out)
  end

  local function new_agent()
    return emulator.new_agent(admin, { name = "bot", memory_blocks = { { label = "human", value = "?" },
                                                                { label = "persona", value = "helpful" } } })
  end

  local function agent_labels(agent_id)
    for _, a in ipairs(emu:state().agents) do
      if a.id == agent_id then return table.concat(a.block_labels, ",") end
    end
  end

  local function count(list, field, value)
    local n = 0
    for _, x in ipairs(list) do if x[field] == value then n = n + 1 end end
    return n
  end

  -- -------------------------------------------------------------------------------------------
  describe("command line", function()
    it("prints usage and options with --help and exits 0, for every script", function()
      local expect = { onboard = { "%-%-name NAME", "%-%-preferences JSON" }, chat = { "%-%-stream", "%-%-agent ID", "default_agent" },
                       offboard = { "<username>" }, doctor = { "%-%-fix", "bin/lettash scripts/check%-server%.lua" },
                       users = { "local store" },
                       config = { "set KEY VALUE", "base_url", "default_agent" } }
      for _, s in ipairs(SCRIPTS) do
        local out, r = ok(s, { "--help" })
        assert.equal("", r.stderr)
        assert.matches("^usage: lettash %S*scripts/" .. s .. "%.lua ", out)
        assert.matches("%-%-json", out)
        assert.matches("%-%-help", out)
        for _, want in ipairs(expect[s]) do assert.matches(want, out) end
      end
      assert.falsy(support.read_file(ctx.store .. "/data.mdb"), "--help must not create the store")
    end)

    it("refuses an unknown option with one line and a non-zero exit, for every script", function()
      for _, s in ipairs(SCRIPTS) do
        local msg, r = fails(s, { "--bogus" })
        assert.equal("unknown option '--bogus' (try --help)", msg)
        assert.equal("", r.stdout)
      end
      assert.equal("option '--name' needs a value (NAME)", fails("onboard", { "alice", "--name" }))
      assert.matches("^missing arguments", fails("onboard", {}))
      assert.matches("^unexpected argument 'x'", fails("users", { "x" }))
      assert.equal(0, #emu:requests())
    end)

    it("runs from any directory", function()
      local out = ok("onboard", { "alice" }, { cwd = "/" })
      assert.matches("alice: created identity identity%-", out)
    end)

    it("turns a server error into one line, without the password", function()
      emu:config{ password = "s3cret-pw" }
      finally(function() emu:config{ password = json.null } end)
      local msg = fails("onboard", { "alice" }, { env = { LETTA_PASSWORD = "wrong-pw-123" } })
      assert.matches("^401 Unauthorized", msg)
      local r = run("doctor", {}, { env = { LETTA_PASSWORD = "wrong-pw-123" } })
      assert.equal(2, r.code)
      assert.matches("\nFAIL credentials: 401 Unauthorized", r.stdout)
      assert.no.matches("wrong%-pw%-123", r.stdout .. r.stderr)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("onboard.lua", function()
    it("creates the identity and the persona block, one line per action", function()
      local out = ok("onboard", { "alice", "--name", "Alice", "--preferences", '{"tea": true}' })
      local identity = out:match("alice: created identity (identity%-[%x%-]+)\n")
      local block = out:match("alice: created block (block%-[%x%-]+)\n")
      assert.truthy(identity and block, out)
      assert.matches("alice: linked block " .. block:gsub("%-", "%%-") .. " to identity " .. identity:gsub("%-", "%%-"), out)
      local s = emu:state()
      assert.equal(1, #s.identities)
      assert.equal(1, count(s.blocks, "label", "Persona_alice"))
      local value = json.decode(s.blocks[1].value)
      assert.equal("Alice", value.name)
      assert.is_true(value.preferences.tea)
    end)

    it("says nothing changed on a second run, in text and in JSON", function()
      ok("onboard", { "alice" })
      assert.equal("alice: already onboarded, nothing changed\n", ok("onboard", { "alice" }))
      local r = json_out("onboard", { "alice", "--json" })
      assert.is_false(r.changed)
      assert.is_true(json.is_array(r.actions))
      assert.equal(0, #r.actions)
      assert.equal("Persona_alice", r.block_label)
      assert.matches(emulator.id_pattern("identity"), r.identity_id)
      assert.matches(emulator.id_pattern("block"), r.block_id)
      local s = emu:state()
      assert.equal(1, #s.identities)
      assert.equal(1, count(s.blocks, "label", "Persona_alice"))
    end)

    it("prints the result as JSON with --json", function()
      local r = json_out("onboard", { "bob", "--json" })
      assert.is_true(r.changed)
      assert.equal("bob", r.username)
      assert.equal(3, #r.actions)
      assert.equal("created identity " .. r.identity_id, r.actions[1])
    end)

    it("refuses invalid --preferences JSON before touching the server", function()
      assert.matches("^%-%-preferences is not valid JSON", fails("onboard", { "alice", "--preferences", "{tea" }))
      assert.equal(0, #emu:requests())
    end)

    it("refuses invalid usernames with one clear line and creates nothing", function()
      for _, name in ipairs({ "", string.rep("a", 200), "a/b", "a b", "é" }) do
        for _, s in ipairs({ "onboard", "offboard" }) do
          assert.matches("^invalid username", fails(s, { name }))
        end
        assert.matches("^invalid username", fails("chat", { name, "agent-00000000-0000-4000-8000-000000000000", "hi" }))
      end
      local s = emu:state()
      assert.equal(0, #s.identities)
      assert.equal(0, #s.blocks)
      assert.equal(0, #emu:requests())
      assert.equal("[]\n", ok("users", { "--json" }))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("chat.lua", function()
    local agent, identity
    before_each(function()
      agent = new_agent()
      identity = json_out("onboard", { "alice", "--json" }).identity_id
    end)

    it("prints the reply, which saw the persona and the identity, and detaches afterwards", function()
      local out = ok("chat", { "alice", agent.id, "hello", "there" })
      assert.equal("[blocks: human,persona,Persona_alice] [sender: " .. identity .. "] you said: hello there\n", out)
      assert.equal("human,persona", agent_labels(agent.id))
    end)

    it("streams the reply with --stream", function()
      emu:clear_requests()
      local out = ok("chat", { "alice", agent.id, "hi", "--stream" })
      assert.equal("[blocks: human,persona,Persona_alice] [sender: " .. identity .. "] you said: hi\n", out)
      assert.equal(1, emu:count("POST", "/v1/agents/" .. agent.id .. "/messages/stream"))
      assert.equal("human,persona", agent_labels(agent.id))
    end)

    it("prints the result as JSON with --json, also when streamed", function()
      for _, extra in ipairs({ {}, { "--stream" } }) do
        local args = { "alice", agent.id, "hi", "--json" }
        for _, a in ipairs(extra) do args[#args + 1] = a end
        local r = json_out("chat", args)
        assert.matches("Persona_alice%] %[sender: " .. identity:gsub("%-", "%%-"), r.reply)
        assert.is_true(json.is_array(r.actions))
        assert.equal("end_turn", r.stop_reason.stop_reason)
      end
    end)

    it("talks to the default_agent setting when no agent id is given", function()
      assert.matches("default_agent", fails("chat", { "alice", "hi" }))
      ok("config", { "set", "default_agent", agent.id })
      assert.matches("you said: hi there\n$", ok("chat", { "alice", "hi", "there" }))
      -- an agent id given, or --agent, wins; the text may then start with anything
      local other = new_agent()
      assert.matches("you said: agent%-x\n$", ok("chat", { "alice", "--agent", other.id, "agent-x" }))
      assert.equal(1, emu:count("POST", "/v1/agents/" .. other.id .. "/messages"))
    end)

    it("fails with one line when the agent does not exist or the user is not onboarded", function()
      local missing = emulator.missing_id("agent")
      assert.matches("^no agent " .. missing:gsub("%-", "%%-") .. " on http", fails("chat", { "alice", missing, "hi" }))
      assert.matches("not onboarded", fails("chat", { "nobody", agent.id, "hi" }))
    end)

    it("reports a stream that ends in an error with one line, and detaches", function()
      emu:faults("kind=stream-error,times=1,route=POST /v1/agents/*/messages/**")
      local msg, r = fails("chat", { "alice", agent.id, "hi", "--stream" })
      assert.matches("^stream_error: ", msg)
      assert.equal("", r.stdout)
      assert.equal("human,persona", agent_labels(agent.id))
    end)

    it("still detaches when the send fails with a 500", function()
      emu:faults("kind=500,times=1,route=POST /v1/agents/*/messages")
      assert.matches("^500", fails("chat", { "alice", agent.id, "hi" }))
      assert.equal("human,persona", agent_labels(agent.id))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("offboard.lua and users.lua", function()
    it("lists the local records, in text and JSON", function()
      assert.matches("^no users in ", ok("users"))
      assert.equal("[]\n", ok("users", { "--json" }))
      ok("onboard", { "bob", "--name", "Bob" })
      ok("onboard", { "alice" })
      local list = json_out("users", { "--json" })
      assert.equal(2, #list)
      assert.equal("alice", list[1].username)
      assert.equal("Bob", list[2].name)
      assert.matches(emulator.id_pattern("block"), list[2].block_id)
      local out = ok("users")
      assert.matches("^username\tname\tidentity\tblock\tstatus\nalice\talice\tidentity%-[%x%-]+\tblock%-[%x%-]+\tonboarded\nbob\tBob\t", out)
    end)

    it("deletes the block and the identity and removes the record", function()
      ok("onboard", { "alice" })
      ok("onboard", { "bob" })
      local out = ok("offboard", { "alice" })
      assert.matches("^alice: deleted block block%-[%x%-]+\nalice: deleted identity identity%-[%x%-]+\nalice: removed local record\n$", out)
      local s = emu:state()
      assert.equal(1, #s.identities)
      assert.equal("bob", s.identities[1].identifier_key)
      assert.equal(0, count(s.blocks, "label", "Persona_alice"))
      local list = json_out("users", { "--json" })
      assert.equal(1, #list)
      assert.equal("bob", list[1].username)
      local r = json_out("offboard", { "bob", "--json" })
      assert.equal("bob", r.username)
      assert.equal("removed local record", r.actions[#r.actions])
      assert.equal("bob: not onboarded here (no local record), nothing to do\n", ok("offboard", { "bob" }))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("config.lua", function()
    it("sets, gets, lists and unsets settings", function()
      assert.matches("^no settings in ", ok("config"))
      assert.equal("{}\n", ok("config", { "list", "--json" }))
      assert.equal("timeout = 30\n", ok("config", { "set", "timeout", "30" }))
      assert.equal("base_url = " .. emu.url .. "\n", ok("config", { "set", "base_url", emu.url .. "/" }))
      assert.equal("30\n", ok("config", { "get", "timeout" }))
      assert.same({ key = "timeout", value = 30 }, json_out("config", { "get", "timeout", "--json" }))
      local all = json_out("config", { "list", "--json" })
      assert.same({ base_url = emu.url, timeout = 30 }, all)
      assert.equal("base_url = " .. emu.url .. "  (LETTA_BASE_URL wins)\ntimeout = 30\n", ok("config", { "list" }))
      assert.equal("unset timeout\n", ok("config", { "unset", "timeout" }))
      assert.equal("timeout was not set, nothing changed\n", ok("config", { "unset", "timeout" }))
      assert.equal("'timeout' is not set", fails("config", { "get", "timeout" }))
    end)

    it("refuses secrets, unknown keys and bad values with one line", function()
      local msg = fails("config", { "set", "password", "hunter2" })
      assert.matches("secret", msg)
      assert.matches("LETTA_PASSWORD", msg)
      assert.no.matches("hunter2", msg)
      assert.matches("secret", fails("config", { "set", "api_key", "k" }))
      assert.matches("secret", fails("config", { "get", "token" }))
      assert.matches("^unknown setting 'defualt_agent'", fails("config", { "set", "defualt_agent", "agent-1" }))
      assert.matches("^base_url must be an http", fails("config", { "set", "base_url", "ftp://x" }))
      assert.matches("^timeout must be a number", fails("config", { "set", "timeout", "soon" }))
      assert.matches("^default_agent must be an agent id", fails("config", { "set", "default_agent", "bot" }))
      assert.matches("^unknown command 'frob'", fails("config", { "frob" }))
      assert.matches("^set needs KEY VALUE", fails("config", { "set", "timeout" }))
      assert.equal("{}\n", ok("config", { "list", "--json" }))
    end)

    it("the base_url setting is used when LETTA_BASE_URL is unset", function()
      ok("config", { "set", "base_url", emu.url })
      ok("onboard", { "alice" }, { env = { LETTA_BASE_URL = false } })
      assert.equal(1, #emu:state().identities)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("doctor.lua", function()
    it("reports a healthy setup and exits 0", function()
      ok("onboard", { "alice" })
      local out = ok("doctor")
      assert.matches("^ok   server: " .. emu.url:gsub("%p", "%%%0") .. " %(Letta [%d.]+; check its behaviour with "
                     .. "bin/lettash scripts/check%-server%.lua%)\n", out)
      assert.matches("\nok   credentials", out)
      assert.matches("\ndoctor: healthy %(1 user: 1 identity and 1 block checked by id; 0 attachments, 0 leases, "
                     .. "0 interrupted imports%)\n$", out)
      local r = json_out("doctor", { "--json" })
      assert.is_true(r.ok)
      assert.is_true(json.is_array(r.checks) and #r.checks >= 3)
      assert.is_true(json.is_array(r.problems) and #r.problems == 0)
    end)

    it("exits non-zero while problems remain, and --fix heals a block deleted behind its back", function()
      local before = json_out("onboard", { "alice", "--json" })
      ok("onboard", { "bob" })
      assert.equal(200, (emu:raw("DELETE", "/v1/blocks/" .. before.block_id)))
      local r = run("doctor")
      assert.equal(2, r.code)
      assert.matches("BAD  alice: persona block " .. before.block_id:gsub("%-", "%%-") .. " is gone", r.stdout)
      assert.matches("\ndoctor: 1 problem remains %(run with %-%-fix to heal%)\n$", r.stdout)
      local report = json.decode(run("doctor", { "--json" }).stdout)
      assert.is_false(report.ok)
      assert.equal("block_missing", report.problems[1].kind)

      local out = ok("doctor", { "--fix" })
      assert.matches("FIX  alice: persona block .* %(fixed%)\n", out)
      assert.matches("\ndoctor: healthy %(1 fixed; 2 users: 2 identities and 2 blocks checked by id;", out)
      local after = json_out("users", { "--json" })[1]
      assert.not_equal(before.block_id, after.block_id)
      local s = emu:state()
      assert.equal(1, count(s.blocks, "label", "Persona_alice"))
      assert.equal(1, count(s.blocks, "id", after.block_id))
      assert.matches("\ndoctor: healthy %(2 users: ", ok("doctor"))
    end)

    it("fails its server check when the server is unreachable", function()
      ok("config", { "set", "max_retries", "0" })
      local r = run("doctor", {}, { env = { LETTA_BASE_URL = "http://127.0.0.1:9" } })
      assert.equal(2, r.code)
      assert.matches("^FAIL server: ", r.stdout)
    end)
  end)
end)
