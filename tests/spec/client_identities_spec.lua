-- client.identities against the emulator: create (409 on a duplicate key), upsert, retrieve,
-- modify (merging), delete, list filters and each, count, an identity's agents and blocks; and
-- attaching identities to agents (client.agents.identities) and to blocks (client.blocks.identities).
local emulator = require "emulator"
local letta = require "letta"
local null = letta.json.null
local fails, missing_id = emulator.fails, emulator.missing_id

describe("client.identities", function()
  local emu, client
  emulator.suite(_ENV, function(e, c) emu, client = e, c end)

  it("create returns the identity (identity_type user by default), with every field sent", function()
    local i = client.identities:create{ identifier_key = "alice", name = "Alice" }
    assert.matches(emulator.id_pattern("identity"), i.id)
    assert.equal("alice", i.identifier_key)
    assert.equal("Alice", i.name)
    assert.equal("user", i.identity_type)
    assert.same({}, i.agent_ids)
    assert.same({}, i.block_ids)
    assert.same({}, i.properties)
    assert.equal(null, i.project_id)
    local body = emu:requests()[1].body
    assert.equal("user", body.identity_type)
    assert.equal("/v1/identities/", emu:requests()[1].path)
    local r = client.identities:retrieve(i.id)
    assert.same(i, r)
    emu:check_complete("/v1/identities/" .. i.id, r)
  end)

  it("create with the same identifier_key again is 409, and is not retried", function()
    client.identities:create{ identifier_key = "alice", name = "Alice" }
    emu:clear_requests()
    local err = fails(client.identities.create, client.identities, { identifier_key = "alice", name = "Other" })
    assert.equal(409, err.status)
    assert.equal("conflict", err.code)
    assert.matches("identifier_key=alice", err.message)
    assert.equal("POST", err.method)
    assert.equal("/v1/identities/", err.path)
    assert.equal(1, emu:count("POST", "/v1/identities/"))
    assert.equal(1, #client.identities:list())
  end)

  it("upsert creates when the key is new and replaces the existing identity otherwise", function()
    local a = client.identities:upsert{ identifier_key = "bob", name = "Bob", identity_type = "other" }
    assert.equal("other", a.identity_type)
    local b = client.identities:upsert{ identifier_key = "bob", name = "Robert",
                                        properties = { { key = "age", value = 42, type = "number" } } }
    assert.equal(a.id, b.id)
    assert.equal("Robert", b.name)
    assert.equal("user", b.identity_type)
    assert.equal(42, b.properties[1].value)
    assert.equal("integer", math.type(b.properties[1].value))
    assert.equal(1, #client.identities:list())
    assert.equal("PUT", emu:requests()[#emu:requests() - 1].method)
  end)

  it("modify merges properties by key (update is an alias)", function()
    local i = client.identities:create{ identifier_key = "carol", name = "Carol",
                                        properties = { { key = "a", value = "1", type = "string" } } }
    local m = client.identities:modify(i.id, { properties = { { key = "b", value = true, type = "boolean" } } })
    assert.equal(2, #m.properties)
    local u = client.identities:update(i.id, { name = "Caroline" })
    assert.equal("Caroline", u.name)
    assert.equal(2, #u.properties)
    assert.equal("PATCH", emu:requests()[#emu:requests()].method)
  end)

  it("list filters by identifier_key, name and identity_type; each and count see them all", function()
    client.identities:create{ identifier_key = "u1", name = "One" }
    client.identities:create{ identifier_key = "u2", name = "Two" }
    client.identities:create{ identifier_key = "org1", name = "Org", identity_type = "org" }
    assert.equal(3, #client.identities:list())
    local u1 = client.identities:list{ identifier_key = "u1" }
    assert.equal(1, #u1)
    assert.equal("One", u1[1].name)
    assert.equal("u2", client.identities:list{ name = "Two" }[1].identifier_key)
    local orgs = client.identities:list{ identity_type = "org" }
    assert.equal(1, #orgs)
    assert.equal("org1", orgs[1].identifier_key)
    local keys = {}
    for i in client.identities:each{ limit = 2 } do keys[#keys + 1] = i.identifier_key end
    table.sort(keys)
    assert.same({ "org1", "u1", "u2" }, keys)
    assert.equal(3, client.identities:count())
    assert.equal("integer", math.type(client.identities:count()))
  end)

  it("delete returns nil; the identity is gone: 404 'Identity not found'", function()
    local i = client.identities:create{ identifier_key = "dan", name = "Dan" }
    assert.is_nil(client.identities:delete(i.id))
    local err = fails(client.identities.retrieve, client.identities, i.id)
    assert.equal(404, err.status)
    assert.equal("Identity not found", err.message)
    assert.equal("404 Not Found: Identity not found (GET /v1/identities/" .. i.id .. ")", tostring(err))
    err = fails(client.identities.delete, client.identities, i.id)
    assert.equal(404, err.status)
    assert.equal("DELETE", err.method)
  end)

  it("create with unknown agent ids is 404; a malformed id is 422; a bad identity_type is 422", function()
    local err = fails(client.identities.create, client.identities,
                      { identifier_key = "e", name = "E", agent_ids = { missing_id("agent") } })
    assert.equal(404, err.status)
    assert.matches("Items not found in agents", err.message)
    err = fails(client.identities.retrieve, client.identities, "identity-9")
    assert.equal(422, err.status)
    err = fails(client.identities.create, client.identities, { identifier_key = "e", name = "E", identity_type = "robot" })
    assert.equal(422, err.status)
    assert.equal(0, #client.identities:list())
  end)

  it("raises at once on misuse, naming the argument", function()
    local I = client.identities
    assert.matches("bad argument #1 to 'create' %(table expected, got nil%)", fails(I.create, I))
    assert.matches("bad argument #1 to 'create' %(identifier_key expected%)", fails(I.create, I, { name = "x" }))
    assert.matches("bad argument #1 to 'create' %(name expected%)", fails(I.create, I, { identifier_key = "x" }))
    assert.matches("bad argument #1 to 'upsert' %(identifier_key expected%)", fails(I.upsert, I, { name = "x" }))
    assert.matches("bad argument #1 to 'retrieve' %(identity id expected, got nil%)", fails(I.retrieve, I))
    assert.matches("bad argument #2 to 'modify' %(table expected", fails(I.modify, I, "identity-x"))
    assert.matches("bad argument #1 to 'delete' %(identity id expected", fails(I.delete, I, ""))
    assert.matches("bad argument #1 to 'agents' %(identity id expected", fails(I.agents, I))
    assert.matches("bad argument #1 to 'blocks' %(identity id expected", fails(I.blocks, I))
    assert.equal(0, #emu:requests())
  end)
end)

describe("identities attached to agents and blocks", function()
  local emu, client, agent, block, ident
  lazy_setup(function()
    emu = emulator.start()
    client = emu:client()
  end)
  lazy_teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset()
    agent = client.agents:create{ name = "bot", memory_blocks = { { label = "human", value = "?" } } }
    block = client.blocks:create{ label = "Persona_alice", value = "Alice" }
    ident = client.identities:create{ identifier_key = "alice", name = "Alice" }
    emu:clear_requests()
  end)

  it("agents.identities:attach and detach link an identity and an agent (JSON null answers)", function()
    assert.is_nil(client.agents.identities:attach(agent.id, ident.id))
    assert.equal("/v1/agents/" .. agent.id .. "/identities/attach/" .. ident.id, emu:requests()[1].path)
    assert.equal("PATCH", emu:requests()[1].method)
    assert.same({ agent.id }, client.identities:retrieve(ident.id).agent_ids)
    local agents = client.identities:agents(ident.id)
    assert.equal(1, #agents)
    assert.equal(agent.id, agents[1].id)
    assert.equal(1, #client.agents:list{ identity_id = ident.id })
    local a = client.agents:retrieve(agent.id, { include = { "agent.identities" } })
    assert.equal(ident.id, a.identities[1].id)
    assert.is_nil(client.agents.identities:detach(agent.id, ident.id))
    assert.same({}, client.identities:retrieve(ident.id).agent_ids)
    assert.equal(0, #client.identities:agents(ident.id))
  end)

  it("blocks.identities:attach and detach link an identity and a block (the block is returned)", function()
    local b = client.blocks.identities:attach(block.id, ident.id)
    assert.equal(block.id, b.id)
    assert.equal("/v1/blocks/" .. block.id .. "/identities/attach/" .. ident.id, emu:requests()[1].path)
    assert.same({ block.id }, client.identities:retrieve(ident.id).block_ids)
    local blocks = client.identities:blocks(ident.id)
    assert.equal(1, #blocks)
    assert.equal(block.id, blocks[1].id)
    assert.equal(1, #client.blocks:list{ identity_id = ident.id })
    b = client.blocks.identities:detach(block.id, ident.id)
    assert.equal(block.id, b.id)
    assert.same({}, client.identities:retrieve(ident.id).block_ids)
  end)

  it("modify appends agent_ids and block_ids", function()
    local i = client.identities:modify(ident.id, { agent_ids = { agent.id } })
    assert.same({ agent.id }, i.agent_ids)
    i = client.identities:modify(ident.id, { block_ids = { block.id } })
    assert.same({ agent.id }, i.agent_ids)
    assert.same({ block.id }, i.block_ids)
  end)

  it("attach to an unknown identity, agent or block is 404; misuse raises at once", function()
    local err = fails(client.agents.identities.attach, client.agents.identities, agent.id, missing_id("identity"))
    assert.equal(404, err.status)
    assert.equal("PATCH", err.method)
    err = fails(client.agents.identities.attach, client.agents.identities, missing_id("agent"), ident.id)
    assert.equal(404, err.status)
    err = fails(client.blocks.identities.attach, client.blocks.identities, missing_id("block"), ident.id)
    assert.equal(404, err.status)
    err = fails(client.blocks.identities.detach, client.blocks.identities, block.id, missing_id("identity"))
    assert.equal(404, err.status)
    emu:clear_requests()
    assert.matches("bad argument #2 to 'attach' %(identity id expected, got nil%)",
                   fails(client.agents.identities.attach, client.agents.identities, agent.id))
    assert.matches("bad argument #1 to 'detach' %(agent id expected",
                   fails(client.agents.identities.detach, client.agents.identities))
    assert.matches("bad argument #1 to 'attach' %(block id expected",
                   fails(client.blocks.identities.attach, client.blocks.identities, nil, ident.id))
    assert.matches("bad argument #2 to 'detach' %(identity id expected",
                   fails(client.blocks.identities.detach, client.blocks.identities, block.id, 3))
    assert.equal(0, #emu:requests())
  end)
end)
