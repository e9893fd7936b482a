-- client.agents.passages (archival memory) against the emulator: create, list/each, search with
-- tags, match and top_k, delete, and modify refused with a clear error.
local emulator = require "emulator"
local letta = require "letta"
local null = letta.json.null
local fails, missing_id = emulator.fails, emulator.missing_id

describe("client.agents.passages", function()
  local emu, client, agent, P
  emulator.suite(_ENV, function(e, c)
    emu, client = e, c
    P = client.agents.passages
  end, { each = function()
    agent = emulator.new_agent(client, { name = "bot" })
    emu:clear_requests()
  end })

  local function seed()
    P:create(agent.id, { text = "Alice likes green tea", tags = { "alice", "drinks" } })
    P:create(agent.id, { text = "Bob likes black coffee", tags = { "bob", "drinks" } })
    P:create(agent.id, { text = "Alice plays chess on sundays", tags = { "alice" } })
    P:create(agent.id, { text = "The weather was cold", tags = {} })
  end

  it("create returns an array holding the new passage, every field present", function()
    local r = P:create(agent.id, { text = "remember this", tags = { "t" } })
    assert.equal(1, #r)
    local p = r[1]
    assert.matches("^passage%-", p.id)
    assert.equal("remember this", p.text)
    assert.same({ "t" }, p.tags)
    assert.equal(null, p.embedding)
    assert.equal(false, p.is_deleted)
    assert.is_string(p.created_at)
    local req = emu:requests()[1]
    assert.equal("POST", req.method)
    assert.equal("/v1/agents/" .. agent.id .. "/archival-memory", req.path)
    assert.same({ text = "remember this", tags = { "t" } }, req.body)
    -- a plain string is the text; created_at passes through
    local s = P:create(agent.id, "just text")
    assert.equal("just text", s[1].text)
    local d = P:create(agent.id, { text = "dated", created_at = "2025-01-02T03:04:05Z" })
    assert.matches("^2025%-01%-02T03:04:05", d[1].created_at)
    emu:check_complete("/v1/agents/" .. agent.id .. "/archival-memory?limit=1", P:list(agent.id, { limit = 1 }))
  end)

  it("list pages oldest first with after/limit, filters with search, and each reads them all", function()
    seed()
    local all = P:list(agent.id)
    assert.equal(4, #all)
    assert.equal("Alice likes green tea", all[1].text)
    local two = P:list(agent.id, { limit = 2 })
    assert.equal(2, #two)
    local next2 = P:list(agent.id, { limit = 2, after = two[2].id })
    assert.equal("Alice plays chess on sundays", next2[1].text)
    local desc = P:list(agent.id, { ascending = false, limit = 1 })
    assert.equal("The weather was cold", desc[1].text)
    local found = P:list(agent.id, { search = "coffee" })
    assert.equal(1, #found)
    assert.equal("Bob likes black coffee", found[1].text)
    local n = 0
    for _ in P:each(agent.id, { limit = 3 }) do n = n + 1 end
    assert.equal(4, n)
    assert.equal(client.agents.passages, client.agents.archival_memory)
  end)

  it("each with ascending = false walks newest first with before, never repeating an item", function()
    for i = 1, 7 do P:create(agent.id, "note " .. i) end
    emu:clear_requests()
    local texts = {}
    for p in P:each(agent.id, { ascending = false, limit = 2 }) do texts[#texts + 1] = p.text end
    assert.same({ "note 7", "note 6", "note 5", "note 4", "note 3", "note 2", "note 1" }, texts)
    local reqs = emu:requests()
    assert.equal(5, #reqs) -- 4 pages, then the empty one
    for i = 2, #reqs do
      assert.matches("before=passage%-", reqs[i].query)
      assert.is_nil(reqs[i].query:match("after="))
    end
    -- (an after-cursor would not do: the server reads it as "created later" in either order)
    local newest = P:list(agent.id, { ascending = false, limit = 2 })
    assert.equal("note 7", P:list(agent.id, { ascending = false, limit = 2, after = newest[2].id })[1].text)
    -- ascending: oldest first, with after
    texts = {}
    for p in P:each(agent.id, { limit = 3 }) do texts[#texts + 1] = p.text end
    assert.same({ "note 1", "note 2", "note 3", "note 4", "note 5", "note 6", "note 7" }, texts)
  end)

  it("search applies tags after picking the top_k nearest (Letta 0.16.8), and a blank query finds nothing", function()
    P:create(agent.id, { text = "apple one", tags = { "mine" } })
    P:create(agent.id, { text = "apple two" })
    assert.equal(0, P:search(agent.id, { query = "apple", tags = { "mine" }, top_k = 1 }).count)
    assert.equal(1, P:search(agent.id, { query = "apple", tags = { "mine" }, top_k = 2 }).count)
    assert.equal(0, P:search(agent.id, { query = "  ", top_k = 10 }).count)
  end)

  it("search returns {results, count} best first; top_k bounds it", function()
    seed()
    local r = P:search(agent.id, { query = "alice chess" })
    assert.equal("integer", math.type(r.count))
    assert.equal(#r.results, r.count)
    assert.equal("Alice plays chess on sundays", r.results[1].content)
    assert.is_string(r.results[1].timestamp)
    assert.same({ "alice" }, r.results[1].tags)
    local one = P:search(agent.id, { query = "likes", top_k = 1 })
    assert.equal(1, one.count)
    assert.equal("query=likes&top_k=1", emu:requests()[#emu:requests()].query)
    local s = P:search(agent.id, "weather")
    assert.equal("The weather was cold", s.results[1].content)
  end)

  it("search filters by tags with match = 'any' or 'all' (sent as tag_match_mode)", function()
    seed()
    local any = P:search(agent.id, { query = "likes", tags = { "alice", "bob" }, match = "any", top_k = 10 })
    assert.equal(3, any.count)
    local q = emu:requests()[#emu:requests()].query
    assert.matches("tag_match_mode=any", q)
    assert.matches("tags=alice&tags=bob", q)
    local all = P:search(agent.id, { query = "likes", tags = { "alice", "drinks" }, match = "all", top_k = 10 })
    assert.equal(1, all.count)
    assert.equal("Alice likes green tea", all.results[1].content)
    assert.matches("tag_match_mode=all", emu:requests()[#emu:requests()].query)
  end)

  it("search filters by start_datetime and end_datetime", function()
    P:create(agent.id, { text = "old note", created_at = "2020-05-01T12:00:00Z" })
    P:create(agent.id, { text = "new note", created_at = "2024-05-01T12:00:00Z" })
    local r = P:search(agent.id, { query = "note", start_datetime = "2023-01-01", top_k = 10 })
    assert.equal(1, r.count)
    assert.equal("new note", r.results[1].content)
    r = P:search(agent.id, { query = "note", end_datetime = "2021-01-01T00:00:00Z", top_k = 10 })
    assert.equal(1, r.count)
    assert.equal("old note", r.results[1].content)
  end)

  it("delete removes a passage; deleting it again is 404", function()
    local p = P:create(agent.id, "to forget")[1]
    local r = P:delete(agent.id, p.id)
    assert.equal("Memory id=" .. p.id .. " successfully deleted", r.message)
    assert.equal(0, #P:list(agent.id))
    local err = fails(P.delete, P, agent.id, p.id)
    assert.equal(404, err.status)
    assert.equal("DELETE", err.method)
    assert.equal("/v1/agents/" .. agent.id .. "/archival-memory/" .. p.id, err.path)
  end)

  it("modify raises a clear 'unsupported' error (removed from the server)", function()
    local p = P:create(agent.id, "immutable")[1]
    local err = fails(P.modify, P, agent.id, p.id, { text = "changed" })
    assert.truthy(letta.is_error(err, "unsupported"))
    assert.equal("PATCH", err.method)
    assert.matches("cannot modify passages", err.message)
    assert.matches("delete it and create a new one", tostring(err))
    assert.equal(P.modify, P.update)
    assert.equal("immutable", P:list(agent.id)[1].text)
  end)

  it("404 for an unknown agent (but its list is just empty: Letta 0.16.8 does not check); a malformed one is refused before sending", function()
    local id = missing_id("agent")
    local err = fails(P.create, P, id, "x")
    assert.equal(404, err.status)
    assert.equal("404 Not Found: " .. err.message .. " (POST /v1/agents/" .. id .. "/archival-memory)", tostring(err))
    assert.same({}, P:list(id))
    assert.matches("bad argument #1 to 'search' %(agent id expected: agent%-<uuid>, got 'agent%-1'%)", fails(P.search, P, "agent-1", "x"))
    assert.equal(422, fails(P.create, P, agent.id, { text = "x", tags = "not-a-list" }).status)
  end)

  it("raises at once on misuse, naming the argument", function()
    assert.matches("bad argument #1 to 'create' %(agent id expected, got nil%)", fails(P.create, P))
    assert.matches("bad argument #2 to 'create' %(table expected, got nil%)", fails(P.create, P, agent.id))
    assert.matches("bad argument #2 to 'create' %(text expected%)", fails(P.create, P, agent.id, { tags = { "x" } }))
    assert.matches("bad argument #2 to 'search' %(query expected%)", fails(P.search, P, agent.id, { tags = { "x" } }))
    assert.matches("bad argument #2 to 'search' %(match must be \"any\" or \"all\"%)",
                   fails(P.search, P, agent.id, { query = "q", match = "some" }))
    assert.matches("bad argument #2 to 'delete' %(passage id expected", fails(P.delete, P, agent.id))
    assert.matches("bad argument #3 to 'modify' %(table expected", fails(P.modify, P, agent.id, "passage-x"))
    assert.matches("bad argument #1 to 'list' %(agent id expected", fails(P.list, P))
    assert.equal(0, #emu:requests())
  end)
end)
