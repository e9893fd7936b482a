-- client.blocks against the emulator over real HTTP: create, retrieve, modify/update, list, each,
-- delete, and the errors they raise.
local emulator = require "emulator"
local letta = require "letta"
local null = letta.json.null
local fails, missing_id = emulator.fails, emulator.missing_id

describe("client.blocks", function()
  local emu, client
  emulator.suite(_ENV, function(e, c) emu, client = e, c end)

  it("create returns the block with every field the server sent, integers as integers, nulls as letta.json.null", function()
    local b = client.blocks:create{ label = "human", value = "Alice likes tea", description = "who", tags = { "a" } }
    assert.matches(emulator.id_pattern("block"), b.id)
    assert.equal("human", b.label)
    assert.equal("Alice likes tea", b.value)
    assert.equal("who", b.description)
    assert.same({ "a" }, b.tags)
    assert.equal(100000, b.limit)
    assert.equal("integer", math.type(b.limit))
    assert.equal(false, b.read_only)
    assert.equal(null, b.template_name)
    assert.equal(null, b.project_id)
    assert.is_table(b.metadata)
    local r = client.blocks:retrieve(b.id)
    assert.same(b, r)
    assert.truthy(emu:check_complete("/v1/blocks/" .. b.id, r) >= 15)
  end)

  it("create sends the exact path /v1/blocks/ with a JSON body, and JSON-encodes a table value", function()
    local b = client.blocks:create{ label = "Persona_alice", value = { name = "Alice", preferences = { "tea" } } }
    local decoded = letta.json.decode(b.value)
    assert.equal("Alice", decoded.name)
    assert.same({ "tea" }, decoded.preferences)
    local reqs = emu:requests()
    assert.equal(1, #reqs)
    assert.equal("POST", reqs[1].method)
    assert.equal("/v1/blocks/", reqs[1].path)
    assert.equal(200, reqs[1].status)
    assert.equal("lettash/" .. letta._VERSION, reqs[1].headers["user-agent"])
    assert.equal("application/json", reqs[1].headers["content-type"])
    assert.equal("Persona_alice", reqs[1].body.label)
  end)

  it("an empty tags table goes out as a JSON array", function()
    local b = client.blocks:create{ label = "l", value = "v", tags = {} }
    assert.same({}, b.tags)
    assert.matches('"body":{[^}]*"tags":%[%]', emu:requests_text())
  end)

  it("modify changes only the given fields; update is an alias", function()
    local b = client.blocks:create{ label = "human", value = "old", description = "d" }
    local m = client.blocks:modify(b.id, { value = "new" })
    assert.equal("new", m.value)
    assert.equal("d", m.description)
    assert.equal("human", m.label)
    local u = client.blocks:update(b.id, { value = { n = 1 } })
    assert.same({ n = 1 }, letta.json.decode(u.value))
    assert.equal(u.value, client.blocks:retrieve(b.id).value)
    local reqs = emu:requests()
    assert.equal("PATCH", reqs[#reqs - 1].method)
    assert.equal("/v1/blocks/" .. b.id, reqs[#reqs - 1].path)
  end)

  it("list filters by label and returns a bare array of blocks", function()
    client.blocks:create{ label = "a", value = "1" }
    client.blocks:create{ label = "b", value = "2" }
    client.blocks:create{ label = "a", value = "3" }
    local all = client.blocks:list()
    assert.equal(3, #all)
    local only_a = client.blocks:list{ label = "a" }
    assert.equal(2, #only_a)
    for _, b in ipairs(only_a) do assert.equal("a", b.label) end
    assert.equal(1, #client.blocks:list{ label = "a", limit = 1 })
    emu:check_complete("/v1/blocks/?label=a", only_a)
  end)

  it("each follows the cursors over 250 blocks (pages of 50) to the end", function()
    local tasks = {}
    for i = 1, 250 do
      tasks[i] = function() return client.blocks:create{ label = "bulk", value = tostring(i) }.id end
    end
    local ids = letta.gather(tasks)
    client.blocks:create{ label = "other", value = "x" }
    emu:clear_requests()
    local seen, n = {}, 0
    for b in client.blocks:each{ label = "bulk" } do
      assert.equal("bulk", b.label)
      assert.is_nil(seen[b.id], "a block came twice")
      seen[b.id] = true
      n = n + 1
    end
    assert.equal(250, n)
    for _, id in ipairs(ids) do assert.truthy(seen[id]) end
    local pages = emu:requests()
    assert.equal(6, #pages) -- five full pages and the empty one
    assert.equal("label=bulk", pages[1].query)
    for i = 2, #pages do assert.matches("after=block%-", pages[i].query) end
  end)

  it("each ends at once on an empty list", function()
    local n = 0
    for _ in client.blocks:each() do n = n + 1 end
    assert.equal(0, n)
  end)

  it("delete returns nil (JSON null) and the block is gone", function()
    local b = client.blocks:create{ label = "x", value = "y" }
    assert.is_nil(client.blocks:delete(b.id))
    local err = fails(client.blocks.retrieve, client.blocks, b.id)
    assert.equal(404, err.status)
  end)

  it("raises a letta.Error on 404 with status, code, message, body, method, path and retryable", function()
    local id = missing_id("block")
    local err = fails(client.blocks.retrieve, client.blocks, id)
    assert.truthy(letta.is_error(err))
    assert.truthy(letta.is_error(err, "not_found"))
    assert.equal(404, err.status)
    assert.equal("not_found", err.code)
    assert.matches("not found", err.message)
    assert.is_string(err.body)
    assert.equal(err.message, letta.json.decode(err.body).detail)
    assert.equal("GET", err.method)
    assert.equal("/v1/blocks/" .. id, err.path)
    assert.equal(false, err.retryable)
    assert.matches("^404 Not Found: .*not found.* %(GET /v1/blocks/" .. id:gsub("%-", "%%-") .. "%)$", tostring(err))
    -- 404s are not retried
    assert.equal(1, emu:count("GET", "/v1/blocks/" .. id))
  end)

  it("404 on modify and delete of an unknown block", function()
    local id = missing_id("block")
    local err = fails(client.blocks.modify, client.blocks, id, { value = "v" })
    assert.equal(404, err.status)
    assert.equal("PATCH", err.method)
    err = fails(client.blocks.delete, client.blocks, id)
    assert.equal(404, err.status)
    assert.equal("DELETE", err.method)
    assert.matches("^404 Not Found: .*%(DELETE /v1/blocks/block%-0+%-", tostring(err))
  end)

  it("refuses a malformed id before sending (the server's 422); 422 on a bad body", function()
    local err = fails(client.blocks.retrieve, client.blocks, "not-a-block-id")
    assert.matches("bad argument #1 to 'retrieve' %(block id expected: block%-<uuid>, got 'not%-a%-block%-id'%)", err)
    assert.equal(0, #emu:requests())
    err = fails(client.blocks.create, client.blocks, { label = "x", value = "v", limit = "lots" })
    assert.equal(422, err.status)
    assert.equal("POST", err.method)
    assert.equal("/v1/blocks/", err.path)
    assert.matches("limit", err.message)
    assert.equal(false, err.retryable)
    assert.equal(0, #client.blocks:list())
  end)

  it("raises at once, naming the argument, on misuse (and sends nothing)", function()
    local cases = {
      { function() client.blocks:retrieve(nil) end, "bad argument #1 to 'retrieve' %(block id expected, got nil%)" },
      { function() client.blocks:retrieve("") end, "bad argument #1 to 'retrieve' %(block id expected, got empty string%)" },
      { function() client.blocks:retrieve(42) end, "bad argument #1 to 'retrieve' %(block id expected, got number%)" },
      { function() client.blocks:create() end, "bad argument #1 to 'create' %(table expected, got nil%)" },
      { function() client.blocks:create{ value = "v" } end, "bad argument #1 to 'create' %(label expected%)" },
      { function() client.blocks:create{ label = "l" } end, "bad argument #1 to 'create' %(value expected" },
      { function() client.blocks:modify(missing_id("block")) end, "bad argument #2 to 'modify' %(table expected, got nil%)" },
      { function() client.blocks:modify(nil, {}) end, "bad argument #1 to 'modify'" },
      { function() client.blocks:delete() end, "bad argument #1 to 'delete' %(block id expected, got nil%)" },
      { function() client.blocks:list("label") end, "bad argument #1 to 'list' %(table expected, got string%)" },
      { function() client.blocks:each(5) end, "bad argument #1 to 'each' %(table expected, got number%)" },
    }
    for _, c in ipairs(cases) do
      local err = fails(c[1])
      assert.is_string(err)
      assert.matches(c[2], err)
    end
    assert.equal(0, #emu:requests())
  end)
end)
