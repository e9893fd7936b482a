-- client.runs against the emulator: an async run waited for with runs:wait, its messages, the
-- list and each (with Letta 0.16.8's inverted cursors), failures and timeouts.
local emulator = require "emulator"
local letta = require "letta"
local null = letta.json.null
local fails = emulator.fails

describe("client.runs", function()
  local emu, client, agent
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { args = { "--run-delay-ms", "200" }, each = function()
    agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" } } })
  end })

  it("wait polls an async run until it completes and returns it", function()
    local run = client.agents.messages:create_async(agent.id, "in the background")
    assert.equal("created", run.status)
    local t0 = require("letta.http").now()
    local done = client.runs:wait(run.id, { interval = 0.05, timeout = 10 })
    local took = require("letta.http").now() - t0
    assert.equal(run.id, done.id)
    assert.equal("completed", done.status)
    assert.equal("end_turn", done.stop_reason)
    assert.is_string(done.completed_at)
    assert.equal(null, done.total_duration_ns) -- filled in by the list only (run_manager.py:list_runs)
    assert.equal("integer", math.type(client.runs:list{ agent_id = agent.id }[1].total_duration_ns))
    assert.truthy(took >= 0.15 and took < 3, took)
    assert.truthy(emu:count("GET", "/v1/runs/" .. run.id) >= 2)
    emu:check_complete("/v1/runs/" .. run.id, client.runs:retrieve(run.id))
  end)

  it("messages lists the run's messages oldest first", function()
    local run = client.agents.messages:create_async(agent.id, "tell me")
    client.runs:wait(run.id, { interval = 0.05 })
    local msgs = client.runs:messages(run.id)
    assert.equal(3, #msgs)
    assert.equal("user_message", msgs[1].message_type)
    assert.equal("tell me", msgs[1].content)
    assert.equal("reasoning_message", msgs[2].message_type)
    assert.equal("assistant_message", msgs[3].message_type)
    assert.equal("[blocks: human] [sender: none] you said: tell me", msgs[3].content)
    for _, m in ipairs(msgs) do assert.equal(run.id, m.run_id) end
    assert.equal(1, #client.runs:messages(run.id, { limit = 1 }))
    assert.equal("/v1/runs/" .. run.id .. "/messages", emu:requests()[#emu:requests()].path)
  end)

  it("retrieve reads a run; list filters by agent", function()
    local other = emulator.new_agent(client, { name = "other" })
    local r1 = client.agents.messages:create_async(agent.id, "one")
    local r2 = client.agents.messages:create_async(other.id, "two")
    local got = client.runs:retrieve(r1.id)
    assert.equal(r1.id, got.id)
    assert.equal(agent.id, got.agent_id)
    assert.equal(null, got.callback_url)
    local mine = client.runs:list{ agent_id = agent.id }
    assert.equal(1, #mine)
    assert.equal(r1.id, mine[1].id)
    -- each: newest first; the next page is asked with before (Letta 0.16.8 reads the runs list's
    -- cursors the other way round: run_manager_helper.py:_apply_pagination_async)
    emu:clear_requests()
    local ids = {}
    for r in client.runs:each{ limit = 1 } do ids[#ids + 1] = r.id end
    assert.same({ r2.id, r1.id }, ids)
    assert.equal("before=" .. r2.id .. "&limit=1", emu:requests()[2].query)
    ids = {}
    for r in client.runs:each{ limit = 1, order = "asc" } do ids[#ids + 1] = r.id end
    assert.same({ r1.id, r2.id }, ids)
    client.runs:wait(r1.id, { interval = 0.05 })
    client.runs:wait(r2.id, { interval = 0.05 })
  end)

  it("wait returns a failed run as it is (stop_reason error)", function()
    emu:faults("kind=run-fail,times=1,route=POST /v1/agents/*/messages/async")
    local run = client.agents.messages:create_async(agent.id, "fail please")
    local done = client.runs:wait(run.id, { interval = 0.05 })
    assert.equal("failed", done.status)
    assert.equal("error", done.stop_reason)
    assert.is_not_nil(done.metadata.error)
  end)

  it("wait raises a timeout letta.Error when the run does not finish in time", function()
    emu:config{ run_delay_ms = 5000 }
    local run = client.agents.messages:create_async(agent.id, "slow")
    local err = fails(client.runs.wait, client.runs, run.id, { timeout = 0.3, interval = 0.05 })
    emu:config{ run_delay_ms = 200 }
    assert.truthy(letta.is_error(err, "timeout"))
    assert.equal(0, err.status)
    assert.equal("GET", err.method)
    assert.equal("/v1/runs/" .. run.id, err.path)
    assert.matches("run still %a+ after 0.3s", err.message)
  end)

  it("404 for an unknown run; a malformed id (the server's 400) and misuse raise at once", function()
    local id = emulator.missing_id("run")
    local err = fails(client.runs.retrieve, client.runs, id)
    assert.equal(404, err.status)
    assert.equal("404 Not Found: " .. err.message .. " (GET /v1/runs/" .. id .. ")", tostring(err))
    err = fails(client.runs.messages, client.runs, id)
    assert.equal(404, err.status)
    err = fails(client.runs.wait, client.runs, id, { interval = 0.01 })
    assert.equal(404, err.status)
    emu:clear_requests()
    assert.matches("bad argument #1 to 'retrieve' %(run id expected: run%-<uuid>, got 'run%-does%-not%-exist'%)",
                   fails(client.runs.retrieve, client.runs, "run-does-not-exist"))
    assert.matches("bad argument #1 to 'retrieve' %(run id expected, got nil%)", fails(client.runs.retrieve, client.runs))
    assert.matches("bad argument #1 to 'wait' %(run id expected", fails(client.runs.wait, client.runs, 7))
    assert.matches("bad argument #2 to 'wait' %(table expected, got number%)", fails(client.runs.wait, client.runs, emulator.missing_id("run"), 5))
    assert.matches("bad argument #1 to 'messages' %(run id expected", fails(client.runs.messages, client.runs))
    assert.equal(0, #emu:requests())
  end)
end)
