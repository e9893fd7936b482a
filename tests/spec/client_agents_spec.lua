-- client.agents against the emulator: create (with a model the server lists; names Letta would
-- answer 500 for refused first), retrieve, list/each, context, modify, delete; client.models; and
-- an agent's core-memory blocks (client.agents.blocks): list, retrieve/modify by label, attach and
-- detach with the server's idempotence and conflicts.
local emulator = require "emulator"
local letta = require "letta"
local null = letta.json.null
local fails, missing_id = emulator.fails, emulator.missing_id

local function new_agent(client, name, extra)
  local fields = { name = name or "bot", memory_blocks = { { label = "human", value = "?" }, { label = "persona", value = "helpful" } } }
  for k, v in pairs(extra or {}) do fields[k] = v end
  return client.agents:create(emulator.agent_fields(client, fields))
end

local function labels(blocks)
  local t = {}
  for i, b in ipairs(blocks) do t[i] = b.label end
  table.sort(t)
  return table.concat(t, ",")
end

describe("client.agents", function()
  local emu, client
  emulator.suite(_ENV, function(e, c) emu, client = e, c end)

  it("create returns the fully loaded agent, with its memory blocks", function()
    local a = new_agent(client, "bot", { tags = { "t1" }, metadata = { k = 1 } })
    assert.matches(emulator.id_pattern("agent"), a.id)
    assert.equal("bot", a.name)
    assert.equal("human,persona", labels(a.blocks))
    assert.equal("human,persona", labels(a.memory.blocks))
    assert.same({ "t1" }, a.tags)
    assert.equal(1, a.metadata.k)
    assert.equal("integer", math.type(a.metadata.k))
    for _, k in ipairs({ "system", "agent_type", "llm_config", "tools", "sources", "created_at" }) do
      assert.is_not_nil(a[k], k)
    end
    assert.equal(null, a.last_run_completion)
    assert.equal("/v1/agents/", emu:requests()[1].path)
  end)

  it("retrieve returns every field the server sent, relationships included (lettash is a legacy client)", function()
    local a = new_agent(client)
    local r = client.agents:retrieve(a.id)
    assert.equal(a.id, r.id)
    assert.equal("human,persona", labels(r.blocks))
    assert.truthy(emu:check_complete("/v1/agents/" .. a.id, r) > 40)
    local withq = client.agents:retrieve(a.id, { include = { "agent.blocks", "agent.tags" } })
    assert.equal("human,persona", labels(withq.blocks))
    assert.equal("include=agent.blocks&include=agent.tags", emu:requests()[#emu:requests()].query)
  end)

  it("list filters by name and tags; each follows the cursors", function()
    local a1 = new_agent(client, "alpha", { tags = { "x" } })
    new_agent(client, "beta", { tags = { "y" } })
    new_agent(client, "gamma", { tags = { "x", "y" } })
    assert.equal(3, #client.agents:list())
    local alpha = client.agents:list{ name = "alpha" }
    assert.equal(1, #alpha)
    assert.equal(a1.id, alpha[1].id)
    assert.equal(2, #client.agents:list{ tags = { "x" } })
    assert.equal(1, #client.agents:list{ tags = { "x", "y" }, match_all_tags = true })
    local names = {}
    for a in client.agents:each{ limit = 1 } do names[#names + 1] = a.name end
    table.sort(names)
    assert.same({ "alpha", "beta", "gamma" }, names)
  end)

  it("context returns the context window overview with integer counts", function()
    local a = new_agent(client)
    local c = client.agents:context(a.id)
    assert.equal("integer", math.type(c.context_window_size_max))
    assert.equal("integer", math.type(c.num_messages))
    assert.matches("<human>", c.core_memory)
    emu:check_complete("/v1/agents/" .. a.id .. "/context", c)
  end)

  it("delete answers the server's message and the agent is gone", function()
    local a = new_agent(client)
    local r = client.agents:delete(a.id)
    assert.equal("Agent id=" .. a.id .. " successfully deleted", r.message)
    local err = fails(client.agents.retrieve, client.agents, a.id)
    assert.equal(404, err.status)
    assert.equal(0, #client.agents:list())
  end)

  it("404 and 422 errors name the request; a malformed id is refused before sending", function()
    local id = missing_id("agent")
    for _, call in ipairs({
      { "retrieve", "GET", "" }, { "context", "GET", "/context" }, { "delete", "DELETE", "" },
    }) do
      local err = fails(client.agents[call[1]], client.agents, id)
      assert.equal(404, err.status, call[1])
      assert.equal("not_found", err.code)
      assert.equal(call[2], err.method)
      assert.equal("/v1/agents/" .. id .. call[3], err.path)
      assert.equal(string.format("404 Not Found: %s (%s /v1/agents/%s%s)", err.message, call[2], id, call[3]), tostring(err))
    end
    local sent = #emu:requests()
    local err = fails(client.agents.retrieve, client.agents, "agent-123")
    assert.matches("bad argument #1 to 'retrieve' %(agent id expected: agent%-<uuid>, got 'agent%-123'%)", err)
    -- only what the server refuses: its rule exactly (lower-case hex, a version-4 uuid)
    for _, bad in ipairs({ "agent-00000000-0000-4000-8000-00000000000", "agent-00000000-0000-1000-8000-000000000000",
                           "agent-00000000-0000-4000-c000-000000000000", "agent-ABCDEF00-0000-4000-8000-000000000000",
                           "block-00000000-0000-4000-8000-000000000000", " " .. id }) do
      assert.matches("agent id expected: agent%-<uuid>", fails(client.agents.retrieve, client.agents, bad))
    end
    assert.equal(sent, #emu:requests())
    err = fails(client.agents.create, client.agents, { name = 5 })
    assert.equal(422, err.status)
    assert.equal("POST", err.method)
    assert.equal("/v1/agents/", err.path)
    assert.equal(0, #client.agents:list())
  end)

  it("create without a model is the server's 400; with a model the server lists, the agent has it", function()
    local err = fails(client.agents.create, client.agents, { name = "bot" })
    assert.equal(400, err.status)
    assert.matches("Must specify either model or llm_config in request$", err.message)
    local m = emulator.models(client)
    local a = client.agents:create{ name = "bot", model = m.model, embedding = m.embedding }
    assert.equal(m.model, a.llm_config.handle)
    assert.equal(m.embedding, a.embedding_config.handle)
  end)

  it("refuses, before sending, a name Letta answers 500 for (outside ^[\\w '\\-]+$), in one line", function()
    for _, name in ipairs({ "a/b", "bot?", "tab\there", "bot \u{1F916}", "O\u{2019}Brien", "e\u{301}", "nbsp\u{A0}x",
                            "bad\255utf8" }) do
      local err = fails(client.agents.create, client.agents, emulator.agent_fields(client, { name = name }))
      assert.equal("string", type(err))
      assert.matches("bad argument #1 to 'create' %(agent name has .+: Letta allows only letters, digits, spaces", err)
      assert.no.matches("\n", err)
    end
    assert.equal(0, #emu:requests())
    -- letters and digits of any script, spaces, _ - and ' are fine (Python's \w is Unicode)
    for _, name in ipairs({ "bot's helper_2-b", "Caf\u{E9} \u{C9}mile", "\u{30ED}\u{30DC}\u{30C3}\u{30C8}",
                            "\u{41C}\u{438}\u{440}", "x\u{B2}\u{BD}" }) do
      assert.equal(name, client.agents:create(emulator.agent_fields(client, { name = name })).name)
    end
  end)

  it("raises at once on misuse, naming the argument", function()
    assert.matches("bad argument #1 to 'retrieve' %(agent id expected, got nil%)", fails(client.agents.retrieve, client.agents))
    assert.matches("bad argument #2 to 'retrieve' %(table expected, got string%)", fails(client.agents.retrieve, client.agents, missing_id("agent"), "blocks"))
    assert.matches("bad argument #1 to 'context' %(agent id expected", fails(client.agents.context, client.agents, {}))
    assert.matches("bad argument #1 to 'create' %(table expected, got string%)", fails(client.agents.create, client.agents, "bot"))
    assert.matches("bad argument #1 to 'delete' %(agent id expected", fails(client.agents.delete, client.agents, false))
    assert.matches("bad argument #2 to 'modify' %(table expected, got nil%)", fails(client.agents.modify, client.agents, missing_id("agent")))
    assert.matches("bad argument #1 to 'list' %(table expected", fails(client.agents.list, client.agents, 3))
    assert.equal(0, #emu:requests())
  end)
end)

describe("client.models", function()
  local emu, client
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { args = { "--models", "openai/gpt-4o-mini,letta/other",
                                                                       "--embedding-models", "openai/text-embedding-3-small" } })

  it("list and embedding:list return what the server serves, with handles", function()
    local handles = {}
    for _, m in ipairs(client.models:list()) do handles[#handles + 1] = m.handle end
    table.sort(handles)
    assert.same({ "letta/other", "openai/gpt-4o-mini" }, handles)
    assert.equal("openai/text-embedding-3-small", client.models.embedding:list()[1].handle)
    assert.equal("/v1/models/", emu:requests()[1].path)
    assert.equal("/v1/models/embedding", emu:requests()[2].path)
  end)

  it("pick returns the wanted handle if listed, else the first; an unlisted one is a clear error", function()
    local first = client.models:list()[1].handle
    assert.equal(first, client.models:pick())
    assert.equal("letta/other", client.models:pick("letta/other"))
    assert.equal("openai/gpt-4o-mini", client.models:pick("openai/gpt-4o-mini"))
    assert.equal("openai/text-embedding-3-small", client.models.embedding:pick())
    local err = fails(client.models.pick, client.models, "openai/gpt-5")
    assert.is_true(letta.is_error(err, "no_model"))
    assert.equal("no_model: the server does not list the model openai/gpt-5 (GET /v1/models/)", tostring(err))
    assert.matches("bad argument #1 to 'pick' %(model handle expected", fails(client.models.pick, client.models, 5))
  end)
end)

describe("client.agents.blocks (core memory)", function()
  local emu, client, agent
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { each = function()
    agent = new_agent(client)
  end })

  it("list returns the agent's blocks; retrieve reads one by label", function()
    local blocks = client.agents.blocks:list(agent.id)
    assert.equal("human,persona", labels(blocks))
    emu:check_complete("/v1/agents/" .. agent.id .. "/core-memory/blocks", blocks)
    local h = client.agents.blocks:retrieve(agent.id, "human")
    assert.equal("human", h.label)
    assert.equal("?", h.value)
    assert.equal("integer", math.type(h.limit))
    local n = 0
    for b in client.agents.blocks:each(agent.id, { limit = 1 }) do n = n + 1 end
    assert.equal(2, n)
    assert.equal(client.agents.blocks, client.agents.core_memory)
  end)

  it("modify by label (update alias) changes the block, a table value JSON-encoded", function()
    local b = client.agents.blocks:modify(agent.id, "human", { value = { name = "Bob" } })
    assert.same({ name = "Bob" }, letta.json.decode(b.value))
    local u = client.agents.blocks:update(agent.id, "persona", { value = "terse" })
    assert.equal("terse", u.value)
    assert.equal("terse", client.blocks:retrieve(u.id).value)
    assert.equal("/v1/agents/" .. agent.id .. "/core-memory/blocks/persona", emu:requests()[#emu:requests() - 1].path)
  end)

  it("404 for a label the agent does not have", function()
    local err = fails(client.agents.blocks.retrieve, client.agents.blocks, agent.id, "nope")
    assert.equal(404, err.status)
    assert.equal("No block with label 'nope' found for agent '" .. agent.id .. "'", err.message)
    assert.equal("404 Not Found: " .. err.message .. " (GET /v1/agents/" .. agent.id .. "/core-memory/blocks/nope)", tostring(err))
  end)

  it("attach returns the agent; attaching again is idempotent", function()
    local b = client.blocks:create{ label = "Persona_alice", value = "Alice" }
    local a = client.agents.blocks:attach(agent.id, b.id)
    assert.equal(agent.id, a.id)
    assert.equal("Persona_alice,human,persona", labels(a.blocks))
    a = client.agents.blocks:attach(agent.id, b.id)
    assert.equal("Persona_alice,human,persona", labels(a.blocks))
    assert.equal(3, #client.agents.blocks:list(agent.id))
    assert.equal("PATCH", emu:requests()[#emu:requests() - 1].method)
  end)

  it("attaching a second block with a label the agent has is 409", function()
    local b = client.blocks:create{ label = "human", value = "another human" }
    local err = fails(client.agents.blocks.attach, client.agents.blocks, agent.id, b.id)
    assert.equal(409, err.status)
    assert.equal("conflict", err.code)
    assert.matches("unique constraint was violated", err.message)
    assert.equal(2, #client.agents.blocks:list(agent.id))
  end)

  it("detach removes the block; detaching one that is not attached is 404", function()
    local b = client.blocks:create{ label = "extra", value = "x" }
    client.agents.blocks:attach(agent.id, b.id)
    local a = client.agents.blocks:detach(agent.id, b.id)
    assert.equal("human,persona", labels(a.blocks))
    assert.equal("x", client.blocks:retrieve(b.id).value) -- the block itself lives on
    local err = fails(client.agents.blocks.detach, client.agents.blocks, agent.id, b.id)
    assert.equal(404, err.status)
    assert.matches("No block with id '" .. b.id:gsub("%-", "%%-") .. "' found for agent", err.message)
    assert.equal("PATCH", err.method)
  end)

  it("404 on an unknown agent; a malformed one (the server's 422) and misuse raise at once", function()
    local err = fails(client.agents.blocks.list, client.agents.blocks, missing_id("agent"))
    assert.equal(404, err.status)
    err = fails(client.agents.blocks.attach, client.agents.blocks, agent.id, missing_id("block"))
    assert.equal(404, err.status)
    emu:clear_requests()
    assert.matches("bad argument #1 to 'retrieve' %(agent id expected: agent%-<uuid>, got 'agent%-bad'%)",
                   fails(client.agents.blocks.retrieve, client.agents.blocks, "agent-bad", "human"))
    assert.matches("bad argument #2 to 'attach' %(block id expected, got nil%)", fails(client.agents.blocks.attach, client.agents.blocks, agent.id))
    assert.matches("bad argument #1 to 'detach' %(agent id expected", fails(client.agents.blocks.detach, client.agents.blocks))
    assert.matches("bad argument #2 to 'retrieve' %(block label expected", fails(client.agents.blocks.retrieve, client.agents.blocks, agent.id))
    assert.matches("bad argument #3 to 'modify' %(table expected", fails(client.agents.blocks.modify, client.agents.blocks, agent.id, "human"))
    assert.matches("bad argument #1 to 'list' %(agent id expected", fails(client.agents.blocks.list, client.agents.blocks))
    assert.equal(0, #emu:requests())
  end)
end)
