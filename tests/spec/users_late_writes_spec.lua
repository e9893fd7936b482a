-- Writes the server applies after the client stopped waiting (found by the fault matrix,
-- tests/reliability/): a chat never leaves a persona behind for another user's send, and never
-- loses or doubles a history entry.
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local users_mod = require "letta.users"
local store_mod = require "letta.store"
local records = require "letta.users.records"
local json = letta.json
local checks = require "users_checks"

describe("letta.users and late or undecodable answers", function()
  local emu, client, dir, store, users, agent, alice, bob
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { each = function()
    dir = support.tmpdir()
    store = store_mod.open(dir .. "/store")
    users = users_mod.new{ client = client, store = store }
    agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" } } })
    alice, bob = users:onboard("alice"), users:onboard("bob")
  end })
  after_each(function()
    emu:clear_faults()
    store:close()
    support.rmdir(dir)
  end)

  local function history(block_id) return json.decode(client.blocks:retrieve(block_id).value).conversation_history end

  it("detaches, before its send, a persona whose unanswered attach landed after the next chat had looked", function()
    -- alice's attach goes unanswered (timeout) and lands 1.2 s after it was sent: her chat's
    -- detach found nothing yet, so the record stays, watched. bob's chat looks before that
    -- (nothing there) and attaches, answered after it landed: the answer shows Persona_alice,
    -- recorded by this store, so it is detached before bob's send (not waited for as another
    -- store's chat would be).
    local slow_client = emu:client{ timeout = 0.5 }
    local slow_users = users_mod.new{ client = slow_client, store = store }
    emu:faults("kind=slow,ms=1200,times=1,route=PATCH /v1/agents/*/core-memory/blocks/attach/" .. alice.block_id
               .. ";kind=slow,ms=1000,times=1,route=PATCH /v1/agents/*/core-memory/blocks/attach/" .. bob.block_id)
    local ok, err = pcall(slow_users.chat, slow_users, "alice", agent.id, "hi")
    slow_client:close()
    assert.is_false(ok)
    assert.equal("timeout", err.code)
    local a = store:read(function(txn) return records.attachment(txn, agent.id, alice.block_id) end)
    assert.is_true(a.unsure)
    local r = users:chat("bob", agent.id, "hello")
    assert.equal("[blocks: human,Persona_bob] [sender: " .. bob.identity_id .. "] you said: hello", r.reply)
    assert.truthy(checks.has_action(r, "^repaired: detached " .. alice.block_id:gsub("%-", "%%-") .. " %(Persona_alice%)"),
                  table.concat(r.actions, "; "))
    assert.same({ "human" }, checks.agent_in(emu:state(), agent.id).block_labels)
    assert.equal(0, checks.count_ns(store, "attachments"))
  end)

  it("fails on an attach that timed out, keeping it recorded; the next chat detaches it once it landed", function()
    local slow_client = emu:client{ timeout = 0.5 }
    local slow_users = users_mod.new{ client = slow_client, store = store }
    emu:faults("kind=slow,ms=1200,times=1,route=PATCH /v1/agents/*/core-memory/blocks/attach/*")
    local ok, err = pcall(slow_users.chat, slow_users, "alice", agent.id, "hi")
    assert.is_false(ok)
    assert.equal("timeout", err.code)
    assert.equal(1, checks.count_ns(store, "attachments"))
    letta.sleep(1.0) -- the held attach lands now, after the chat's detach
    -- sent once, not repeated after the timeout (the log shows it once it is answered)
    assert.equal(1, emu:count("PATCH", "/v1/agents/[^/]+/core%-memory/blocks/attach/.*"))
    assert.same({ "Persona_alice" }, checks.personas_attached(emu:state(), agent.id))
    local r = users:chat("bob", agent.id, "hello")
    assert.equal("[blocks: human,Persona_bob] [sender: " .. bob.identity_id .. "] you said: hello", r.reply)
    assert.truthy(checks.has_action(r, "^repaired: detached " .. alice.block_id:gsub("%-", "%%-")))
    assert.same({}, checks.personas_attached(emu:state(), agent.id))
    assert.equal(0, checks.count_ns(store, "attachments"))
    slow_client:close()
  end)

  it("writes the history once when reading the persona answers garbage, or the write's answer is garbage", function()
    emu:faults("kind=bad-json,times=1,route=GET /v1/blocks/*")
    local r = users:chat("alice", agent.id, "one")
    assert.is_nil(checks.has_action(r, "not saved"))
    emu:faults("kind=bad-json,times=1,route=PATCH /v1/blocks/*")
    r = users:chat("alice", agent.id, "two")
    assert.is_nil(checks.has_action(r, "not saved"))
    local h = history(alice.block_id)
    assert.equal(2, #h)
    assert.equal("one", h[1].user)
    assert.equal("two", h[2].user)
  end)

  it("does not fail a chat whose detach was applied but answered with garbage", function()
    emu:faults("kind=bad-json,times=1,route=PATCH /v1/agents/*/core-memory/blocks/detach/*")
    local r = users:chat("alice", agent.id, "hi")
    assert.truthy(r.reply:find("you said: hi", 1, true))
    assert.same({}, checks.personas_attached(emu:state(), agent.id))
    assert.equal(0, checks.count_ns(store, "attachments"))
  end)
end)
