-- client.agents.messages:stream against the emulator's SSE: whole messages and token deltas,
-- pings skipped, `event: error` raised, the callback form, and closing the request when the caller
-- leaves the loop early.
local emulator = require "emulator"
local letta = require "letta"
local http = require "letta.http"
local fails, missing_id = emulator.fails, emulator.missing_id

local function collect(iter, s, c, req)
  local evs = {}
  for ev in iter, s, c, req do evs[#evs + 1] = ev end
  return evs
end

local function types(evs)
  local t = {}
  for i, ev in ipairs(evs) do t[i] = ev.message_type end
  return table.concat(t, ",")
end

describe("client.agents.messages:stream", function()
  local emu, client, agent
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { each = function()
    agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" } } })
    emu:clear_requests()
  end })

  it("yields whole messages, then stop_reason and usage; the ping is skipped", function()
    local evs = collect(client.agents.messages:stream(agent.id, "hello"))
    assert.equal("reasoning_message,assistant_message,stop_reason,usage_statistics", types(evs))
    assert.equal("[blocks: human] [sender: none] you said: hello", evs[2].content)
    assert.equal("end_turn", evs[3].stop_reason)
    assert.equal("integer", math.type(evs[4].total_tokens))
    assert.equal(letta.json.null, evs[2].sender_id)
    -- on the gate-free route, with no streaming flag and pings left on (the emulator sends one)
    local req = emu:wait_requests(1)[1]
    assert.equal("/v1/agents/" .. agent.id .. "/messages/stream", req.path)
    assert.is_nil(req.body.streaming)
    assert.is_nil(req.body.include_pings)
    assert.equal(200, req.status)
  end)

  it("with stream_tokens = true yields deltas sharing one id that add up to the reply", function()
    local evs = collect(client.agents.messages:stream(agent.id, { text = "one two three", stream_tokens = true }))
    local reply, ids, n = {}, {}, 0
    for _, ev in ipairs(evs) do
      assert.is_not.equal("ping", ev.message_type)
      if ev.message_type == "assistant_message" then
        n = n + 1
        reply[#reply + 1] = ev.content
        ids[ev.id] = true
      end
    end
    assert.truthy(n > 3)
    local count = 0
    for _ in pairs(ids) do count = count + 1 end
    assert.equal(1, count)
    assert.equal("[blocks: human] [sender: none] you said: one two three", table.concat(reply))
    assert.equal("stop_reason", evs[#evs - 1].message_type)
    assert.equal(true, emu:wait_requests(1)[1].body.stream_tokens)
  end)

  it("the callback form calls back for each event and returns {messages, stop_reason, usage}", function()
    local seen = {}
    local r = client.agents.messages:stream(agent.id, "cb", function(ev) seen[#seen + 1] = ev.message_type end)
    assert.equal("reasoning_message,assistant_message,stop_reason,usage_statistics", table.concat(seen, ","))
    assert.equal(2, #r.messages)
    assert.equal("assistant_message", r.messages[2].message_type)
    assert.equal("end_turn", r.stop_reason.stop_reason)
    assert.equal("usage_statistics", r.usage.message_type)
  end)

  it("sends identity_id as sender_id on the stream too", function()
    local ident = client.identities:create{ identifier_key = "bob", name = "Bob" }
    local r = client.agents.messages:stream(agent.id, { text = "hey", identity_id = ident.id }, function() end)
    assert.equal("[blocks: human] [sender: " .. ident.id .. "] you said: hey", r.messages[#r.messages].content)
    assert.equal(ident.id, emu:wait_requests(2)[2].body.messages[1].sender_id)
  end)

  it("raises `event: error` as a letta.Error with code stream_error, after the events before it", function()
    emu:faults("kind=stream-error,times=1,route=POST /v1/agents/*/messages/**")
    local seen = {}
    local ok, err = pcall(function()
      for ev in client.agents.messages:stream(agent.id, "boom") do seen[#seen + 1] = ev.message_type end
    end)
    assert.is_false(ok)
    assert.truthy(letta.is_error(err, "stream_error"))
    assert.equal("POST", err.method)
    assert.equal("/v1/agents/" .. agent.id .. "/messages/stream", err.path)
    assert.is_string(err.message)
    assert.truthy(#err.message > 0)
    assert.equal("error_message", letta.json.decode(err.body).message_type)
    assert.equal(false, err.retryable)
    assert.matches("^stream_error: ", tostring(err))
    assert.equal("reasoning_message,stop_reason", table.concat(seen, ","))
    emu:wait_requests(1)
    assert.equal(1, emu:count("POST"))
    assert.equal(0, http.inflight())
    -- the callback form raises it too
    emu:faults("kind=stream-error,times=1,route=POST /v1/agents/*/messages/**")
    err = fails(client.agents.messages.stream, client.agents.messages, agent.id, "boom", function() end)
    assert.truthy(letta.is_error(err, "stream_error"))
  end)

  it("leaving the for loop early closes the request", function()
    local n = 0
    local iter, s, c, req = client.agents.messages:stream(agent.id, { text = "a b c d e f g h", stream_tokens = true })
    assert.is_true(req:streaming())
    for _ in iter, s, c, req do
      n = n + 1
      if n == 2 then break end
    end
    assert.equal(2, n)
    assert.equal("letta.http.Request (closed)", tostring(req)) -- its parser and unread events are gone
    assert.has_error(function() req:events() end, "attempt to use a closed HTTP request")
    assert.equal(0, http.inflight())
    -- and the client goes on working
    assert.equal("ok", client.health:check().status)
  end)

  it("an error before the first event is a normal letta.Error (404)", function()
    local id = missing_id("agent")
    local err = fails(client.agents.messages.stream, client.agents.messages, id, "hi")
    assert.equal(404, err.status)
    assert.equal("POST", err.method)
    assert.equal("/v1/agents/" .. id .. "/messages/stream", err.path)
    assert.equal(1, emu:count("POST")) -- a POST is not repeated
  end)

  it("a connection reset mid-stream raises a transport letta.Error", function()
    emu:faults("kind=reset-body,times=1,route=POST /v1/agents/*/messages/stream")
    local seen = 0
    local ok, err = pcall(function()
      for _ in client.agents.messages:stream(agent.id, "cut") do seen = seen + 1 end
    end)
    assert.is_false(ok)
    assert.truthy(letta.is_error(err))
    assert.equal(0, err.status)
    assert.equal("reset", err.code)
    assert.equal("POST", err.method)
    assert.equal(1, emu:count("POST"))
    assert.equal(0, http.inflight())
  end)

  it("streams inside tasks, several at once", function()
    local results = letta.gather{
      function() return client.agents.messages:stream(agent.id, "first", function() end) end,
      function() return #collect(client.agents.messages:stream(agent.id, { text = "second", stream_tokens = true })) end,
      function() return client.health:check().status end,
    }
    assert.matches("you said: first", results[1].messages[2].content)
    assert.truthy(results[2] > 4)
    assert.equal("ok", results[3])
  end)
end)
