-- client.identities against the emulator: create (409 on a duplicate key), upsert (update-only on
-- Letta 0.16.8), create_or_update, find, retrieve, modify (merging), delete, list filters and
-- each, count, an identity's agents and blocks (the only way to read its links: every Identity
-- comes back with agent_ids and block_ids empty); unknown link ids (the server's 500) named and not
-- retried; and attaching identities to agents (client.agents.identities) and to blocks
-- (client.blocks.identities).
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
    assert.matches("unique constraint was violated for Identity", err.message)
    assert.equal("POST", err.method)
    assert.equal("/v1/identities/", err.path)
    assert.equal(1, emu:count("POST", "/v1/identities/"))
    assert.equal(1, #client.identities:list())
  end)

  it("upsert replaces an existing identity; a new key is the server's 404, pointing to create_or_update", function()
    local a = client.identities:create{ identifier_key = "bob", name = "Bob", identity_type = "other" }
    local b = client.identities:upsert{ identifier_key = "bob", name = "Robert",
                                        properties = { { key = "age", value = 42, type = "number" } } }
    assert.equal(a.id, b.id)
    assert.equal("Robert", b.name)
    assert.equal("user", b.identity_type)
    assert.equal(42, b.properties[1].value)
    assert.equal("integer", math.type(b.properties[1].value))
    assert.equal("PUT", emu:requests()[#emu:requests()].method)
    local err = fails(client.identities.upsert, client.identities, { identifier_key = "new", name = "New" })
    assert.equal(404, err.status)
    assert.equal("PUT", err.method)
    assert.matches("only updates an existing identity: use identities:create_or_update%)$", err.message)
    assert.equal(1, #client.identities:list())
  end)

  it("create_or_update creates (POST) or, when the key exists (409), finds it by key and PATCHes it", function()
    local a, created = client.identities:create_or_update{ identifier_key = "bob", name = "Bob", identity_type = "other",
                                                           properties = { { key = "a", value = "1", type = "string" } } }
    assert.is_true(created)
    assert.equal("other", a.identity_type)
    emu:clear_requests()
    local b, created2 = client.identities:create_or_update{ identifier_key = "bob", name = "Robert",
                                                            properties = { { key = "b", value = true, type = "boolean" } } }
    assert.is_false(created2)
    assert.equal(a.id, b.id)
    assert.equal("Robert", b.name)
    assert.equal("other", b.identity_type) -- not given: kept
    assert.equal(2, #b.properties)         -- PATCH merges properties by key
    local seq = {}
    for _, r in ipairs(emu:requests()) do seq[#seq + 1] = r.method .. " " .. r.path end
    assert.same({ "POST /v1/identities/", "GET /v1/identities/", "PATCH /v1/identities/" .. a.id }, seq)
    assert.equal("identifier_key=bob", emu:requests()[2].query)
    assert.is_nil(emu:requests()[3].body.identifier_key)
    assert.equal(1, #client.identities:list())
  end)

  it("create_or_update adopts an identity whose POST was applied but answered 500", function()
    emu:faults("kind=commit-500,times=1,route=POST /v1/identities/")
    local i, created = client.identities:create_or_update{ identifier_key = "eve", name = "Eve" }
    assert.is_false(created)
    assert.equal("eve", i.identifier_key)
    assert.equal(1, #client.identities:list())
  end)

  it("find looks an identity up by its key (nil when there is none)", function()
    local a = client.identities:create{ identifier_key = "fay", name = "Fay" }
    client.identities:create{ identifier_key = "fay2", name = "Fay 2" }
    assert.equal(a.id, client.identities:find("fay").id)
    assert.is_nil(client.identities:find("nobody"))
    assert.is_nil(client.identities:find("fay", { identity_type = "org" }))
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

  it("delete returns nil; the identity is gone: 404 'Identity not found ...'", function()
    local i = client.identities:create{ identifier_key = "dan", name = "Dan" }
    assert.is_nil(client.identities:delete(i.id))
    local err = fails(client.identities.retrieve, client.identities, i.id)
    assert.equal(404, err.status)
    assert.matches("^Identity not found", err.message)
    assert.equal("404 Not Found: " .. err.message .. " (GET /v1/identities/" .. i.id .. ")", tostring(err))
    err = fails(client.identities.delete, client.identities, i.id)
    assert.equal(404, err.status)
    assert.equal("DELETE", err.method)
  end)

  it("an unknown agent or block id in the links: the server's 500, not retried, naming the id", function()
    local agent = missing_id("agent")
    local err = fails(client.identities.create, client.identities, { identifier_key = "e", name = "E", agent_ids = { agent } })
    assert.equal(500, err.status)
    assert.equal("not_found", err.code)
    assert.is_false(err.retryable)
    assert.equal("agent " .. agent .. " in agent_ids does not exist (Letta answers 500 for an unknown id there)", err.message)
    assert.equal(1, emu:count("POST", "/v1/identities/"))
    local i = client.identities:create{ identifier_key = "e", name = "E" }
    local block = missing_id("block")
    emu:clear_requests()
    err = fails(client.identities.modify, client.identities, i.id, { block_ids = { block } })
    assert.equal(500, err.status)
    assert.matches("^block " .. block:gsub("%-", "%%-") .. " in block_ids does not exist", err.message)
    assert.equal(1, emu:count("PATCH")) -- a PATCH, safe to repeat, but this 500 is an answer
    err = fails(client.identities.create_or_update, client.identities, { identifier_key = "e", name = "E", block_ids = { block } })
    assert.equal("not_found", err.code)
    assert.equal(1, #client.identities:list())
  end)

  it("a malformed id is refused before sending (the server's 422); a bad identity_type is 422", function()
    local err = fails(client.identities.retrieve, client.identities, "identity-9")
    assert.matches("bad argument #1 to 'retrieve' %(identity id expected: identity%-<uuid>, got 'identity%-9'%)", err)
    assert.equal(0, #emu:requests())
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
    assert.matches("bad argument #2 to 'modify' %(table expected", fails(I.modify, I, missing_id("identity")))
    assert.matches("bad argument #1 to 'delete' %(identity id expected", fails(I.delete, I, ""))
    assert.matches("bad argument #1 to 'agents' %(identity id expected", fails(I.agents, I))
    assert.matches("bad argument #1 to 'blocks' %(identity id expected", fails(I.blocks, I))
    assert.matches("bad argument #1 to 'list' %(identity id expected", fails(I.blocks.list, I.blocks))
    assert.matches("bad argument #1 to 'each' %(identity id expected", fails(I.agents.each, I.agents, ""))
    assert.matches("bad argument #1 to 'create_or_update' %(name expected%)", fails(I.create_or_update, I, { identifier_key = "x" }))
    assert.matches("bad argument #1 to 'find' %(identifier_key expected", fails(I.find, I))
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
    agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" } } })
    block = client.blocks:create{ label = "Persona_alice", value = "Alice" }
    ident = client.identities:create{ identifier_key = "alice", name = "Alice" }
    emu:clear_requests()
  end)

  local function ids(list)
    local t = {}
    for _, x in ipairs(list) do t[#t + 1] = x.id end
    return t
  end

  it("agents.identities:attach and detach link an identity and an agent (JSON null answers)", function()
    assert.is_nil(client.agents.identities:attach(agent.id, ident.id))
    assert.equal("/v1/agents/" .. agent.id .. "/identities/attach/" .. ident.id, emu:requests()[1].path)
    assert.equal("PATCH", emu:requests()[1].method)
    assert.same({}, client.identities:retrieve(ident.id).agent_ids) -- never filled in (Letta 0.16.8)
    assert.same({ agent.id }, ids(client.identities.agents:list(ident.id)))
    assert.equal("/v1/identities/" .. ident.id .. "/agents", emu:requests()[#emu:requests()].path)
    assert.same({ agent.id }, ids(client.identities:agents(ident.id))) -- the older name
    local n = 0
    for a in client.identities.agents:each(ident.id, { limit = 1 }) do n = n + 1 assert.equal(agent.id, a.id) end
    assert.equal(1, n)
    assert.equal(1, #client.agents:list{ identity_id = ident.id })
    assert.same({ ident.id }, client.agents:retrieve(agent.id).identity_ids)
    local a = client.agents:retrieve(agent.id, { include = { "agent.identities" } })
    assert.equal(ident.id, a.identities[1].id)
    assert.is_nil(client.agents.identities:detach(agent.id, ident.id))
    assert.same({}, client.identities.agents:list(ident.id))
    assert.same({}, client.agents:retrieve(agent.id).identity_ids)
  end)

  it("blocks.identities:attach and detach link an identity and a block (the block is returned)", function()
    local b = client.blocks.identities:attach(block.id, ident.id)
    assert.equal(block.id, b.id)
    assert.equal("/v1/blocks/" .. block.id .. "/identities/attach/" .. ident.id, emu:requests()[1].path)
    assert.same({}, client.identities:retrieve(ident.id).block_ids) -- never filled in (Letta 0.16.8)
    assert.same({ block.id }, ids(client.identities.blocks:list(ident.id)))
    assert.same({ block.id }, ids(client.identities:blocks(ident.id))) -- the older name
    assert.equal(1, #client.blocks:list{ identity_id = ident.id })
    b = client.blocks.identities:detach(block.id, ident.id)
    assert.equal(block.id, b.id)
    assert.same({}, client.identities.blocks:list(ident.id))
  end)

  it("modify appends agent_ids and block_ids (seen through the identity's lists)", function()
    local other = client.blocks:create{ label = "other", value = "o" }
    local i = client.identities:modify(ident.id, { agent_ids = { agent.id }, block_ids = { block.id } })
    assert.same({}, i.agent_ids)
    assert.same({}, i.block_ids)
    client.identities:modify(ident.id, { block_ids = { other.id } })
    assert.same({ agent.id }, ids(client.identities.agents:list(ident.id)))
    local got = ids(client.identities.blocks:list(ident.id))
    table.sort(got)
    local want = { block.id, other.id }
    table.sort(want)
    assert.same(want, got)
  end)

  it("a PATCH of identifier_key onto another identity's key is the server's 409", function()
    client.identities:create{ identifier_key = "bob", name = "Bob" }
    local c0 = emu:client{ max_retries = 0 } -- (a 409 to a PATCH is retried, as the SDKs do)
    local err = fails(c0.identities.modify, c0.identities, ident.id, { identifier_key = "bob" })
    c0:close()
    assert.equal(409, err.status)
    assert.equal("alice", client.identities:retrieve(ident.id).identifier_key)
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
