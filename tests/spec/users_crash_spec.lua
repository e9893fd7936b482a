-- kill -9 at each step of onboard, chat and offboard, then a rerun (or doctor --fix, or another
-- chat) from a fresh process: the server ends in exactly the expected state (checked through
-- /_emulator/state) and so does the store.
--
-- How a kill lands on a step: the workflow runs in a child bin/lettash (users_child.lua).
--  * "applied, answer not yet received": the emulator runs with --latency-ms, which it sleeps
--    AFTER applying a request and before answering; the spec polls /_emulator/state until the
--    write shows, then kills the child while it waits for the answer.
--  * "sent, not yet applied": a `slow` fault on the route, which the emulator sleeps BEFORE
--    applying; the spec polls /_emulator/faults until the rule (times=1) is used up, i.e. the
--    request has arrived, then kills. The server still applies it afterwards, as a real server
--    would: the spec waits until it has (it shows in /_emulator/requests) unless the case is about
--    recovering before it lands.
local support = require "support"
local emulator = require "emulator"
local procs = require "users_procs"
local checks = require "users_checks"
local letta = require "letta"
local users_mod = require "letta.users"
local store_mod = require "letta.store"

local identities_of, blocks_labelled, agent_in, personas_attached, count_ns, has_action, assert_onboarded =
  checks.identities_of, checks.blocks_labelled, checks.agent_in, checks.personas_attached, checks.count_ns,
  checks.has_action, checks.assert_onboarded

local LATENCY = 300 -- ms: how long each answer is held while the spec kills the child
local SLOW = 300 -- ms: how long a `slow` request is held before it is applied

