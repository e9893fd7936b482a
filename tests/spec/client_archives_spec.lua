-- client.archives (an agent's archival memory as its archive) against the emulator: list by agent,
-- retrieve, passages:create, passages:create_many (one request, one embedding call, all or
-- nothing, answered in created_at order) and passages:delete (204, no body).
local emulator = require "emulator"
local letta = require "letta"
local fails, missing_id = emulator.fails, emulator.missing_id

describe("client.archives", function()
  local emu, client, agent, A
  emulator.suite(_ENV, function(e, c)
    emu, client = e, c
    A = client.archives
  end, { each = function()
    agent = emulator.new_agent(client, { name = "bot" })
    emu:clear_requests()
  end })

  -- The agent's archive, made by its first passage through the agent route.
  local function archive_of(a)
    client.agents.passages:create(a.id, "first")
    local list = A:list{ agent_id = a.id }
    assert.equal(1, #list)
    return list[1]
  end

  it("list by agent: none before the agent's first passage, then its archive; retrieve gives the same", function()
    assert.same({}, A:list{ agent_id = agent.id })
    local archive = archive_of(agent)
    assert.matches("^archive%-", archive.id)
    assert.equal("bot's Archive", archive.name)
    assert.same(archive, A:retrieve(archive.id))
    local req = emu:requests()[1]
    assert.equal("/v1/archives/", req.path)
    assert.equal("agent_id=" .. agent.id, req.query)
  end)

  it("passages:create_many sends one request and one embedding call; the answer is in created_at order", function()
    local archive = archive_of(agent)
    local calls = emu:stats().embedding.calls
    local ps = A.passages:create_many(archive.id, {
      { text = "later", tags = { "a" }, created_at = "2024-03-01T00:00:00+00:00" },
      { text = "earlier", tags = {}, created_at = "2024-01-01T00:00:00Z", metadata = { k = 1 } },
      { text = "now" },
    })
    assert.same({ "earlier", "later", "now" }, { ps[1].text, ps[2].text, ps[3].text })
    assert.same({ {}, { "a" } }, { ps[1].tags, ps[2].tags })
    assert.same({ k = 1 }, ps[1].metadata)
    assert.equal(archive.id, ps[3].archive_id)
    assert.equal(1, emu:stats().embedding.calls - calls)
    assert.equal(1, emu:count("POST", "/v1/archives/[^/]+/passages/batch"))
    -- the passages are the agent's
    local texts = {}
    for p in client.agents.passages:each(agent.id) do texts[#texts + 1] = p.text end
    table.sort(texts)
    assert.same({ "earlier", "first", "later", "now" }, texts)
    -- the TypeScript client's name works too
    assert.equal(1, #A.passages:createMany(archive.id, { { text = "one more" } }))
  end)

  it("passages:create_many is all or nothing: one text the embedding provider refuses writes none", function()
    local archive = archive_of(agent)
    emu:config{ embed_max_tokens = 10 }
    finally(function() emu:config{ embed_max_tokens = 8192 } end)
    local e = fails(A.passages.create_many, A.passages, archive.id, { { text = "short" }, { text = string.rep("long ", 20) } })
    assert.equal(500, e.status)
    assert.equal(1, #(emu:state().passages[agent.id] or {})) -- "first" alone
  end)

  it("passages:create and passages:delete (204, no body): true, then 404", function()
    local archive = archive_of(agent)
    local p = A.passages:create(archive.id, { text = "one", tags = { "x" } })
    assert.equal("one", p.text)
    assert.is_true(A.passages:delete(archive.id, p.id))
    assert.equal(404, fails(A.passages.delete, A.passages, archive.id, p.id).status)
  end)

  it("refuses malformed ids and bad items before any request", function()
    assert.matches("bad argument #1 to 'retrieve' %(archive id expected: archive%-<uuid>, got 'nope'%)",
                   select(2, pcall(A.retrieve, A, "nope")))
    assert.matches("bad argument #2 to 'create_many' %(item 2: text expected%)",
                   select(2, pcall(A.passages.create_many, A.passages, missing_id("archive"), { { text = "a" }, { 3 } })))
    assert.matches("bad argument #2 to 'create' %(text expected%)",
                   select(2, pcall(A.passages.create, A.passages, missing_id("archive"), {})))
    assert.equal(0, #emu:requests())
    assert.equal(404, fails(A.retrieve, A, missing_id("archive")).status)
  end)
end)
