-- Many requests at once from one Lua thread: letta.spawn + letta.gather against an emulator that
-- answers every request 100 ms late; the requests overlap instead of queueing.
local emulator = require "emulator"
local letta = require "letta"
local http = require "letta.http"

describe("concurrent requests (emulator at --latency-ms 100)", function()
  local emu, client
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { args = { "--latency-ms", "100" } })

  it("32 requests in tasks finish in well under 32 x 100 ms, results in order", function()
    local ids = {}
    emu:config{ latency_ms = 0 } -- (quick set-up)
    for i = 1, 32 do ids[i] = client.blocks:create{ label = "c", value = "v" .. i }.id end
    emu:config{ latency_ms = 100 }
    local t0 = http.now()
    local tasks = {}
    for i = 1, 32 do tasks[i] = letta.spawn(function() return client.blocks:retrieve(ids[i]) end) end
    local results = letta.gather(tasks)
    local took = http.now() - t0
    assert.equal(32, #results)
    for i = 1, 32 do
      assert.equal(ids[i], results[i].id)
      assert.equal("v" .. i, results[i].value)
    end
    assert.truthy(took < 1.5, string.format("took %.2f s", took))
    assert.truthy(took >= 0.1, string.format("took %.2f s", took))
  end)

  it("gather takes functions too, and a task can make several requests in a row", function()
    local t0 = http.now()
    local results = letta.gather{
      function() return client.health:check().status end,
      function()
        local b = client.blocks:create{ label = "seq", value = "1" }
        return client.blocks:modify(b.id, { value = "2" }).value
      end,
      function() return #client.blocks:list() end,
    }
    assert.equal("ok", results[1])
    assert.equal("2", results[2])
    assert.is_number(results[3])
    assert.truthy(http.now() - t0 < 0.6) -- two round trips in the longest task, not four
  end)

  it("gather raises the first error after every task has finished", function()
    local finished = 0
    local ok, err = pcall(letta.gather, {
      function() client.health:check(); finished = finished + 1 end,
      function() return client.blocks:retrieve(emulator.missing_id("block")) end,
      function() client.health:check(); finished = finished + 1 end,
    })
    assert.is_false(ok)
    assert.equal(404, err.status)
    assert.equal(2, finished)
  end)

  it("a task's wait returns its results; a plain call outside any task still works", function()
    local t = letta.spawn(function(a, b) return client.health:check().status, a + b end, 1, 2)
    local s, sum = t:wait()
    assert.equal("ok", s)
    assert.equal(3, sum)
    assert.equal("ok", client.health:check().status)
    assert.equal(0, http.inflight())
  end)

  it("letta.sleep inside tasks lets the others run", function()
    local order = {}
    letta.gather{
      function() letta.sleep(0.15); order[#order + 1] = "slept" end,
      function() client.health:check(); order[#order + 1] = "request" end,
    }
    assert.same({ "request", "slept" }, order)
  end)
end)
