-- The user workflows (letta.users) against the emulator: onboard, chat, offboard, doctor. Every
-- outcome is checked on the server through /_emulator/state and in the store.
-- (The kill -9 cases are in users_crash_spec.lua.)
local support = require "support"
local emulator = require "emulator"
local procs = require "users_procs"
local letta = require "letta"
local users_mod = require "letta.users"
local store_mod = require "letta.store"
local records = require "letta.users.records"
local errors = require "letta.errors"
local json = letta.json

local checks = require "users_checks"
local identities_of, blocks_labelled, agent_in, personas_attached, count_ns, writes, has_action, assert_onboarded =
  checks.identities_of, checks.blocks_labelled, checks.agent_in, checks.personas_attached, checks.count_ns,
  checks.writes, checks.has_action, checks.assert_onboarded

-- ---------------------------------------------------------------------------------------------

describe("letta.users", function()
  local emu, client, client0, dir, store, users, users0
  lazy_setup(function()
    emu = emulator.start()
    client = emu:client()
    client0 = emu:client{ max_retries = 0 } -- for the faults that would otherwise be retried
  end)
  lazy_teardown(function()
    if client0 then client0:close() end
    if client then client:close() end
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset()
    emu:config{ latency_ms = 0, flaky_block_list = 0 }
    dir = support.tmpdir()
    store = store_mod.open(dir .. "/store")
    users = users_mod.new{ client = client, store = store }
    users0 = users_mod.new{ client = client0, store = store }
  end)
  after_each(function()
    procs.kill_all()
    store:close()
    support.rmdir(dir)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("onboard", function()
    it("creates one identity and one linked Persona block, records both ids and the reverse lookups", function()
      local r = users:onboard("alice", { name = "Alice", preferences = { tea = "green" } })
      assert.is_true(r.changed)
      assert.truthy(has_action(r, "^created identity identity%-"))
      assert.truthy(has_action(r, "^created block block%-"))
      assert.truthy(has_action(r, "^linked block"))
      local rec, identity, block = assert_onboarded(emu, store, "alice")
      assert.equal(r.identity_id, identity.id)
      assert.equal(r.block_id, block.id)
      assert.equal("Alice", identity.name)
      assert.equal("Alice", rec.name)
      local value = json.decode(block.value)
      assert.equal("Alice", value.name)
      assert.same({ tea = "green" }, value.preferences)
      assert.same({}, value.conversation_history)
      assert.truthy(block.value:find('"conversation_history":[]', 1, true)) -- an array, not an object
    end)

    it("run again with a new name or preferences: updates them, keeping the conversation history", function()
      users:onboard("alice", { name = "Alice", preferences = { tea = "green" } })
      local same = users:onboard("alice", { name = "Alice", preferences = { tea = "green" } })
      assert.is_false(same.changed)
      local r = users:onboard("alice", { name = "Alice B.", preferences = { tea = "black" } })
      assert.same({ "renamed to Alice B.", "updated preferences" }, r.actions)
      local rec, identity, block = assert_onboarded(emu, store, "alice")
      assert.equal("Alice B.", identity.name)
      assert.equal("Alice B.", rec.name)
      local value = json.decode(block.value)
      assert.equal("Alice B.", value.name)
      assert.same({ tea = "black" }, value.preferences)
      assert.truthy(block.value:find('"conversation_history":[]', 1, true))
    end)

    it("run twice: still one identity and one block, and the second run says it changed nothing", function()
      local first = users:onboard("alice")
      emu:clear_requests()
      local second = users:onboard("alice")
      assert.is_false(second.changed)
      assert.same({}, second.actions)
      assert.equal(first.identity_id, second.identity_id)
      assert.equal(first.block_id, second.block_id)
      assert.same({}, writes(emu)) -- it only looked (by id)
      local state = emu:state()
      assert.equal(1, #state.identities)
      assert.equal(1, #state.blocks)
      assert_onboarded(emu, store, "alice")
    end)

    it("gives the same outcome with --flaky-block-list 0.5, never listing blocks", function()
      local flaky = emulator.start{ "--flaky-block-list", "0.5" }
      local fc = flaky:client()
      local fs = store_mod.open(dir .. "/flaky-store")
      local ok, err = pcall(function()
        local u = users_mod.new{ client = fc, store = fs }
        for i = 1, 10 do assert.is_true(u:onboard("user" .. i).changed) end
        for i = 1, 10 do assert.is_false(u:onboard("user" .. i).changed) end
        local state = flaky:state()
        assert.equal(10, #state.identities)
        assert.equal(10, #state.blocks)
        for i = 1, 10 do assert_onboarded(flaky, fs, "user" .. i) end
        assert.equal(0, flaky:count("GET", "/v1/blocks/"))
      end)
      fs:close()
      fc:close()
      flaky:stop()
      assert(ok, err)
    end)

    it("adopts the identity an earlier run left on the server (409) when the store lost it, and says so", function()
      local left = client.identities:create{ identifier_key = "bob", name = "bob", identity_type = "user" }
      local r = users:onboard("bob")
      assert.equal("adopted identity " .. left.id .. " (already on the server: an interrupted run or a lost store)", has_action(r, "^adopted identity"))
      assert.is_nil(has_action(r, "^created identity"))
      assert.equal(left.id, r.identity_id)
      assert_onboarded(emu, store, "bob")
    end)

    it("with a new, empty store on a server that has the user: adopts the identity and its linked block, no duplicate", function()
      local first = users:onboard("bob")
      local other = store_mod.open(dir .. "/other-store")
      local ok, err = pcall(function()
        local r = users_mod.new{ client = client, store = other }:onboard("bob")
        assert.truthy(has_action(r, "^adopted identity " .. first.identity_id:gsub("%-", "%%-")))
        assert.truthy(has_action(r, "^adopted block " .. first.block_id:gsub("%-", "%%-") .. " %(already linked"))
        assert.is_nil(has_action(r, "^created"))
        assert_onboarded(emu, other, "bob")
        assert.equal(0, emu:count("GET", "/v1/blocks/")) -- found through the identity, by id
      end)
      other:close()
      assert(ok, err)
    end)

    it("re-onboarded after its store file was deleted, blocks:list dropping every row: adopts its block, says so", function()
      -- a real server returns every Identity with block_ids = {}: the persona is found through
      -- GET /v1/identities/{id}/blocks (and never through blocks:list, which drops every row here)
      local flaky = emulator.start{ "--flaky-block-list", "1.0" }
      local path = dir .. "/lost-store"
      local env = { LETTA_BASE_URL = flaky.url, LETTA_STORE = path, LETTA_API_KEY = false, LETTA_PASSWORD = false,
                    LETTASH_LUA_PATH = support.lua_path }
      local ok, err = pcall(function()
        local first = support.lettash({ support.root .. "/scripts/onboard.lua", "alice" }, { env = env })
        assert(first.code == 0, first.stderr)
        local block_id = first.stdout:match("alice: created block (block%-[%x%-]+)\n")
        assert.truthy(block_id, first.stdout)
        assert.same({}, flaky.admin.identities:list{ identifier_key = "alice" }[1].block_ids) -- as on a real server
        assert(os.remove(path))
        os.remove(path .. "-lock")
        local again = support.lettash({ support.root .. "/scripts/onboard.lua", "alice" }, { env = env })
        assert(again.code == 0, again.stderr)
        assert.matches("alice: adopted identity identity%-[%x%-]+ %(already on the server: an interrupted run or a lost store%)\n", again.stdout)
        assert.matches("alice: adopted block " .. block_id:gsub("%-", "%%-") .. " %(already linked to identity ", again.stdout)
        assert.no.matches("created", again.stdout)
        local s = store_mod.open(path)
        local rok, rerr = pcall(assert_onboarded, flaky, s, "alice")
        s:close()
        assert(rok, rerr)
        assert.equal(1, #flaky:state().blocks)
      end)
      flaky:stop()
      assert(ok, err)
    end)

    it("adopts an identity whose create was applied but answered 500 (commit-500)", function()
      emu:faults("kind=commit-500,times=1,route=POST /v1/identities/")
      local r = users:onboard("bob")
      assert.truthy(has_action(r, "^adopted identity"))
      assert_onboarded(emu, store, "bob")
    end)

    it("adopts, by its nonce, a block whose create was applied but answered 500; no duplicate on the rerun", function()
      emu:faults("kind=commit-500,times=1,route=POST /v1/blocks/")
      local err = emulator.fails(users.onboard, users, "carol")
      assert.equal(500, err.status)
      local rec = store:user("carol")
      assert.truthy(rec.identity_id)
      assert.truthy(rec.pending_block) -- the intent, written before the create
      assert.is_nil(rec.block_id)
      assert.equal(1, #blocks_labelled(emu:state(), "Persona_carol"))
      local r = users:onboard("carol")
      assert.truthy(has_action(r, "^adopted block block%-"))
      assert.is_nil(has_action(r, "^created block"))
      assert_onboarded(emu, store, "carol")
    end)

    it("finishes the link on the rerun when the link failed with a 500", function()
      emu:faults("kind=500,times=1,route=PATCH /v1/blocks/*/identities/attach/*")
      local err = emulator.fails(users0.onboard, users0, "dave")
      assert.equal(500, err.status)
      local r = users:onboard("dave")
      assert.truthy(has_action(r, "^linked block"))
      assert.is_nil(has_action(r, "^created"))
      assert_onboarded(emu, store, "dave")
    end)

    it("accepts a 42-character username (the label Persona_<name> is then exactly 50)", function()
      local name = string.rep("n", 42)
      local r = users:onboard(name)
      assert.equal(50, #r.block_label)
      assert_onboarded(emu, store, name)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("usernames", function()
    local invalid = {
      { "an empty name", "", "a non%-empty name is required" },
      { "a 200-character name", string.rep("x", 200), "at most 42 characters" },
      { "a 43-character name", string.rep("x", 43), "at most 42 characters" },
      { "a name with a slash", "a/b", "only letters" },
      { "a name with a space", "a b", "only letters" },
      { "a non-ASCII name", "é", "only letters" },
    }
    for _, case in ipairs(invalid) do
      local what, name, message = case[1], case[2], case[3]
      it("refuses " .. what .. " with a clear error, and creates nothing anywhere", function()
        for _, call in ipairs({
          function() return users:onboard(name) end,
          function() return users:chat(name, "agent-00000000-0000-4000-8000-000000000000", "hi") end,
          function() return users:offboard(name) end,
        }) do
          local ok, e = pcall(call)
          assert.is_false(ok)
          assert.is_true(errors.is(e, "refused")) -- a refusal, before any request
          local err = tostring(e)
          assert.truthy(err:match("^letta%.users: invalid username"), err)
          assert.truthy(err:match(message), err)
          assert.truthy(#err < 200, "the message stays short: " .. err)
        end
        local state = emu:state()
        assert.equal(0, #state.identities)
        assert.equal(0, #state.blocks)
        assert.equal(0, #emu:requests())
        assert.equal(0, #users:list())
      end)
    end

    it("refuses a name that is not a string", function()
      assert.has_error(function() users:onboard(nil) end, "letta.users: invalid username: a non-empty name is required")
      assert.has_error(function() users:onboard(42) end, "letta.users: invalid username: a non-empty name is required")
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("chat", function()
    local agent, alice
    before_each(function()
      agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" }, { label = "persona", value = "p" } } })
      alice = users:onboard("alice")
      emu:clear_requests()
    end)

    local function assert_clean()
      local state = emu:state()
      assert.same({ "human", "persona" }, agent_in(state, agent.id).block_labels)
      assert.equal(0, count_ns(store, "attachments"))
      assert.equal(0, count_ns(store, "leases"))
    end

    it("sends with the persona attached and the identity as sender, then detaches it", function()
      local r = users:chat("alice", agent.id, "hello")
      assert.equal("[blocks: human,persona,Persona_alice] [sender: " .. alice.identity_id .. "] you said: hello", r.reply)
      assert.equal("end_turn", r.stop_reason.stop_reason)
      assert_clean()
      local seq = writes(emu)
      assert.equal("PATCH /v1/agents/" .. agent.id .. "/core-memory/blocks/attach/" .. alice.block_id, seq[1])
      assert.equal("POST /v1/agents/" .. agent.id .. "/messages", seq[2])
      assert.equal("PATCH /v1/agents/" .. agent.id .. "/core-memory/blocks/detach/" .. alice.block_id, seq[3])
    end)

    it("streams too: events go to on_event, the reply shows the persona, then it is detached", function()
      local types = {}
      local r = users:chat("alice", agent.id, "hello", { stream = true, on_event = function(ev) types[#types + 1] = ev.message_type end })
      assert.equal("[blocks: human,persona,Persona_alice] [sender: " .. alice.identity_id .. "] you said: hello", r.reply)
      assert.same({ "reasoning_message", "assistant_message", "stop_reason", "usage_statistics" }, types)
      assert_clean()
    end)

    it("still detaches when the send fails with a 500, and raises the 500", function()
      emu:faults("kind=500,times=1,route=POST /v1/agents/*/messages")
      local err = emulator.fails(users.chat, users, "alice", agent.id, "hello")
      assert.is_true(letta.is_error(err))
      assert.equal(500, err.status)
      assert.equal(1, emu:count("PATCH", "/v1/agents/" .. agent.id .. "/core-memory/blocks/detach/" .. alice.block_id))
      assert_clean()
    end)

    it("still detaches when the on_event callback raises a Lua error, and raises it", function()
      local err = emulator.fails(users.chat, users, "alice", agent.id, "hello",
                                 { stream = true, on_event = function() error("callback broke") end })
      assert.truthy(tostring(err):find("callback broke", 1, true))
      assert_clean()
    end)

    it("still detaches when the send times out, and raises the timeout", function()
      emu:faults("kind=slow,ms=800,times=1,route=POST /v1/agents/*/messages")
      local err = emulator.fails(users.chat, users, "alice", agent.id, "hello", { timeout = 0.2 })
      assert.is_true(letta.is_error(err))
      assert.equal("timeout", err.code)
      assert_clean()
      -- (the server finishes that send later, after the detach: let it, so it lands in no other test)
      procs.wait_until(function() return emu:count("POST", "/v1/agents/" .. agent.id .. "/messages") == 1 end, 5, "the slow send")
    end)

    it("keeps the conversation history in the persona block, bounded to the last 20 exchanges", function()
      for i = 1, 22 do users:chat("alice", agent.id, "message " .. i) end
      local block = client.blocks:retrieve(alice.block_id)
      local value = json.decode(block.value)
      assert.equal("alice", value.name)
      local h = value.conversation_history
      assert.equal(20, #h)
      assert.equal("message 3", h[1].user)
      assert.equal("message 22", h[20].user)
      assert.truthy(h[20].agent:find("you said: message 22", 1, true))
      assert.truthy(h[20].at:match("^%d%d%d%d%-%d%d%-%d%dT"))
      assert_clean()
    end)

    it("refuses a user who is not onboarded, touching nothing", function()
      emu:clear_requests()
      assert.has_error(function() users:chat("zoe", agent.id, "hi") end,
                       "letta.users: user 'zoe' is not onboarded (run onboard first)")
      assert.equal(0, #emu:requests())
    end)

    it("two users chatting at once on one agent (two tasks) each see only their own persona", function()
      local bob = users:onboard("bob")
      emu:config{ latency_ms = 20 }
      local function talk(name, identity_id)
        local replies = {}
        for i = 1, 4 do
          replies[i] = users:chat(name, agent.id, name .. " " .. i).reply
        end
        return { name = name, identity_id = identity_id, replies = replies }
      end
      local results = letta.gather{
        function() return talk("alice", alice.identity_id) end,
        function() return talk("bob", bob.identity_id) end,
      }
      for _, r in ipairs(results) do
        for i, reply in ipairs(r.replies) do
          assert.equal(string.format("[blocks: human,persona,Persona_%s] [sender: %s] you said: %s %d",
                                     r.name, r.identity_id, r.name, i), reply)
        end
      end
      assert_clean()
    end)

    it("two processes chatting as one user at once, on two agents, keep every exchange in the history", function()
      local other = emulator.new_agent(client, { name = "bot2" })
      emu:config{ latency_ms = 10 }
      local path = dir .. "/store"
      local pa = procs.start(emu.url, path, "chat", "alice", agent.id, "to one", 5)
      local pb = procs.start(emu.url, path, "chat", "alice", other.id, "to two", 5)
      local ca, _, ea = pa:wait()
      local cb, _, eb = pb:wait()
      assert.equal(0, ca, ea)
      assert.equal(0, cb, eb)
      emu:config{ latency_ms = 0 }
      local h = json.decode(client.blocks:retrieve(alice.block_id).value).conversation_history
      local n = { ["to one"] = 0, ["to two"] = 0 }
      for _, e in ipairs(h) do n[e.user] = n[e.user] + 1 end
      assert.same({ ["to one"] = 5, ["to two"] = 5 }, n)
      assert_clean()
    end)

    it("two processes chatting at once on one agent each see only their own persona", function()
      local bob = users:onboard("bob")
      emu:config{ latency_ms = 10 }
      local path = dir .. "/store"
      local pa = procs.start(emu.url, path, "chat", "alice", agent.id, "from alice", 5)
      local pb = procs.start(emu.url, path, "chat", "bob", agent.id, "from bob", 5)
      local ca, _, ea = pa:wait()
      local cb, _, eb = pb:wait()
      assert.equal(0, ca, ea)
      assert.equal(0, cb, eb)
      for _, p in ipairs({ { pa, "alice", alice.identity_id }, { pb, "bob", bob.identity_id } }) do
        local rs = p[1]:results()
        assert.equal(5, #rs)
        for _, r in ipairs(rs) do
          assert.equal("[blocks: human,persona,Persona_" .. p[2] .. "] [sender: " .. p[3] .. "] you said: from " .. p[2], r.reply)
        end
      end
      -- and on the server: every message was sent while exactly one persona was attached
      emu:config{ latency_ms = 0 }
      local attached, max = {}, 0
      for _, req in ipairs(emu:requests()) do
        local id = req.path:match("/core%-memory/blocks/attach/(.+)$")
        if id then attached[id] = true end
        id = req.path:match("/core%-memory/blocks/detach/(.+)$")
        if id then attached[id] = nil end
        if req.method == "POST" and req.path:match("/messages$") then
          local n = 0
          for _ in pairs(attached) do n = n + 1 end
          max = math.max(max, n)
          assert.equal(1, n)
        end
      end
      assert.equal(1, max)
      assert_clean()
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("offboard", function()
    it("deletes the block and the identity on the server, and the record with its lookups", function()
      local r = users:onboard("alice")
      users:onboard("bob")
      local off = users:offboard("alice")
      assert.truthy(has_action(off, "^deleted block " .. r.block_id:gsub("%-", "%%-")))
      assert.truthy(has_action(off, "^deleted identity " .. r.identity_id:gsub("%-", "%%-")))
      local state = emu:state()
      assert.equal(0, #identities_of(state, "alice"))
      assert.equal(0, #blocks_labelled(state, "Persona_alice"))
      assert.is_nil(store:user("alice"))
      assert.is_nil(store:user_by("identity", r.identity_id))
      assert.is_nil(store:user_by("block", r.block_id))
      assert_onboarded(emu, store, "bob") -- the other user is untouched
    end)

    it("completes when run again after an interruption (the identity delete failing with a 503)", function()
      local r = users:onboard("alice")
      emu:faults("kind=503,times=1,route=DELETE /v1/identities/*")
      local err = emulator.fails(users0.offboard, users0, "alice")
      assert.equal(503, err.status)
      local state = emu:state()
      assert.equal(0, #blocks_labelled(state, "Persona_alice"))
      assert.equal(1, #identities_of(state, "alice"))
      assert.is_true(store:user("alice").offboarding)
      users:offboard("alice")
      state = emu:state()
      assert.equal(0, #state.identities)
      assert.equal(0, #state.blocks)
      assert.is_nil(store:user("alice"))
      assert.is_nil(store:user_by("identity", r.identity_id))
    end)

    it("detaches the persona from an agent where a killed chat left it", function()
      local agent = emulator.new_agent(client, { name = "bot" })
      local r = users:onboard("alice")
      client.agents.blocks:attach(agent.id, r.block_id)
      store:update(function(txn)
        records.put_attachment(txn, agent.id, r.block_id, "alice", 999999999)
      end)
      users:offboard("alice")
      local state = emu:state()
      assert.same({}, agent_in(state, agent.id).block_ids)
      assert.equal(0, #state.blocks)
      assert.equal(0, count_ns(store, "attachments"))
    end)

    it("after an onboarding interrupted once its block create had landed, deletes that block too", function()
      emu:faults("kind=commit-500,times=1,route=POST /v1/blocks/")
      emulator.fails(users.onboard, users, "alice")
      assert.equal(1, #blocks_labelled(emu:state(), "Persona_alice")) -- landed, its id never learnt
      local off = users:offboard("alice")
      assert.truthy(has_action(off, "^deleted block block%-.* %(left by an interrupted onboarding%)"))
      local state = emu:state()
      assert.equal(0, #state.identities)
      assert.equal(0, #state.blocks)
      assert.is_nil(store:user("alice"))
    end)

    it("after an onboarding interrupted once its identity create had landed, deletes that identity too", function()
      emu:faults("kind=commit-500,times=1,route=POST /v1/identities/;kind=503,times=1,route=GET /v1/identities/")
      emulator.fails(users0.onboard, users0, "alice") -- the create landed, the look-up failed
      assert.is_nil(store:user("alice").identity_id)
      assert.equal(1, #identities_of(emu:state(), "alice"))
      users:offboard("alice")
      assert.equal(0, #emu:state().identities)
      assert.is_nil(store:user("alice"))
    end)

    it("is nothing to do for a user with no record (never onboarded, or offboarded already)", function()
      assert.same({ username = "nobody", changed = false, actions = {} }, users:offboard("nobody"))
      users:onboard("alice")
      assert.is_true(users:offboard("alice").changed)
      emu:clear_requests()
      assert.same({ username = "alice", changed = false, actions = {} }, users:offboard("alice"))
      assert.equal(0, #emu:requests())
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("doctor", function()
    local function problems(report)
      local t = {}
      for _, p in ipairs(report.problems) do t[#t + 1] = p.kind end
      table.sort(t)
      return t
    end

    it("reports ok for a healthy store and server", function()
      users:onboard("alice")
      users:onboard("bob")
      local report = users:doctor()
      assert.is_true(report.ok)
      assert.same({}, report.problems)
      for _, c in ipairs(report.checks) do assert.is_true(c.ok, c.name .. ": " .. tostring(c.detail)) end
    end)

    it("reports a block deleted behind its back; fix recreates it and stores the new id", function()
      local r = users:onboard("alice")
      client.blocks:delete(r.block_id)
      local report = users:doctor()
      assert.is_false(report.ok)
      assert.same({ "block_missing" }, problems(report))
      assert.equal("alice", report.problems[1].username)
      assert.is_false(report.problems[1].fixed)
      assert.equal(r.block_id, store:user("alice").block_id) -- without fix, nothing changes
      report = users:doctor{ fix = true }
      assert.is_true(report.ok)
      assert.is_true(report.problems[1].fixed)
      local rec, identity = assert_onboarded(emu, store, "alice")
      assert.are_not.equal(r.block_id, rec.block_id)
      assert.equal(r.identity_id, identity.id)
      assert.is_nil(store:user_by("block", r.block_id))
      assert.same({}, users:doctor().problems)
    end)

    it("reports an identity deleted behind its back; fix recreates it", function()
      local r = users:onboard("alice")
      client.identities:delete(r.identity_id)
      local report = users:doctor{ fix = true }
      assert.same({ "identity_missing" }, problems(report))
      assert.is_true(report.ok)
      local rec = assert_onboarded(emu, store, "alice")
      assert.are_not.equal(r.identity_id, rec.identity_id)
      assert.equal(r.block_id, rec.block_id)
    end)

    it("reports an attachment and a lease a killed chat left; fix detaches and frees the agent", function()
      local agent = emulator.new_agent(client, { name = "bot" })
      local r = users:onboard("alice")
      local dead = tonumber(support.sh("sh -c 'echo $$'").stdout) -- a process that has ended
      client.agents.blocks:attach(agent.id, r.block_id)
      store:update(function(txn)
        records.put_attachment(txn, agent.id, r.block_id, "alice", dead)
        records.put_lease(txn, agent.id, dead .. ":x", 600, dead)
      end)
      local report = users:doctor()
      assert.is_false(report.ok)
      assert.same({ "leftover_attachment", "stale_lease" }, problems(report))
      report = users:doctor{ fix = true }
      assert.is_true(report.ok, json.encode(report.problems))
      assert.same({}, personas_attached(emu:state(), agent.id))
      assert.equal(0, count_ns(store, "attachments"))
      assert.equal(0, count_ns(store, "leases"))
      assert.same({}, users:doctor().problems)
    end)

    it("reports an interrupted onboarding; fix completes it", function()
      emu:faults("kind=503,times=1,route=POST /v1/blocks/")
      emulator.fails(users.onboard, users, "alice")
      local report = users:doctor()
      assert.same({ "interrupted_onboard" }, problems(report))
      assert.is_true(users:doctor{ fix = true }.ok)
      assert_onboarded(emu, store, "alice")
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("many processes", function()
    it("two processes onboarding 50 users each at once: 100 records, 100 identities, 100 blocks", function()
      local path = dir .. "/store"
      local a = procs.start(emu.url, path, "onboard-many", "a", 50)
      local b = procs.start(emu.url, path, "onboard-many", "b", 50)
      local ca, _, ea = a:wait(60)
      local cb, _, eb = b:wait(60)
      assert.equal(0, ca, ea)
      assert.equal(0, cb, eb)
      local state = emu:state()
      assert.equal(100, #state.identities)
      assert.equal(100, #state.blocks)
      assert.equal(100, #users:list())
      for _, p in ipairs({ "a", "b" }) do
        for i = 1, 50 do assert_onboarded(emu, store, p .. i) end
      end
    end)
  end)
end)
