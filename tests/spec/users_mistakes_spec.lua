-- Ordinary mistakes people make with the user workflows (issue 13): a mistyped agent id, wrong
-- settings while onboarding, a forgotten text, an offboard run twice, a persona block deleted on
-- the server, two stores chatting on one agent; and what users.lua, doctor and the demo say and
-- leave behind. Each case runs the scripts (or the library) against the emulator and checks the
-- server and the store afterwards.
local support = require "support"
local emulator = require "emulator"
local procs = require "users_procs"
local script_runner = require "script_runner"
local letta = require "letta"
local users_mod = require "letta.users"
local store_mod = require "letta.store"
local store_records = require "letta.users.records"
local checks = require "users_checks"
local json = letta.json

describe("user mistakes", function()
  local emu, admin
  -- the test's children killed before its directory goes (script_runner.suite's after_each, run after this one)
  after_each(function() procs.kill_all() end)
  local sr, ctx = script_runner.suite(_ENV, function(e, c) emu, admin = e, c end)
  local run, ok, fails = sr.run, sr.ok, sr.fails

  local function new_agent()
    return emulator.new_agent(admin, { name = "bot", memory_blocks = { { label = "human", value = "?" } } })
  end

  local function with_store(path, fn)
    local s = store_mod.open(path or ctx.store)
    local res = table.pack(pcall(fn, s))
    s:close()
    assert(res[1], res[2])
    return table.unpack(res, 2, res.n)
  end

  local function records(ns) return with_store(nil, function(s) return s:count(ns) end) end

  -- -------------------------------------------------------------------------------------------
  describe("a mistyped agent id (item 3)", function()
    local agent
    before_each(function()
      agent = new_agent()
      ok("onboard", { "alice" })
      emu:clear_requests()
    end)

    it("a malformed id is refused before any request, naming the form agent-<uuid>; nothing is recorded", function()
      for _, args in ipairs({ { "alice", "--agent", "agent-1234", "hi" }, { "alice", "agent-1234", "hi" } }) do
        local msg = fails("chat", args)
        assert.matches("'agent%-1234' is not an agent id: expected the form agent%-<uuid>", msg)
      end
      assert.equal(0, #emu:requests())
      assert.equal(0, records("attachments"))
      -- the library refuses it too
      with_store(nil, function(s)
        local u = users_mod.new{ client = admin, store = s }
        local err = emulator.fails(u.chat, u, "alice", "agent-1234", "hi")
        assert.matches("invalid agent id 'agent%-1234': expected the form agent%-<uuid>", err)
      end)
      assert.equal(0, #emu:requests())
      ok("offboard", { "alice" })
    end)

    it("an agent that does not exist (404) leaves no attachment recorded; offboard and doctor stay healthy", function()
      local missing = emulator.missing_id("agent")
      assert.matches("^no agent " .. missing:gsub("%-", "%%-") .. " on http", fails("chat", { "alice", "--agent", missing, "hi" }))
      assert.equal(0, records("attachments"))
      assert.equal(0, emu:count("PATCH", "/v1/agents/.*/core%-memory/blocks/attach/.*"))
      assert.matches("\ndoctor: healthy ", ok("doctor"))
      ok("offboard", { "alice" })
    end)

    it("an attach the server refuses (4xx) is not recorded, and no detach is sent for it", function()
      ok("config", { "set", "max_retries", "0" })
      emu:faults("kind=429,times=1,route=PATCH /v1/agents/*/core-memory/blocks/attach/*")
      local r = run("chat", { "alice", agent.id, "hi" })
      assert.equal(1, r.code)
      assert.matches("^chat: 429", r.stderr)
      assert.equal(0, records("attachments"))
      assert.equal(0, emu:count("PATCH", "/v1/agents/.*/core%-memory/blocks/detach/.*"))
    end)

    it("cleans up the records an older lettash left for a malformed or missing agent: offboard and doctor --fix succeed", function()
      local rec = with_store(nil, function(s) return s:user("alice") end)
      local dead = tonumber(support.sh("sh -c 'echo $$'").stdout) -- a process that has ended
      with_store(nil, function(s)
        s:update(function(txn)
          store_records.put_attachment(txn, "agent-1234", rec.block_id, "alice", dead)
          store_records.put_attachment(txn, emulator.missing_id("agent"), rec.block_id, "alice", dead)
        end)
      end)
      local r = run("doctor")
      assert.equal(2, r.code)
      assert.matches("agent%-1234 %(chat process", r.stdout)
      assert.matches("\ndoctor: healthy %(2 fixed; ", ok("doctor", { "--fix" }))
      assert.equal(0, records("attachments"))
      -- and offboard, the same records left again
      with_store(nil, function(s)
        s:update(function(txn)
          store_records.put_attachment(txn, "agent-1234", rec.block_id, "alice", dead)
        end)
      end)
      local out = ok("offboard", { "alice" })
      assert.matches("alice: detached " .. rec.block_id:gsub("%-", "%%-") .. " from agent%-1234\n", out)
      assert.equal(0, #checks.blocks_labelled(emu:state(), "Persona_alice"))
      assert.equal(0, records("attachments"))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("onboarding under wrong settings (item 4)", function()
    local function assert_nothing_left()
      assert.matches("^no users in ", ok("users"))
      local out = ok("doctor", { "--fix" })
      assert.matches("\ndoctor: healthy %(0 users:", out)
      local state = emu:state()
      assert.equal(0, #state.identities)
      assert.equal(0, #state.blocks)
    end

    it("a wrong password (401): the new record is rolled back", function()
      emu:config{ password = "s3cret-pw" }
      finally(function() emu:config{ password = json.null } end)
      assert.matches("^401 Unauthorized", fails("onboard", { "jose" }, { env = { LETTA_PASSWORD = "wrong-pw-123" } }))
      emu:config{ password = json.null }
      assert_nothing_left()
    end)

    it("no server on that port (connection refused), or a host name that does not resolve: rolled back", function()
      ok("config", { "set", "max_retries", "0" })
      assert.matches("^connect: ", fails("onboard", { "jose" }, { env = { LETTA_BASE_URL = "http://127.0.0.1:9" } }))
      assert.matches("^resolve: ", fails("onboard", { "jose" }, { env = { LETTA_BASE_URL = "http://lettash-no-such-host.invalid:8283" } }))
      assert_nothing_left()
    end)

    it("an onboarded user stays recorded when a rerun meets a wrong password", function()
      ok("onboard", { "jose" })
      emu:config{ password = "s3cret-pw" }
      finally(function() emu:config{ password = json.null } end)
      fails("onboard", { "jose", "--name", "José" }, { env = { LETTA_PASSWORD = "wrong-pw-123" } })
      emu:config{ password = json.null }
      assert.equal(1, #json.decode(ok("users", { "--json" })))
      assert.matches("\ndoctor: healthy ", ok("doctor"))
    end)

    it("an onboarding whose outcome is unknown (a 503 after the identity landed) stays, and is shown as pending", function()
      emu:faults("kind=503,times=5,route=POST /v1/blocks/")
      fails("onboard", { "jose" })
      local list = json.decode(ok("users", { "--json" }))
      assert.equal(1, #list)
      assert.equal("pending", list[1].status)
    end)

    it("a chat refused with 401 leaves no leftover attachment", function()
      local agent = new_agent()
      ok("onboard", { "alice" })
      emu:config{ password = "s3cret-pw" }
      finally(function() emu:config{ password = json.null } end)
      assert.matches("^401 Unauthorized", fails("chat", { "alice", agent.id, "hi" }, { env = { LETTA_PASSWORD = "wrong-pw-123" } }))
      assert.equal(0, records("attachments"))
      emu:config{ password = json.null }
      assert.matches("\ndoctor: healthy ", ok("doctor"))
    end)

    describe("behind TLS with a certificate the client does not trust", function()
      local tls, cert
      lazy_setup(function()
        local cdir = support.tmpdir()
        local key
        cert, key = support.self_signed_cert(cdir)
        tls = emulator.start{ "--tls-cert", cert, "--tls-key", key }
        tls.certdir = cdir
      end)
      lazy_teardown(function()
        if tls then
          support.rmdir(tls.certdir)
          tls:stop()
        end
      end)

      it("onboard fails with the TLS error and leaves no record; a chat leaves no attachment", function()
        assert.matches("^tls: ", fails("onboard", { "jose" }, { env = { LETTA_BASE_URL = tls.url } }))
        assert.matches("^no users in ", ok("users"))
        -- a user onboarded on a server reached, then a chat through the untrusted one
        ok("onboard", { "alice" })
        local agent = new_agent()
        assert.matches("^tls: ", fails("chat", { "alice", agent.id, "hi" }, { env = { LETTA_BASE_URL = tls.url } }))
        assert.equal(0, records("attachments"))
      end)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("chat.lua's arguments (item 5)", function()
    local agent
    before_each(function()
      agent = new_agent()
      ok("onboard", { "alice" })
      ok("config", { "set", "default_agent", agent.id })
      emu:clear_requests()
    end)

    it("an agent id with the text forgotten is an error, not a message", function()
      assert.equal("nothing to send: give the text after the agent id", fails("chat", { "alice", agent.id }))
      assert.equal(0, #emu:requests())
    end)

    it("a truncated agent id is refused, naming the form, and nothing is sent", function()
      local msg = fails("chat", { "alice", agent.id:sub(1, 20), "hello" })
      assert.matches("is not an agent id: expected the form agent%-<uuid>", msg)
      assert.equal(0, #emu:requests())
      assert.equal(0, records("attachments"))
    end)

    it("still sends to the default agent when no agent id is given, and takes an agent-… text with --agent", function()
      assert.matches("you said: hi there\n$", ok("chat", { "alice", "hi", "there" }))
      assert.matches("you said: agent%-x\n$", ok("chat", { "alice", "--agent", agent.id, "agent-x" }))
      assert.matches("agent%-<uuid>", ok("chat", { "--help" }))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("offboard run twice (item 6)", function()
    it("exits 0 saying there is nothing to do, changed = false in JSON, without a request", function()
      ok("onboard", { "alice" })
      ok("offboard", { "alice" })
      emu:clear_requests()
      assert.equal("alice: not onboarded here (no local record), nothing to do\n", ok("offboard", { "alice" }))
      local r = json.decode(ok("offboard", { "nobody", "--json" }))
      assert.is_false(r.changed)
      assert.same({}, r.actions)
      assert.equal(0, #emu:requests())
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("a persona block deleted on the server (item 11)", function()
    it("the chat says in one line to run onboard or doctor --fix, and onboard makes it work again", function()
      local agent = new_agent()
      local rec = json.decode(ok("onboard", { "alice", "--json" }))
      assert.equal(200, (emu:raw("DELETE", "/v1/blocks/" .. rec.block_id)))
      local msg = fails("chat", { "alice", agent.id, "hi" })
      assert.equal("the persona block " .. rec.block_id .. " of user 'alice' is gone from the server: run "
                   .. "bin/lettash scripts/onboard.lua alice (or bin/lettash scripts/doctor.lua --fix)", msg)
      assert.equal(0, records("attachments"))
      ok("onboard", { "alice" })
      assert.matches("Persona_alice%] ", ok("chat", { "alice", agent.id, "hi" }))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("two stores chatting on one agent (item 9)", function()
    local agent, a_path, b_path, alice, bob
    before_each(function()
      agent = new_agent()
      a_path, b_path = ctx.dir .. "/store-a", ctx.dir .. "/store-b"
      alice = json.decode(ok("onboard", { "alice", "--json" }, { env = { LETTA_STORE = a_path } }))
      bob = json.decode(ok("onboard", { "bob", "--json" }, { env = { LETTA_STORE = b_path } }))
      emu:clear_requests()
    end)

    -- Every message was sent with exactly one persona attached (the log is in answer order).
    local function one_persona_per_send()
      local attached, sends = {}, 0
      for _, req in ipairs(emu:requests()) do
        local id = req.path:match("/core%-memory/blocks/attach/(.+)$")
        if id and req.status == 200 then attached[id] = true end
        id = req.path:match("/core%-memory/blocks/detach/(.+)$")
        if id and req.status == 200 then attached[id] = nil end
        if req.method == "POST" and req.path:match("/messages$") then
          local n = 0
          for _ in pairs(attached) do n = n + 1 end
          assert.equal(1, n, "a message was sent with " .. n .. " personas attached")
          sends = sends + 1
        end
      end
      return sends
    end

    it("B waits while A's persona is attached, never sending meanwhile; with a short bound it names A's user", function()
      emu:faults("kind=slow,ms=3000,times=1,route=POST /v1/agents/*/messages")
      local pa = procs.start(emu.url, a_path, "chat", "alice", agent.id, "from alice")
      procs.wait_until(function() return #checks.personas_attached(emu:state(), agent.id) == 1 end, 5, "alice's persona")
      local sb = store_mod.open(b_path)
      local ub = users_mod.new{ client = admin, store = sb }
      local err = emulator.fails(ub.chat, ub, "bob", agent.id, "from bob", { foreign_timeout = 0.5 })
      assert.matches("^letta%.users: agent " .. agent.id:gsub("%-", "%%-") .. " is in use by user 'alice' %(Persona_alice attached%) "
                     .. "from another lettash store %(another host or Unix account%); waited 0%.5 s", err)
      local msg = fails("chat", { "bob", agent.id, "hi", "--wait", "0.2" }, { env = { LETTA_STORE = b_path } })
      assert.matches("in use by user 'alice'", msg)
      for _, req in ipairs(emu:requests()) do -- B touched nothing on the agent
        assert.is_nil(req.path:find(bob.block_id, 1, true), req.method .. " " .. req.path)
      end
      assert.same({ "Persona_alice" }, checks.personas_attached(emu:state(), agent.id))
      -- waiting long enough, B goes once A is done
      local r = ub:chat("bob", agent.id, "from bob", { foreign_timeout = 10 })
      sb:close()
      assert.equal("[blocks: human,Persona_bob] [sender: " .. bob.identity_id .. "] you said: from bob", r.reply)
      local code, _, e = pa:wait()
      assert.equal(0, code, e)
      assert.equal("[blocks: human,Persona_alice] [sender: " .. alice.identity_id .. "] you said: from alice",
                   pa:results()[1].reply)
      assert.equal(2, one_persona_per_send())
      assert.same({}, checks.personas_attached(emu:state(), agent.id))
    end)

    it("a persona that another store attached while ours was being attached makes ours step back and wait", function()
      emu:faults("kind=slow,ms=600,times=1,route=PATCH /v1/agents/*/core-memory/blocks/attach/" .. bob.block_id)
      local sb = store_mod.open(b_path)
      local ub = users_mod.new{ client = admin, store = sb }
      local results = letta.gather{
        function() return ub:chat("bob", agent.id, "from bob", { foreign_timeout = 10 }) end,
        function()
          letta.sleep(0.2) -- bob's look is done, his attach in flight: "store A" attaches alice now
          emu.admin.agents.blocks:attach(agent.id, alice.block_id)
          letta.sleep(1.0)
          pcall(emu.admin.agents.blocks.detach, emu.admin.agents.blocks, agent.id, alice.block_id)
        end,
      }
      sb:close()
      assert.equal("[blocks: human,Persona_bob] [sender: " .. bob.identity_id .. "] you said: from bob", results[1].reply)
      assert.equal(2, emu:count("PATCH", "/v1/agents/.*/core%-memory/blocks/attach/" .. bob.block_id:gsub("%-", "%%-")))
      -- alice's persona was left alone (only its own detach, by "store A")
      assert.equal(1, emu:count("PATCH", "/v1/agents/.*/core%-memory/blocks/detach/" .. alice.block_id:gsub("%-", "%%-")))
      assert.equal(1, one_persona_per_send())
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("what users.lua and doctor say (item 13)", function()
    it("users.lua prints a header and marks a half-onboarded user, in text and JSON", function()
      ok("onboard", { "alice" })
      emu:faults("kind=503,times=5,route=POST /v1/blocks/")
      fails("onboard", { "bob" })
      local out, r = ok("users")
      assert.matches("^username\tname\tidentity\tblock\tstatus\n", out)
      assert.matches("\nalice\talice\tidentity%-[%x%-]+\tblock%-[%x%-]+\tonboarded\n", out)
      assert.matches("\nbob\tbob\tidentity%-[%x%-]+\t%-\tpending\n", out)
      assert.matches("users: bob is pending: finish it with bin/lettash scripts/onboard.lua bob", r.stderr)
      local list = json.decode(ok("users", { "--json" }))
      assert.equal("onboarded", list[1].status)
      assert.equal("pending", list[2].status)
    end)

    it("doctor says how much it checked when healthy", function()
      ok("onboard", { "alice" })
      ok("onboard", { "bob" })
      local out = ok("doctor")
      assert.matches("\ndoctor: healthy %(2 users: 2 identities and 2 blocks checked by id; 0 attachments, "
                     .. "0 leases, 0 interrupted imports%)\n$", out)
      local r = json.decode(ok("doctor", { "--json" }))
      assert.same({ users = 2, identities = 2, blocks = 2, attachments = 0, leases = 0, imports = 0 }, r.counts)
    end)

    it("doctor does not suggest --fix when the server or the credentials fail: it says what to check", function()
      emu:config{ password = "s3cret-pw" }
      finally(function() emu:config{ password = json.null } end)
      local r = run("doctor", {}, { env = { LETTA_PASSWORD = "wrong-pw-123" } })
      assert.equal(2, r.code)
      assert.matches("\ndoctor: 1 problem remains %(check LETTA_PASSWORD %(or LETTA_API_KEY%): the server refused it; "
                     .. "%-%-fix cannot help with that%)\n$", r.stdout)
      r = run("doctor")
      assert.matches("%(set LETTA_PASSWORD %(or LETTA_API_KEY%): the server wants one; %-%-fix cannot help", r.stdout)
      ok("config", { "set", "max_retries", "0" })
      r = run("doctor", { "--fix" }, { env = { LETTA_BASE_URL = "http://127.0.0.1:9" } })
      assert.equal(2, r.code)
      assert.matches("%(is the Letta server running at http://127%.0%.0%.1:9%? check LETTA_BASE_URL", r.stdout)
      assert.no.matches("run with %-%-fix", r.stdout)
    end)

    it("doctor reports an interrupted import with the command that resumes it", function()
      local agent = new_agent()
      local file = support.write_file(ctx.dir .. "/notes.jsonl", (function()
        local t = {}
        for i = 1, 40 do t[#t + 1] = json.encode({ text = "note number " .. i }) end
        return table.concat(t, "\n") .. "\n"
      end)())
      emu:config{ latency_ms = 300 }
      finally(function() emu:config{ latency_ms = 0 } end)
      -- killed (SIGKILL) in the middle of the import
      local argv = { support.quote(support.bin), support.quote(support.root .. "/scripts/import.lua"), agent.id,
                     support.quote(file), "--batch", "5", "--concurrency", "1" } -- 8 batches: about 3 s
      -- (the shell reaps it: a zombie would still count as a running import)
      support.sh(table.concat(argv, " ") .. " & p=$!; sleep 2; kill -9 $p; wait $p", { env = sr.env() })
      emu:config{ latency_ms = 0 }
      local r = run("doctor", { "--fix" })
      assert.equal(2, r.code, r.stderr)
      local command = r.stdout:match("BAD  import of [^\n]* was interrupted %(%d+ pending%): resume it with ([^\n]+)\n")
      assert.truthy(command, r.stdout)
      assert.matches("^bin/lettash scripts/import%.lua " .. agent.id:gsub("%-", "%%-"), command)
      assert.matches("\ndoctor: 1 problem remains %(resume the imports with the commands above%)\n$", r.stdout)
      local rr = support.sh(command, { env = sr.env(), cwd = support.root })
      assert.equal(0, rr.code, rr.stderr)
      assert.matches("0 interrupted imports%)\n$", ok("doctor"))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("the demo against a real server (item 14)", function()
    it("removes everything it created there, blocks and passages included", function()
      local keep = new_agent() -- what was there before stays
      local before = emu:state()
      local out = ok("demo", {}, { env = { LETTASH_DEMO_EMULATOR = false }, cwd = support.root })
      assert.matches("\ncleaned up: 2 users offboarded, 8 passages, %d+ archives, the agent and its 2 blocks deleted\n", out)
      local after = emu:state()
      for _, k in ipairs({ "identities", "blocks", "agents", "runs" }) do
        assert.same(before[k], after[k], k)
      end
      assert.same(before.passages, after.passages)
      assert.same(before.messages, after.messages)
      -- (a deleted agent's passages would not show in the state: each sent was deleted)
      local sent = tonumber(out:match("\nimport: (%d+) passages sent"))
      assert.equal(8, sent)
      assert.equal(sent, emu:count("DELETE", "/v1/agents/[^/]+/archival%-memory/.*"))
      assert.truthy(checks.agent_in(after, keep.id))
      assert.falsy(support.read_file(ctx.store), "the demo uses a store of its own")
    end)
  end)
end)