describe("letta.users killed with kill -9", function()
  local emu, client, dir, path

  lazy_setup(function()
    emu = emulator.start()
    client = emu:client()
  end)
  lazy_teardown(function()
    procs.kill_all()
    if client then client:close() end
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset()
    emu:config{ latency_ms = 0 }
    dir = support.tmpdir()
    path = dir .. "/store"
  end)
  after_each(function()
    procs.kill_all()
    emu:config{ latency_ms = 0 }
    support.rmdir(dir)
  end)

  -- Runs fn(store) on the store, opened for the call only (children open it too).
  local function with_store(fn)
    local s = store_mod.open(path)
    local ok, res = pcall(fn, s)
    s:close()
    if not ok then error(res, 0) end
    return res
  end

  -- Runs a workflow in a fresh process to its end; returns its printed results.
  local function run(...)
    local p = procs.start(emu.url, path, ...)
    local code, _, err = p:wait(30)
    assert.equal(0, code, err)
    return p:results()
  end

  -- Starts a workflow with the answers delayed, waits for cond(state) (the step's write has been
  -- applied), kills it, and puts the latency back to 0.
  local function kill_after_applied(cond, what, ...)
    emu:config{ latency_ms = LATENCY }
    local p = procs.start(emu.url, path, ...)
    procs.wait_until(function()
      if not p:alive() then error("the child ended before " .. what .. ": " .. tostring(p:stderr())) end
      return cond(emu:state())
    end, 10, what)
    assert.equal(137, p:kill9())
    emu:config{ latency_ms = 0 }
    -- The server still holds the killed request's answer for the rest of the latency, and only then
    -- logs it: wait for that, so the log (and the next spec) holds no stragglers.
    letta.sleep(LATENCY / 1000 + 0.1)
  end

  -- Starts a workflow with a slow fault on route, kills it once that request has reached the server
  -- (and is held there, not yet applied).
  local function kill_before_applied(route, ...)
    emu:faults(string.format("kind=slow,ms=%d,times=1,route=%s", SLOW, route))
    local p = procs.start(emu.url, path, ...)
    procs.wait_until(function()
      if not p:alive() then error("the child ended before " .. route .. ": " .. tostring(p:stderr())) end
      return #emu:faults() == 0
    end, 10, route)
    assert.equal(137, p:kill9())
  end

  -- Waits until the server has answered (so applied) n requests matching method and path pattern.
  local function landed(method, pattern, n)
    procs.wait_until(function() return emu:count(method, pattern) >= (n or 1) end, 5, method .. " " .. pattern)
  end

  local function record(username) return with_store(function(s) return s:user(username) end) end

  local function assert_exact_users(names, extra_blocks)
    local state = emu:state()
    assert.equal(#names, #state.identities)
    assert.equal(#names + (extra_blocks or 0), #state.blocks)
    with_store(function(s)
      assert.equal(#names, #s:users())
      for _, n in ipairs(names) do assert_onboarded(emu, s, n) end
    end)
  end

  -- -------------------------------------------------------------------------------------------
  describe("during onboard", function()
    it("while the identity create is in flight (applied, unanswered): the rerun adopts the identity", function()
      kill_after_applied(function(st) return #identities_of(st, "carol") == 1 end, "the identity", "onboard", "carol")
      local rec = record("carol")
      assert.truthy(rec, "the record (intent) is written before the first server write")
      assert.is_nil(rec.identity_id)
      local r = run("onboard", "carol")[1]
      assert.truthy(has_action(r, "^adopted identity"), table.concat(r.actions, "; "))
      assert.truthy(has_action(r, "^created block"))
      assert_exact_users({ "carol" })
    end)

    it("while the identity create is in flight (not yet applied), the rerun racing it: still one identity", function()
      kill_before_applied("POST /v1/identities/", "onboard", "carol")
      local r = run("onboard", "carol")[1] -- at once, while the killed run's create is still held
      landed("POST", "/v1/identities/", 2)
      local late
      for _, req in ipairs(emu:requests()) do
        if req.method == "POST" and req.path == "/v1/identities/" and req.fault == "slow" then late = req end
      end
      if has_action(r, "^created identity") then
        assert.equal(409, late.status) -- it landed after the rerun's: refused as a duplicate key
      else
        assert.truthy(has_action(r, "^adopted identity")) -- (a slow machine: it landed first)
      end
      assert_exact_users({ "carol" })
    end)

    it("after the identity is stored, while the block create is in flight (applied): the rerun adopts the block", function()
      kill_after_applied(function(st) return #blocks_labelled(st, "Persona_carol") == 1 end, "the block", "onboard", "carol")
      local rec = record("carol")
      assert.truthy(rec.identity_id)
      assert.truthy(rec.pending_block, "the nonce is stored before the block create")
      assert.is_nil(rec.block_id)
      local r = run("onboard", "carol")[1]
      assert.truthy(has_action(r, "^adopted block block%-"), table.concat(r.actions, "; "))
      assert.is_nil(has_action(r, "^created"))
      assert_exact_users({ "carol" })
    end)

    it("while the block create is in flight (not yet applied): once it lands, the rerun adopts it", function()
      kill_before_applied("POST /v1/blocks/", "onboard", "carol")
      landed("POST", "/v1/blocks/")
      local r = run("onboard", "carol")[1]
      assert.truthy(has_action(r, "^adopted block block%-"), table.concat(r.actions, "; "))
      assert.is_nil(has_action(r, "^created"))
      assert_exact_users({ "carol" })
    end)

    it("while the link is in flight (applied): the rerun finds it linked and finishes", function()
      kill_after_applied(function(st)
        local ids = identities_of(st, "carol")
        return #ids == 1 and #ids[1].block_ids == 1
      end, "the link", "onboard", "carol")
      local rec = record("carol")
      assert.truthy(rec.block_id)
      assert.is_nil(rec.onboarded)
      local r = run("onboard", "carol")[1]
      assert.is_nil(has_action(r, "^created"))
      assert.is_nil(has_action(r, "^linked"))
      assert_exact_users({ "carol" })
    end)

    it("while the link is in flight (not yet applied): doctor --fix in a fresh process finishes it", function()
      kill_before_applied("PATCH /v1/blocks/*/identities/attach/*", "onboard", "carol")
      local report = run("doctor", "fix")[1]
      assert.is_true(report.ok)
      assert.equal(1, #report.problems)
      assert.equal("interrupted_onboard", report.problems[1].kind)
      assert.is_true(report.problems[1].fixed)
      landed("PATCH", "/v1/blocks/.*/identities/attach/.*", 2) -- the late link too: linking is idempotent
      assert_exact_users({ "carol" })
      assert.same({}, run("doctor")[1].problems)
    end)

    it("at every step of a batch: onboarding 3 users again after the kill leaves exactly 3 of each", function()
      kill_after_applied(function(st) return #blocks_labelled(st, "Persona_u2") == 1 end, "u2's block",
                         "onboard", "u1", "u2", "u3")
      local rs = run("onboard", "u1", "u2", "u3")
      assert.is_false(rs[1].changed)
      assert.truthy(has_action(rs[2], "^adopted block"))
      assert.truthy(has_action(rs[3], "^created identity"))
      assert_exact_users({ "u1", "u2", "u3" })
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("during chat", function()
    local agent, alice, bob
    before_each(function()
      agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" }, { label = "persona", value = "p" } } })
      local rs = run("onboard", "alice", "bob")
      alice, bob = rs[1], rs[2]
    end)

    -- The exact state after recovery: both users intact, no persona on the agent, no attachment
    -- and no lease in the store.
    local function assert_clean()
      local state = emu:state()
      assert.same({ "human", "persona" }, agent_in(state, agent.id).block_labels)
      assert_exact_users({ "alice", "bob" }, 2)
      with_store(function(s)
        assert.equal(0, count_ns(s, "attachments"))
        assert.equal(0, count_ns(s, "leases"))
      end)
    end

    local function messages(st) return agent_in(st, agent.id).message_count end

    local function assert_left_behind()
      with_store(function(s)
        assert.equal(1, count_ns(s, "attachments"))
        assert.equal(1, count_ns(s, "leases"))
      end)
    end

    local function doctor_fixes(expected)
      local report = run("doctor", "fix")[1]
      assert.is_true(report.ok)
      local kinds = {}
      for _, p in ipairs(report.problems) do
        assert.is_true(p.fixed, p.detail)
        kinds[#kinds + 1] = p.kind
      end
      assert.same(expected or { "leftover_attachment" }, kinds)
      assert_clean()
      assert.same({}, run("doctor")[1].problems)
    end

    -- bob chats next in a fresh process: he sees only his own persona, and alice's is repaired away.
    local function next_chat_repairs()
      local r = run("chat", "bob", agent.id, "hi")[1]
      assert.equal("[blocks: human,persona,Persona_bob] [sender: " .. bob.identity_id .. "] you said: hi", r.reply)
      assert.truthy(has_action(r, "^repaired: detached " .. alice.block_id:gsub("%-", "%%-")), table.concat(r.actions, "; "))
      assert_clean()
    end

    it("while the attach is in flight (applied): doctor --fix in a fresh process detaches it", function()
      kill_after_applied(function(st) return personas_attached(st, agent.id)[1] == "Persona_alice" end,
                         "the attach", "chat", "alice", agent.id, "hi")
      assert_left_behind()
      doctor_fixes()
    end)

    it("while the attach is in flight (applied): the next chat, another user's, repairs it first", function()
      kill_after_applied(function(st) return personas_attached(st, agent.id)[1] == "Persona_alice" end,
                         "the attach", "chat", "alice", agent.id, "hi")
      next_chat_repairs()
    end)

    it("while the attach is in flight (not yet applied): once it lands, the next chat repairs it", function()
      kill_before_applied("PATCH /v1/agents/*/core-memory/blocks/attach/*", "chat", "alice", agent.id, "hi")
      landed("PATCH", "/v1/agents/.*/core%-memory/blocks/attach/.*")
      assert.same({ "Persona_alice" }, personas_attached(emu:state(), agent.id))
      next_chat_repairs()
    end)

    it("while the send is in flight (applied): doctor --fix in a fresh process detaches the persona", function()
      local before = messages(emu:state())
      kill_after_applied(function(st) return messages(st) > before end, "the send", "chat", "alice", agent.id, "hi")
      assert.same({ "Persona_alice" }, personas_attached(emu:state(), agent.id))
      assert_left_behind()
      doctor_fixes()
    end)

    it("while the send is in flight (not yet applied): once it lands, the next chat repairs it", function()
      kill_before_applied("POST /v1/agents/*/messages", "chat", "alice", agent.id, "hi")
      landed("POST", "/v1/agents/.*/messages")
      next_chat_repairs()
    end)

    it("while the detach is in flight (applied): doctor --fix in a fresh process clears the record", function()
      local before = messages(emu:state())
      kill_after_applied(function(st) return messages(st) > before and #personas_attached(st, agent.id) == 0 end,
                         "the detach", "chat", "alice", agent.id, "hi")
      assert_left_behind()
      doctor_fixes()
    end)

    it("while the detach is in flight (not yet applied): once it lands, the next chat clears the record", function()
      kill_before_applied("PATCH /v1/agents/*/core-memory/blocks/detach/*", "chat", "alice", agent.id, "hi")
      landed("PATCH", "/v1/agents/.*/core%-memory/blocks/detach/.*")
      assert_left_behind()
      next_chat_repairs()
    end)

    it("while the history write is in flight (applied): doctor --fix frees the user's lease, history kept", function()
      kill_after_applied(function(st)
        local b = blocks_labelled(st, "Persona_alice")[1]
        return #personas_attached(st, agent.id) == 0 and b.value:find('"user":"hi"', 1, true)
      end, "the history write", "chat", "alice", agent.id, "hi")
      with_store(function(s)
        assert.equal(0, count_ns(s, "attachments"))
        assert.equal(1, count_ns(s, "leases")) -- the user's (one history writer at a time)
      end)
      doctor_fixes({ "stale_lease" })
      local r = run("chat", "alice", agent.id, "again")[1]
      assert.equal("[blocks: human,persona,Persona_alice] [sender: " .. alice.identity_id .. "] you said: again", r.reply)
      local h = letta.json.decode(client.blocks:retrieve(alice.block_id).value).conversation_history
      assert.equal(2, #h)
      assert_clean()
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("interrupted with Ctrl-C (SIGINT) or SIGTERM during chat", function()
    for _, sig in ipairs{ "INT", "TERM" } do
      it("SIG" .. sig .. " while the send is in flight: the chat itself detaches, clears its record and frees the agent", function()
        local agent = emulator.new_agent(client, { name = "bot" })
        local alice = run("onboard", "alice")[1]
        emu:config{ latency_ms = LATENCY }
        local before = agent_in(emu:state(), agent.id).message_count -- (its system message)
        local p = procs.start(emu.url, path, "chat", "alice", agent.id, "hi")
        procs.wait_until(function()
          if not p:alive() then error("the child ended before the send: " .. tostring(p:stderr())) end
          return agent_in(emu:state(), agent.id).message_count > before
        end, 10, "the send")
        os.execute("kill -" .. sig .. " " .. p.pid)
        local code, _, err = p:wait(10)
        emu:config{ latency_ms = 0 }
        assert.equal(1, code, err)
        assert.truthy(err:find("interrupted", 1, true), err)
        assert.same({}, agent_in(emu:state(), agent.id).block_ids) -- detached by the chat, no doctor
        assert.equal(1, emu:count("PATCH", "/v1/agents/" .. agent.id .. "/core-memory/blocks/detach/" .. alice.block_id))
        with_store(function(s)
          assert.equal(0, count_ns(s, "attachments"))
          assert.equal(0, count_ns(s, "leases"))
        end)
        assert_exact_users({ "alice" })
      end)
    end
  end)

  -- -------------------------------------------------------------------------------------------
  describe("during offboard", function()
    it("while the block delete is in flight (applied): the rerun completes it", function()
      run("onboard", "carol", "dave")
      kill_after_applied(function(st) return #blocks_labelled(st, "Persona_carol") == 0 end, "the block delete",
                         "offboard", "carol")
      assert.is_true(record("carol").offboarding)
      run("offboard", "carol")
      assert_exact_users({ "dave" })
    end)

    it("run instead of a rerun after onboard was killed with its block create in flight: nothing is left", function()
      run("onboard", "dave")
      kill_after_applied(function(st) return #blocks_labelled(st, "Persona_carol") == 1 end, "the block", "onboard", "carol")
      local r = run("offboard", "carol")[1]
      assert.truthy(has_action(r, "left by an interrupted onboarding"), table.concat(r.actions, "; "))
      assert_exact_users({ "dave" })
    end)

    it("run instead of a rerun after onboard was killed with its identity create in flight: nothing is left", function()
      run("onboard", "dave")
      kill_after_applied(function(st) return #identities_of(st, "carol") == 1 end, "the identity", "onboard", "carol")
      run("offboard", "carol")
      assert_exact_users({ "dave" })
    end)

    it("while the identity delete is in flight (not yet applied): doctor --fix completes it", function()
      run("onboard", "carol", "dave")
      kill_before_applied("DELETE /v1/identities/*", "offboard", "carol")
      landed("DELETE", "/v1/identities/.*")
      local report = run("doctor", "fix")[1]
      assert.is_true(report.ok)
      assert.equal("interrupted_offboard", report.problems[1].kind)
      assert_exact_users({ "dave" })
    end)
  end)
end)
