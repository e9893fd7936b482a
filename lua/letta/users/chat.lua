-- chat: attach the user's persona to the agent, send as the user's identity, always detach, then
-- append the exchange to the persona's conversation_history. The attachment is noted in the store
-- before the attach, so a chat killed at any point is repaired by the next chat on that agent (or
-- by doctor): nothing left attached.
local errors = require "letta.errors"
local loop = require "letta.loop"
local retry = require "letta.retry"
local core = require "letta.core"
local base = require "letta.users.base"
local records = require "letta.users.records"
local persona = require "letta.users.persona"

local type, error, pcall, ipairs, tostring, table, math = type, error, pcall, ipairs, tostring, table, math

local Users, fail, unless_missing = base.Users, base.fail, base.unless_missing

local _M = {}

local FOREIGN_WAIT = 60 -- seconds a chat waits for another store's chat to leave the agent

-- The text of a message's content: a string, or a list of parts {text=}.
function _M.content_text(content)
  if type(content) ~= "table" then return content end
  local t = {}
  for _, p in ipairs(content) do t[#t + 1] = p.text or "" end
  return table.concat(t)
end

local function assistant_text(messages)
  local parts = {}
  for _, m in ipairs(messages or {}) do
    if m.message_type == "assistant_message" then parts[#parts + 1] = _M.content_text(m.content) end
  end
  return table.concat(parts)
end

-- Appends the exchange to the persona's conversation_history (bounded to the last HISTORY_MAX).
-- id names the exchange: a retry after a write whose answer was lost (it may have landed) finds
-- it there and does not append it twice.
function Users:remember(rec, text, reply, id)
  local c = self.client
  local block = c.blocks:retrieve(rec.block_id)
  local value = records.decode_persona(block.value) or { name = rec.name }
  local history = type(value.conversation_history) == "table" and value.conversation_history or {}
  if not records.add_exchange(history, id, text, reply) then return end -- an earlier attempt landed
  c.blocks:modify(rec.block_id, { value = records.encode_persona(value, history) })
end

-- Attaches the persona of chat state s ({rec=, agent_id=, deadline=, bound=, actions=}), noting
-- it in the store first; s.attach says how far it got: nil (nothing attached), "sent" (the attach
-- is unanswered) or "done". Returns the agent as the attach answers it.
local function attach(self, s)
  local c, rec = self.client, s.rec
  -- the note of intent first: a process killed after the attach is repaired from it
  self.store:update(function(txn) records.put_attachment(txn, s.agent_id, rec.block_id, rec.username) end)
  s.attach = "sent"
  local ok, agent = pcall(persona.attach, c, s.agent_id, rec.block_id)
  if not ok then
    if errors.not_applied(agent) then s.attach = nil end -- refused or never sent: nothing is attached
    if base.is_not_found(agent) and not unless_missing(c.blocks.retrieve, c.blocks, rec.block_id) then
      fail("the persona block %s of user '%s' is gone from the server: run bin/lettash scripts/onboard.lua %s "
           .. "(or bin/lettash scripts/doctor.lua --fix)", rec.block_id, rec.username, rec.username)
    end
    error(agent, 0)
  end
  s.attach = "done"
  return agent
end

-- With the agent's lease held: repairs the agent, attaches the persona (once no other store's
-- persona is there) and sends. Returns the send's result.
local function send(self, s, text, opts)
  local c, rec = self.client, s.rec
  self:repair_agent(s.agent_id, s.actions)
  while true do
    -- Another store's chat may hold the agent: wait until its persona is gone (a 404 here, a
    -- mistyped agent, fails before anything is recorded or attached).
    self:await_foreign(s.agent_id, rec.block_id, s.deadline, s.bound, s.actions)
    local agent = attach(self, s)
    -- Checked again in the attach's answer: a chat of another store may have attached between
    -- our look and our attach. Then ours steps back and both wait (a random pause, so that two
    -- chats doing the same do not meet again).
    local foreign = self:foreign_personas(s.agent_id, agent, rec.block_id, s.actions)
    if #foreign == 0 then break end
    persona.detach(c, s.agent_id, rec.block_id)
    persona.forget(self.store, s.agent_id, rec.block_id)
    s.attach = nil
    if loop.now() >= s.deadline then persona.busy(s.agent_id, foreign[1], s.bound) end
    loop.sleep(0.05 + 0.45 * math.random())
  end
  local req = { text = text, sender_id = rec.identity_id, timeout = opts.timeout,
                stream_tokens = opts.stream and opts.stream_tokens or nil }
  if opts.stream then return c.agents.messages:stream(s.agent_id, req, opts.on_event or function() end) end
  return c.agents.messages:create(s.agent_id, req)
