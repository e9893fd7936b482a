-- client.agents.messages against the emulator: create (a string or a request table), sending on
-- behalf of an identity (sender_id on every message), list/each with Letta 0.16.8's paging, empty
-- messages refused before sending, create_async, cancel, and modify refused with a clear error.
local emulator = require "emulator"
local letta = require "letta"
local null = letta.json.null
local fails, missing_id = emulator.fails, emulator.missing_id

local function by_type(messages, t)
  local out = {}
  for _, m in ipairs(messages) do if m.message_type == t then out[#out + 1] = m end end
  return out
end

describe("client.agents.messages", function()
  local emu, client, agent
  emulator.suite(_ENV, function(e, c) emu, client = e, c end, { each = function()
    agent = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" }, { label = "persona", value = "p" } } })
    emu:clear_requests()
  end })

  it("create with a string sends one user message and returns {messages, stop_reason, usage}", function()
    local r = client.agents.messages:create(agent.id, "hello there")
    assert.equal(2, #r.messages)
    assert.equal("reasoning_message", r.messages[1].message_type)
    local reply = r.messages[2]
    assert.equal("assistant_message", reply.message_type)
    assert.equal("[blocks: human,persona] [sender: none] you said: hello there", reply.content)
    assert.equal(null, reply.sender_id)
    assert.matches(emulator.id_pattern("message"), reply.id)
    assert.equal("stop_reason", r.stop_reason.message_type)
    assert.equal("end_turn", r.stop_reason.stop_reason)
    assert.equal("usage_statistics", r.usage.message_type)
    assert.equal("integer", math.type(r.usage.total_tokens))
    assert.equal("integer", math.type(r.usage.step_count))
    assert.equal(null, r.usage.cached_input_tokens)
    assert.equal(null, r.logprobs)
    local req = emu:requests()[1]
    assert.equal("POST", req.method)
    assert.equal("/v1/agents/" .. agent.id .. "/messages", req.path)
    assert.same({ { role = "user", content = "hello there" } }, req.body.messages)
    assert.is_nil(req.body.streaming)
  end)

  it("create with a request table passes LettaRequest fields through", function()
    local r = client.agents.messages:create(agent.id, {
      messages = { { role = "user", content = { { type = "text", text = "parts" } } } },
      max_steps = 3, use_assistant_message = true,
    })
    assert.equal("assistant_message", r.messages[#r.messages].message_type)
    local body = emu:requests()[1].body
    assert.equal(3, body.max_steps)
    assert.equal("parts", body.messages[1].content[1].text)
  end)

  it("identity_id (or sender_id) becomes sender_id on every message and reaches the agent", function()
    local ident = client.identities:create{ identifier_key = "alice", name = "Alice" }
    local r = client.agents.messages:create(agent.id, { text = "hi", identity_id = ident.id })
    assert.equal("[blocks: human,persona] [sender: " .. ident.id .. "] you said: hi", r.messages[#r.messages].content)
    local body = emu:requests()[#emu:requests()].body
    assert.equal(ident.id, body.messages[1].sender_id)
    assert.is_nil(body.identity_id)
    assert.is_nil(body.sender_id)
    assert.is_nil(body.text)
    -- several messages: each one carries it (unless it names its own sender)
    client.agents.messages:create(agent.id, { sender_id = ident.id, messages = {
      { role = "user", content = "one" }, { role = "user", content = "two" },
      { role = "user", content = "three", sender_id = "agent-other" },
    } })
    body = emu:requests()[#emu:requests()].body
    assert.equal(ident.id, body.messages[1].sender_id)
    assert.equal(ident.id, body.messages[2].sender_id)
    assert.equal("agent-other", body.messages[3].sender_id)
    -- stored with the user message
    local users = by_type(client.agents.messages:list(agent.id, { order = "asc" }), "user_message")
    assert.equal(ident.id, users[1].sender_id)
  end)

  -- The conversation as (message_type, text) pairs, in the order given.
  local function convo(messages)
    local t = {}
    for _, m in ipairs(messages) do
      local text = type(m.content) == "string" and m.content or m.reasoning or ""
      t[#t + 1] = m.message_type .. ":" .. (text:match("you said: (.*)$") or (m.message_type == "user_message" and text) or "")
    end
    return t
  end
  local function all_of(iter)
    local t = {}
    for m in iter do t[#t + 1] = m end
    return t
  end

  it("list returns the newest messages oldest first (Letta 0.16.8's order=desc), asc the oldest", function()
    client.agents.messages:create(agent.id, "first")
    client.agents.messages:create(agent.id, "second")
    local msgs = client.agents.messages:list(agent.id)
    assert.same({ "system_message:", "user_message:first", "reasoning_message:", "assistant_message:first",
                  "user_message:second", "reasoning_message:", "assistant_message:second" }, convo(msgs))
    -- limit counts stored messages: the reasoning and the reply of a step are one, sharing an id
    local newest = client.agents.messages:list(agent.id, { limit = 2 })
    assert.same({ "user_message:second", "reasoning_message:", "assistant_message:second" }, convo(newest))
    assert.equal(newest[2].id, newest[3].id)
    local asc = client.agents.messages:list(agent.id, { order = "asc", limit = 2 })
    assert.same({ "system_message:", "user_message:first" }, convo(asc))
    emu:check_complete("/v1/agents/" .. agent.id .. "/messages?order=asc&limit=2", asc)
    -- after = newer than, before = older than, whatever the order
    assert.same({ "user_message:second", "reasoning_message:", "assistant_message:second" },
                convo(client.agents.messages:list(agent.id, { after = msgs[4].id })))
    assert.same({ "system_message:", "user_message:first" },
                convo(client.agents.messages:list(agent.id, { before = msgs[3].id, order = "asc" })))
    local err = fails(client.agents.messages.list, client.agents.messages, agent.id, { before = missing_id("message") })
    assert.equal(404, err.status)
  end)

  it("each walks back from the newest with before, every message once, newest first", function()
    for i = 1, 5 do client.agents.messages:create(agent.id, "m" .. i) end
    local all = client.agents.messages:list(agent.id, { limit = 100 })
    assert.equal(16, #all) -- the system message, then 5 x (user, reasoning, reply)
    emu:clear_requests()
    local walked = all_of(client.agents.messages:each(agent.id, { limit = 2 }))
    local want = {}
    for i = #all, 1, -1 do want[#want + 1] = all[i] end
    assert.same(convo(want), convo(walked))
    local reqs = emu:requests()
    assert.is_nil(reqs[1].query:match("before"))
    for i = 2, #reqs do assert.matches("before=message%-", reqs[i].query) end
    assert.equal(7, #reqs) -- 11 stored messages, 2 a page, then the empty page
  end)

  it("each with order asc (or after = id) walks forward with after, oldest first", function()
    for i = 1, 3 do client.agents.messages:create(agent.id, "m" .. i) end
    local all = client.agents.messages:list(agent.id)
    local walked = all_of(client.agents.messages:each(agent.id, { order = "asc", limit = 3 }))
    assert.same(convo(all), convo(walked))
    -- from a cursor: everything newer than the first user message, oldest first
    local since = all_of(client.agents.messages:each(agent.id, { after = all[2].id, limit = 1 }))
    assert.same({ "reasoning_message:", "assistant_message:m1", "user_message:m2", "reasoning_message:",
                  "assistant_message:m2", "user_message:m3", "reasoning_message:", "assistant_message:m3" }, convo(since))
    -- order desc with after: newest first, down to the cursor
    local back = all_of(client.agents.messages:each(agent.id, { order = "desc", after = all[5].id, limit = 1 }))
    assert.same({ "assistant_message:m3", "reasoning_message:", "user_message:m3", "assistant_message:m2",
                  "reasoning_message:" }, convo(back))
  end)

  it("each filters include_return_message_types itself (a filtered page may be empty mid-way)", function()
    for i = 1, 4 do client.agents.messages:create(agent.id, "m" .. i) end
    emu:clear_requests()
    local replies = all_of(client.agents.messages:each(agent.id, { limit = 1, include_return_message_types = { "user_message" } }))
    assert.same({ "user_message:m4", "user_message:m3", "user_message:m2", "user_message:m1" }, convo(replies))
    for _, r in ipairs(emu:requests()) do assert.is_nil(r.query:match("include_return_message_types")) end
  end)

  it("refuses an empty message before sending it (the server's 400 'Message content is empty')", function()
    local M = client.agents.messages
    for _, req in ipairs({ "", { text = "" }, { input = "" }, { messages = { { role = "user", content = {} } } },
                           { messages = { { role = "user", content = "ok" }, { role = "user", content = "" } } } }) do
      local err = fails(M.create, M, agent.id, req)
      assert.matches("bad argument #2 to 'create' %(empty message[ %d]*: Letta refuses a message with no content%)", err)
    end
    assert.matches("empty message", fails(M.stream, M, agent.id, ""))
    assert.matches("empty message", fails(M.create_async, M, agent.id, { text = "" }))
    assert.equal(0, #emu:requests())
    -- a blank message is not empty: the server takes it
    assert.equal("end_turn", M:create(agent.id, " ").stop_reason.stop_reason)
  end)

  it("create_async returns a created run; cancel cancels the unfinished ones", function()
    emu:config{ run_delay_ms = 5000 }
    local run = client.agents.messages:create_async(agent.id, "later")
    assert.matches("^run%-", run.id)
    assert.equal("created", run.status)
    assert.equal(true, run.background)
    assert.equal(agent.id, run.agent_id)
    assert.equal(null, run.completed_at)
    assert.equal("/v1/agents/" .. agent.id .. "/messages/async", emu:requests()[#emu:requests()].path)
    assert.is_nil(client.agents.messages.createAsync) -- the camelCase alias is gone (#14)
    local res = client.agents.messages:cancel(agent.id, { run.id })
    assert.equal("cancelled", res[run.id])
    assert.same({ run.id }, emu:requests()[#emu:requests()].body.run_ids)
    assert.equal("cancelled", client.runs:retrieve(run.id).status)
    emu:config{ run_delay_ms = 200 }
  end)

  it("cancel with nothing to cancel is the server's 409", function()
    local c0 = emu:client{ max_retries = 0 }
    local err = fails(c0.agents.messages.cancel, c0.agents.messages, agent.id)
    assert.equal(409, err.status)
    assert.equal("POST", err.method)
    assert.equal("/v1/agents/" .. agent.id .. "/messages/cancel", err.path)
    assert.matches('"body":{}', emu:requests_text())
    c0:close()
  end)

  it("modify raises a clear 'unsupported' error (the server answers 405)", function()
    local r = client.agents.messages:create(agent.id, "x")
    local mid = r.messages[1].id
    local err = fails(client.agents.messages.modify, client.agents.messages, agent.id, mid,
                      { message_type = "reasoning_message", reasoning = "edited" })
    assert.truthy(letta.is_error(err, "unsupported"))
    assert.equal(405, err.status)
    assert.equal("PATCH", err.method)
    assert.equal("/v1/agents/" .. agent.id .. "/messages/" .. mid, err.path)
    assert.matches("does not allow editing messages", err.message)
    assert.matches("^405 Method Not Allowed: this server does not allow editing messages", tostring(err))
    assert.equal(false, err.retryable)
    assert.equal(1, emu:count("PATCH"))
    assert.equal(client.agents.messages.modify, client.agents.messages.update)
  end)

  it("404 for an unknown agent, 422 for a bad request; a malformed id is refused before sending", function()
    local id = missing_id("agent")
    local err = fails(client.agents.messages.create, client.agents.messages, id, "hi")
    assert.equal(404, err.status)
    assert.equal("404 Not Found: " .. err.message .. " (POST /v1/agents/" .. id .. "/messages)", tostring(err))
    err = fails(client.agents.messages.list, client.agents.messages, id)
    assert.equal(404, err.status)
    local sent = #emu:requests()
    err = fails(client.agents.messages.list, client.agents.messages, "agent-1")
    assert.matches("bad argument #1 to 'list' %(agent id expected: agent%-<uuid>, got 'agent%-1'%)", err)
    assert.equal(sent, #emu:requests())
    err = fails(client.agents.messages.create, client.agents.messages, agent.id, { text = "x", max_steps = "many" })
    assert.equal(422, err.status)
    assert.matches("max_steps", err.message)
    assert.equal(1, #client.agents.messages:list(agent.id)) -- its system message only
  end)

  it("raises at once on misuse, naming the argument", function()
    local M = client.agents.messages
    assert.matches("bad argument #1 to 'create' %(agent id expected, got nil%)", fails(M.create, M, nil, "hi"))
    assert.matches("bad argument #2 to 'create' %(table expected, got nil%)", fails(M.create, M, agent.id))
    assert.matches("bad argument #2 to 'create' %(text, messages or input expected%)", fails(M.create, M, agent.id, {}))
    assert.matches("bad argument #2 to 'create' %(text must be a string%)", fails(M.create, M, agent.id, { text = 5 }))
    assert.matches("bad argument #2 to 'create_async'", fails(M.create_async, M, agent.id, 5))
    assert.matches("bad argument #2 to 'modify' %(message id expected", fails(M.modify, M, agent.id))
    assert.matches("bad argument #3 to 'modify' %(table expected", fails(M.modify, M, agent.id, missing_id("message")))
    assert.matches("bad argument #1 to 'cancel' %(agent id expected", fails(M.cancel, M))
    assert.matches("bad argument #1 to 'list' %(agent id expected", fails(M.list, M))
    assert.matches("bad argument #2 to 'stream' %(text, messages or input expected%)", fails(M.stream, M, agent.id, {}))
    assert.equal(0, #emu:requests())
  end)
end)