end

-- Detaches the persona, then forgets the attachment.
local function detach(self, s)
  local c, agent_id, block_id = self.client, s.agent_id, s.rec.block_id
  if s.attach == "sent" then
    -- unanswered: it may land later, so its record stays (the next chat on the agent or doctor
    -- detaches it), marked to be watched for a while even when nothing is there yet
    local ok, was = pcall(persona.detach, c, agent_id, block_id)
    self.store:update(function(txn)
      if ok and was then return records.del_attachment(txn, agent_id, block_id) end
      records.mark_unsure(txn, agent_id, block_id)
    end)
    return
  end
  if s.attach == "done" then persona.detach(c, agent_id, block_id) end
  persona.forget(self.store, agent_id, block_id)
end

-- Appends the exchange to the history, holding the user's lease: the history is read, changed and
-- written back, so two chats of one user at once would lose each other's exchange.
local function save_history(self, rec, text, reply)
  local lease = records.user_lease(rec.username)
  local mine = self:acquire(lease, 30)
  local id = core.nonce()
  -- idempotent by id: tried again after any failure (a lost answer, bad JSON)
  local rok, rerr = pcall(retry.call, function() return self:remember(rec, text, reply, id) end, persona.AGAIN)
  self:release(lease, mine)
  if not rok then error(rerr, 0) end
end

-- The user's record, checked for a chat.
local function chat_record(self, username, agent_id, text)
  base.validate(username)
  base.check_agent_id(agent_id)
  if type(text) ~= "string" or text == "" then fail("a message text is required") end
  local rec = self.store:user(username)
  if not (rec and rec.onboarded and rec.block_id and rec.identity_id) then
    fail("user '%s' is not onboarded (run onboard first)", username)
  end
  return rec
end

-- chat(username, agent_id, text, {stream=, stream_tokens=, on_event=, timeout=, lease_timeout=,
-- foreign_timeout=}) -> {reply=, messages=, stop_reason=, usage=, actions=}. The persona block is
-- attached only for the send and detached on every path: success, API error, Lua error, timeout,
-- Ctrl-C (a killed process is repaired by the next chat on that agent, or by doctor). Chats of
-- this store on one agent take turns (a lease, waited for up to lease_timeout s, default 120); a
-- persona another store attached is waited for up to foreign_timeout s (default 60).
function Users:chat(username, agent_id, text, opts)
  local rec = chat_record(self, username, agent_id, text)
  opts = opts or {}
  local actions = {}
  local me = self:acquire(agent_id, opts.lease_timeout)
  local bound = opts.foreign_timeout or FOREIGN_WAIT
  local s = { rec = rec, agent_id = agent_id, bound = bound, deadline = loop.now() + bound, actions = actions }
  local ok, result = pcall(send, self, s, text, opts)
  -- Always: detach, then forget the attachment, then let the next chat in.
  local dok, derr = pcall(detach, self, s)
  self:release(agent_id, me)
  if not ok then error(result, 0) end
  if not dok then error(derr, 0) end
  local reply = assistant_text(result.messages)
  local hok, herr = pcall(save_history, self, rec, text, reply)
  if not hok and errors.is(herr, "interrupted") then error(herr, 0) end -- Ctrl-C is not swallowed
  if not hok then actions[#actions + 1] = "conversation history not saved: " .. tostring(herr) end
  return { reply = reply, messages = result.messages, stop_reason = result.stop_reason,
           usage = result.usage, actions = actions }
end

return _M
