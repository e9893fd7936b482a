-- The user workflows of the notes: onboard (identity of type user + persona block Persona_<name>,
-- both ids cached in the store), chat (attach the persona, send as the identity, always detach),
-- offboard and doctor. Every server write is preceded by a note of intent in the store, so a run
-- killed at any point is finished by the next run (or by doctor): nothing lost, nothing doubled,
-- nothing left attached. blocks:list is never used to find a block we use, and neither is an
-- identity's block_ids (Letta 0.16.8 returns it empty): an identity's blocks are read through
-- GET /v1/identities/{id}/blocks.
local json = require "letta.json"
local errors = require "letta.errors"
local loop = require "letta.loop"
local core = require "letta.core"
local store_mod = require "letta.store"

local type, error, pcall, ipairs, pairs, setmetatable, tostring, string, table, os, math =
  type, error, pcall, ipairs, pairs, setmetatable, tostring, string, table, os, math

local _M = {}

local Users = { __name = "letta.users" }
Users.__index = Users

local HISTORY_MAX = 20 -- exchanges kept in the persona's conversation_history
local LEASE_TTL = 600 -- at least: a chat holds an agent for 3 client timeouts + a minute at most
local FOREIGN_WAIT = 60 -- seconds a chat waits for another store's chat to leave the agent
local LATE_WINDOW = 600 -- seconds an unanswered attach is watched for (it may land that late)

local function fail(fmt, ...) error("letta.users: " .. string.format(fmt, ...), 0) end

-- ---------------------------------------------------------------------------------------------
-- Usernames: the block label Persona_<username> must match the server's ^[a-zA-Z0-9_/-]+$ and be
-- at most 50 characters; '/' is refused too, since labels are path segments in the API.

local MAX_NAME = 50 - #"Persona_"

function _M.validate(username)
  if type(username) ~= "string" or username == "" then fail("invalid username: a non-empty name is required") end
  if #username > MAX_NAME then
    fail("invalid username '%s...': at most %d characters (the block label Persona_<username> is limited to 50)",
         username:sub(1, 20), MAX_NAME)
  end
  local bad = username:match("[^A-Za-z0-9_%-][\128-\191]*") -- a whole UTF-8 character
  if bad then
    fail("invalid username '%s': only letters A-Z a-z, digits, '_' and '-' are allowed (found '%s')", username, bad)
  end
  return username
end

function _M.label(username) return "Persona_" .. username end

-- Agent ids as Letta makes them: agent-<uuid> (the server's own rule, letta.client.is_id).
-- Anything else is a typo that no server holds (it answers 422), refused here before any write.
function _M.is_agent_id(s) return require("letta.client").is_id(s, "agent") end

function _M.check_agent_id(s)
  if type(s) ~= "string" or s == "" then fail("an agent id is required") end
  if not _M.is_agent_id(s) then
    fail("invalid agent id '%s': expected the form agent-<uuid> (agent-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
         #s > 60 and s:sub(1, 57) .. "..." or s)
  end
  return s
end

-- ---------------------------------------------------------------------------------------------

-- letta.users{client=, store=} -> workflows bound to a client and a store.
function _M.new(opts)
  opts = opts or {}
  local letta = require "letta"
  local self = setmetatable({
    client = opts.client or letta.client(),
    store = opts.store or require("letta.store").open(),
  }, Users)
  return self
end

local function is_not_found(err) return errors.is(err) and err.status == 404 end


-- Calls fn(...) and returns its result, or nil when the server says 404.
local function unless_missing(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if is_not_found(res) then return nil end
  error(res, 0)
end

function Users:record(username) return self.store:user(username) end

function Users:save(rec) return self.store:put_user(rec) end

function Users:list() return self.store:users() end


local function same(a, b) -- deep equality of decoded JSON values
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function persona_value(name, preferences)
  return json.encode({ name = name, preferences = preferences or json.object(), conversation_history = json.array() })
end

-- ---------------------------------------------------------------------------------------------
-- onboard

-- The server object whose id the record caches under `field` (retrieved by id), or nil, with an
-- action noting that it vanished (and the id forgotten) when the server no longer has it.
local function cached(rec, field, resource, what, actions)
  local id = rec[field]
  if not id then return nil end
  local obj = unless_missing(resource.retrieve, resource, id)
  if not obj then
    actions[#actions + 1] = what .. " " .. id .. " vanished from the server: recreating it"
    rec[field] = nil
  end
  return obj
end

-- The identity for username: the cached one if the server still has it, else one we create, or
-- the one an interrupted run created (identifier_key is unique on the server, so a 409 means it
-- exists: look it up by key, which the identities list filters exactly).
function Users:ensure_identity(rec, actions)
  local c = self.client
  local identity = cached(rec, "identity_id", c.identities, "identity", actions)
  if identity then return identity end
  local ok, res = pcall(c.identities.create, c.identities,
                        { identifier_key = rec.username, name = rec.name, identity_type = "user" })
  if ok then
    actions[#actions + 1] = "created identity " .. res.id
  elseif errors.is(res) and (res.status == 409 or res.code == "reset" or res.code == "timeout" or res.status >= 500) then
    -- It may exist already (an interrupted run, or this very create applied before the error).
    local cause = res
    local fok
    fok, res = pcall(c.identities.find, c.identities, rec.username, { identity_type = "user" })
    -- not found: it did not land (the next run creates it); the look-up failed: the create's
    -- outcome is what stays unknown, so its error is the one to raise
    if not (fok and res) then error(cause, 0) end
    actions[#actions + 1] = "adopted identity " .. res.id .. " (already on the server: an interrupted run or a lost store)"
  else
    error(res, 0)
  end
  rec.identity_id = res.id
  self:save(rec)
  return res
end

-- The blocks linked to an identity (GET /v1/identities/{id}/blocks, every page), or {} when the
-- identity is gone. The server's own record of the link: it does not drop rows as blocks:list can.
function Users:linked_blocks(identity_id)
  if not identity_id then return {} end
  local c = self.client
  return unless_missing(function()
    local t = {}
    for block in c.identities.blocks:each(identity_id) do t[#t + 1] = block end
    table.sort(t, function(a, b) return a.id < b.id end)
    return t
  end) or {}
end

-- Blocks whose creation an interrupted run may have applied: found by the nonce we wrote in
-- their metadata before creating them, among the identity's linked blocks and through
-- blocks:list. This sweep is the only use of blocks:list, and only as a recovery net: the list is
-- unreliable (it pages, hides blocks and may drop rows), so it is scanned several times, and the
-- blocks we use are always known by id.
function Users:sweep_orphans(rec, linked)
  local found, seen = {}, {}
  local function consider(block)
    if block and not seen[block.id] and type(block.metadata) == "table"
       and block.metadata.lettash_user == rec.username and block.metadata.lettash_nonce == rec.pending_block then
      seen[block.id] = true
      found[#found + 1] = block
    end
  end
  local c = self.client
  for _, block in ipairs(linked or {}) do consider(block) end
  for _ = 1, 4 do
    for block in c.blocks:each{ label = rec.block_label } do consider(block) end
  end
  table.sort(found, function(a, b) return a.id < b.id end)
  return found
end

-- The persona block: the cached one, else the one linked to the identity (the store lost its id,
-- e.g. a new store on a server where this user was onboarded), else the one an interrupted run
-- created (found by its nonce), else a new one. linked: the identity's blocks (linked_blocks).
function Users:ensure_block(rec, identity, linked, actions)
  local c = self.client
  local block = cached(rec, "block_id", c.blocks, "block", actions)
  if block then return block end
  for _, b in ipairs(linked) do
    if b.label == rec.block_label then
      block = b
      actions[#actions + 1] = "adopted block " .. b.id .. " (already linked to identity " .. identity.id .. ")"
      break
    end
  end
  if not block and rec.pending_block then -- an earlier run was creating it: did that land?
    local orphans = self:sweep_orphans(rec, linked)
    block = orphans[1]
    if block then actions[#actions + 1] = "adopted block " .. block.id .. " (left by an interrupted run)" end
    for i = 2, #orphans do
      unless_missing(c.blocks.delete, c.blocks, orphans[i].id)
      actions[#actions + 1] = "deleted duplicate block " .. orphans[i].id
    end
  end
  if not block then
    rec.pending_block = rec.pending_block or core.nonce() -- the note of intent, before the write
    self:save(rec)
    block = c.blocks:create{
      label = rec.block_label, value = persona_value(rec.name, rec.preferences),
      description = "Persona of user " .. rec.username .. " (lettash)",
      metadata = { lettash_user = rec.username, lettash_nonce = rec.pending_block },
    }
    actions[#actions + 1] = "created block " .. block.id
  end
  rec.block_id = block.id
  self:save(rec)
  return block
end

-- Onboards the user of record rec (the stored one, or a new one): see onboard.
local function onboard_record(self, rec, opts)
  local username = rec.username
  local actions = {}
  local old_name, old_prefs = rec.name, rec.preferences
  rec.name = opts.name or rec.name or username
  if opts.preferences ~= nil then rec.preferences = opts.preferences end
  rec.block_label = _M.label(username)
  -- a rerun with a new name or preferences updates them (on the identity and in the persona)
  local renamed = rec.onboarded and opts.name ~= nil and opts.name ~= old_name
  local new_prefs = rec.onboarded and opts.preferences ~= nil and not same(opts.preferences, old_prefs)
  if not rec.onboarded then self:save(rec) end
  local identity = self:ensure_identity(rec, actions)
  local linked_blocks = self:linked_blocks(identity.id)
  local block = self:ensure_block(rec, identity, linked_blocks, actions)
  local linked = false
  for _, b in ipairs(linked_blocks) do
    if b.id == block.id then linked = true end
  end
  if not linked then
    self.client.blocks.identities:attach(block.id, identity.id)
    actions[#actions + 1] = "linked block " .. block.id .. " to identity " .. identity.id
  end
  if renamed then
    self.client.identities:modify(identity.id, { name = rec.name })
    actions[#actions + 1] = "renamed to " .. rec.name
  end
  if renamed or new_prefs then
    local ok, value = pcall(json.decode, block.value)
    if not ok or type(value) ~= "table" then value = {} end
    value.name, value.preferences = rec.name, rec.preferences or json.object()
    value.conversation_history = json.array(type(value.conversation_history) == "table" and value.conversation_history or {})
    self.client.blocks:modify(block.id, { value = json.encode(value) })
    if new_prefs then actions[#actions + 1] = "updated preferences" end
  end
  if rec.pending_block or not rec.onboarded or renamed or new_prefs then
    rec.pending_block, rec.onboarded = nil, true
    self:save(rec)
  end
  return { username = username, identity_id = rec.identity_id, block_id = rec.block_id,
           block_label = rec.block_label, changed = #actions > 0, actions = actions }
end

-- onboard(username, {name=, preferences=}) -> {username=, identity_id=, block_id=, block_label=,
-- changed=, actions=}. Idempotent and safe to rerun after a crash at any point.
function Users:onboard(username, opts)
  _M.validate(username)
  local rec = self.store:user(username)
  local ok, res = pcall(onboard_record, self, rec or { username = username }, opts or {})
  if ok then return res end
  -- Wrong settings (password, URL, port, certificate) refuse the very first write, or never reach
  -- the server: a record this run created is taken back, so that neither users.lua nor doctor
  -- --fix turns a name given up on into server objects. A record holding a server id stays. (An
  -- identity that did land anyway would be adopted by the next onboard: its identifier_key is
  -- unique.)
  if not rec and errors.not_applied(res) then
    self.store:update(function(txn)
      local r = txn:get("users", username)
      if r and not (r.identity_id or r.block_id or r.pending_block) then store_mod.delete_user(txn, username) end
    end)
  end
  error(res, 0)
end

-- ---------------------------------------------------------------------------------------------
-- Leases: one chat per agent at a time, across processes, so that no two users' personas are ever
-- attached together. A lease names its process; one whose process died is taken over.

local function lease_owner() return core.pid() .. ":" .. core.nonce() end

function Users:acquire(agent_id, timeout)
  local me = lease_owner()
  local deadline = loop.now() + (timeout or 120)
  local wait = 0.02
  while true do
    local ok = self.store:update(function(txn)
      local l = txn:get("leases", agent_id)
      if l and l.expires > os.time() and core.alive(l.pid) then return false end
      local ttl = math.max(LEASE_TTL, 3 * (self.client.timeout or 60) + 60)
      txn:put("leases", agent_id, { owner = me, pid = core.pid(), expires = os.time() + ttl })
      return true
    end)
    if ok then return me end
    if loop.now() >= deadline then
      fail("agent %s is busy with another chat (waited %gs)", agent_id, timeout or 120)
    end
    loop.sleep(wait)
    wait = math.min(wait * 2, 0.25)
  end
end

function Users:release(agent_id, me)
  self.store:update(function(txn)
    local l = txn:get("leases", agent_id)
    if l and l.owner == me then txn:del("leases", agent_id) end
  end)
end

-- Attachments recorded in the store: attachments[agent_id/block_id] = {username, pid, since,
-- unsure}. unsure: the chat ended with its attach unanswered, which may still land (up to
-- LATE_WINDOW after since): the record stays until a detach finds the persona there, or until then.
local function attachment_key(agent_id, block_id) return agent_id .. "/" .. block_id end

local function attachments_on(store, agent_id)
  return store:read(function(txn)
    local t = {}
    for key, a in txn:each("attachments", agent_id .. "/") do t[key:sub(#agent_id + 2)] = a end
    return t
  end)
end

-- Detaches block_id from agent_id: true if it was attached, false if not. Not attached is fine:
-- 404 (not attached, or no such agent or block), 422, or an agent id that is not agent-<uuid>
-- (a mistyped id recorded by an older lettash: nothing can be attached there).
local function detach_once(c, agent_id, block_id)
  if not _M.is_agent_id(agent_id) then return false end
  local ok, err = pcall(c.agents.blocks.detach, c.agents.blocks, agent_id, block_id)
  if ok then return true end
  if errors.is(err) and (err.status == 404 or err.status == 422) then return false end
  error(err, 0)
end

-- Whether a record may still see its attach land: keep it then, even though nothing is attached.
local function still_watched(a) return a.unsure and os.time() - (a.since or 0) < LATE_WINDOW end

-- Detaches what crashed chats left attached to agent_id (the caller holds the agent's lease, so
-- any recorded attachment there is stale).
function Users:repair_agent(agent_id, actions)
  for block_id, a in pairs(attachments_on(self.store, agent_id)) do
    local was = detach_once(self.client, agent_id, block_id)
    if was or not still_watched(a) then
      self.store:update(function(txn) txn:del("attachments", attachment_key(agent_id, block_id)) end)
      actions[#actions + 1] = string.format("repaired: detached %s (%s) left attached by process %s",
                                            block_id, tostring(a.username), tostring(a.pid))
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- chat

local function assistant_text(messages)
  local parts = {}
  for _, m in ipairs(messages or {}) do
    if m.message_type == "assistant_message" then
      local content = m.content
      if type(content) == "table" then
        local t = {}
        for _, p in ipairs(content) do t[#t + 1] = p.text or "" end
        content = table.concat(t)
      end
      parts[#parts + 1] = content
    end
  end
  return table.concat(parts)
end

-- Appends the exchange to the persona's conversation_history (bounded to the last HISTORY_MAX).
-- id names the exchange: a retry after a write whose answer was lost (it may have landed) finds
-- it there and does not append it twice.
function Users:remember(rec, text, reply, id)
  local c = self.client
  local block = c.blocks:retrieve(rec.block_id)
  local ok, value = pcall(json.decode, block.value)
  if not ok or type(value) ~= "table" then value = { name = rec.name } end
  local history = type(value.conversation_history) == "table" and value.conversation_history or {}
  for _, e in ipairs(history) do
    if id and type(e) == "table" and e.id == id then return end -- an earlier attempt landed
  end
  history[#history + 1] = { id = id, at = os.date("!%Y-%m-%dT%H:%M:%SZ"), user = text, agent = reply }
  while #history > HISTORY_MAX do table.remove(history, 1) end
  value.conversation_history = json.array(history)
  if value.preferences == nil then value.preferences = json.object() end
  c.blocks:modify(rec.block_id, { value = json.encode(value) })
end

-- Attaches the persona for a send; returns the agent (as the attach answers it). Not repeated
-- after a timeout: the server may still be working on that attach, and a copy that lands after
-- our detach would leave the persona on the agent. The chat then fails and its attachment stays
-- recorded, so the next chat on the agent (or doctor) detaches it, whenever it landed. 5xx
-- answers, resets and undecodable answers (the attach is idempotent) are tried again here, twice
-- at most.
local function attach_persona(c, agent_id, block_id)
  local tries = 0
  while true do
    local ok, res = pcall(c.agents.blocks.attach, c.agents.blocks, agent_id, block_id, { safe = false })
    if ok then return res end
    tries = tries + 1
    if tries > 2 or not errors.is(res) or res.code == "timeout"
       or not (res.status >= 500 or res.code == "reset" or res.code == "invalid_json") then
      error(res, 0)
    end
    loop.sleep(0.25 * tries)
  end
end

-- Detaches the persona: idempotent (not attached is fine), so tried again after any failure the
-- client does not retry itself (an undecodable answer to a detach that was applied). Returns
-- whether it was attached.
local function detach_persona(c, agent_id, block_id)
  local ok, res
  for attempt = 1, 3 do
    ok, res = pcall(detach_once, c, agent_id, block_id)
    if ok or tostring(res):match("interrupted!$") then break end
    if attempt < 3 then loop.sleep(0.25 * attempt) end
  end
  if not ok then error(res, 0) end
  return res
end

-- The Persona_* blocks other than block_id in a list of blocks or an agent (as an attach answers it).
local function other_personas(agent, block_id)
  local t, seen = {}, {}
  if type(agent) ~= "table" then return t end
  for _, list in ipairs({ agent, agent.blocks or {}, type(agent.memory) == "table" and agent.memory.blocks or {} }) do
    for _, b in ipairs(type(list) == "table" and list or {}) do
      if type(b) == "table" and type(b.label) == "string" and b.label:match("^Persona_") and b.id ~= block_id
         and not seen[b.id] then
        seen[b.id] = true
        t[#t + 1] = b
      end
    end
  end
  return t
end

-- Other personas on the agent: the ones this store recorded there (an attach of ours that landed
-- after its chat ended) are detached now; the others are returned: another store's chat (another
-- host or Unix account) holds the agent, which our lease cannot see.
function Users:foreign_personas(agent_id, agent, block_id, actions)
  local recorded, foreign = attachments_on(self.store, agent_id), {}
  for _, b in ipairs(other_personas(agent, block_id)) do
    if recorded[b.id] then
      detach_once(self.client, agent_id, b.id)
      self.store:update(function(txn) txn:del("attachments", attachment_key(agent_id, b.id)) end)
      actions[#actions + 1] = string.format("repaired: detached %s (%s), an attach that landed after its chat", b.id, b.label)
    else
      foreign[#foreign + 1] = b
    end
  end
  return foreign
end

-- The error of a chat that waited `bound` seconds for another store's persona b to go.
local function busy(agent_id, b, bound)
  fail("agent %s is in use by user '%s' (%s attached) from another lettash store (another host or Unix account); "
       .. "waited %g s; try again once that chat is over (if none is running, detach it: "
       .. "bin/lettash -l letta -e \"letta.client().agents.blocks:detach('%s', '%s')\")",
       agent_id, b.label:sub(#"Persona_" + 1), b.label, bound, agent_id, b.id)
end

-- Waits until no other store's persona is on the agent (reading its blocks), until deadline.
function Users:await_foreign(agent_id, block_id, deadline, bound, actions)
  local wait = 0.1
  while true do
    local ok, blocks = pcall(self.client.agents.blocks.list, self.client.agents.blocks, agent_id)
    if not ok and is_not_found(blocks) then
      fail("no agent %s on %s (bin/lettash scripts/agents.lua list shows the agents there)", agent_id, self.client.base_url)
    elseif not ok then
      error(blocks, 0)
    end
    local foreign = self:foreign_personas(agent_id, blocks, block_id, actions)
    if #foreign == 0 then return end
    local now = loop.now()
    if now >= deadline then busy(agent_id, foreign[1], bound) end
    loop.sleep(math.min(wait, deadline - now))
    wait = math.min(wait * 2, 1)
  end
end

-- chat(username, agent_id, text, {stream=, stream_tokens=, on_event=, timeout=, lease_timeout=,
-- foreign_timeout=}) -> {reply=, messages=, stop_reason=, usage=, actions=}. The persona block is
-- attached only for the send and detached on every path: success, API error, Lua error, timeout,
-- Ctrl-C (a killed process is repaired by the next chat on that agent, or by doctor). Chats of
-- this store on one agent take turns (a lease, waited for up to lease_timeout s, default 120); a
-- persona another store attached is waited for up to foreign_timeout s (default 60).
function Users:chat(username, agent_id, text, opts)
  _M.validate(username)
  _M.check_agent_id(agent_id)
  if type(text) ~= "string" or text == "" then fail("a message text is required") end
  opts = opts or {}
  local rec = self.store:user(username)
  if not (rec and rec.onboarded and rec.block_id and rec.identity_id) then
    fail("user '%s' is not onboarded (run onboard first)", username)
  end
  local c = self.client
  local actions = {}
  local me = self:acquire(agent_id, opts.lease_timeout)
  local key = attachment_key(agent_id, rec.block_id)
  local bound = opts.foreign_timeout or FOREIGN_WAIT
  local deadline = loop.now() + bound
  local result
  local attach -- nil: nothing attached; "sent" while the attach is unanswered; "done" once attached
  local ok, err = pcall(function()
    self:repair_agent(agent_id, actions)
    while true do
      -- Another store's chat may hold the agent: wait until its persona is gone (a 404 here, a
      -- mistyped agent, fails before anything is recorded or attached).
      self:await_foreign(agent_id, rec.block_id, deadline, bound, actions)
      -- the note of intent first: a process killed after the attach is repaired from it
      self.store:update(function(txn)
        txn:put("attachments", key, { username = username, pid = core.pid(), since = os.time() })
      end)
      attach = "sent"
      local aok, agent = pcall(attach_persona, c, agent_id, rec.block_id)
      if not aok then
        if errors.not_applied(agent) then attach = nil end -- refused or never sent: nothing is attached
        if is_not_found(agent) and not unless_missing(c.blocks.retrieve, c.blocks, rec.block_id) then
          fail("the persona block %s of user '%s' is gone from the server: run bin/lettash scripts/onboard.lua %s "
               .. "(or bin/lettash scripts/doctor.lua --fix)", rec.block_id, username, username)
        end
        error(agent, 0)
      end
      attach = "done"
      -- Checked again in the attach's answer: a chat of another store may have attached between
      -- our look and our attach. Then ours steps back and both wait (a random pause, so that two
      -- chats doing the same do not meet again).
      local foreign = self:foreign_personas(agent_id, agent, rec.block_id, actions)
      if #foreign == 0 then break end
      detach_persona(c, agent_id, rec.block_id)
      self.store:update(function(txn) txn:del("attachments", key) end)
      attach = nil
      if loop.now() >= deadline then busy(agent_id, foreign[1], bound) end
      loop.sleep(0.05 + 0.45 * math.random())
    end
    local req = { text = text, sender_id = rec.identity_id, timeout = opts.timeout,
                  stream_tokens = opts.stream and opts.stream_tokens or nil }
    if opts.stream then
      result = c.agents.messages:stream(agent_id, req, opts.on_event or function() end)
    else
      result = c.agents.messages:create(agent_id, req)
    end
  end)
  -- Always: detach, then forget the attachment, then let the next chat in.
  local dok, derr = pcall(function()
    if attach == "sent" then
      -- unanswered: it may land later, so its record stays (the next chat on the agent or doctor
      -- detaches it), marked to be watched for a while even when nothing is there yet
      local dpok, was = pcall(detach_persona, c, agent_id, rec.block_id)
      self.store:update(function(txn)
        if dpok and was then txn:del("attachments", key) return end
        local a = txn:get("attachments", key)
        if a then
          a.unsure, a.since = true, os.time()
          txn:put("attachments", key, a)
        end
      end)
      return
    end
    if attach == "done" then detach_persona(c, agent_id, rec.block_id) end
    self.store:update(function(txn) txn:del("attachments", key) end)
  end)
  self:release(agent_id, me)
  if not ok then error(err, 0) end
  if not dok then error(derr, 0) end
  local reply = assistant_text(result.messages)
  -- The history is read, changed and written back: one writer per user at a time (a lease on the
  -- user, across processes), or two chats of one user at once lose each other's exchange.
  local hok, herr = pcall(function()
    local lease = "user:" .. username
    local mine = self:acquire(lease, 30)
    local id = core.nonce()
    local rok, rerr
    for attempt = 1, 3 do -- idempotent by id: tried again after any failure (a lost answer, bad JSON)
      rok, rerr = pcall(self.remember, self, rec, text, reply, id)
      if rok or tostring(rerr):match("interrupted!$") then break end
      if attempt < 3 then loop.sleep(0.25 * attempt) end
    end
    self:release(lease, mine)
    if not rok then error(rerr, 0) end
  end)
  if not hok and tostring(herr):match("interrupted!$") then error(herr, 0) end -- Ctrl-C is not swallowed
  if not hok then actions[#actions + 1] = "conversation history not saved: " .. tostring(herr) end
  return { reply = reply, messages = result.messages, stop_reason = result.stop_reason,
           usage = result.usage, actions = actions }
end

-- ---------------------------------------------------------------------------------------------
-- offboard

-- offboard(username) -> {username=, changed=, actions=}: detaches the persona wherever a chat left
-- it, deletes the block and the identity, removes the record. Safe to rerun after a crash; a user
-- with no record (offboarded already, or never onboarded here) is nothing to do (changed = false).
function Users:offboard(username)
  _M.validate(username)
  local rec = self.store:user(username)
  if not rec then return { username = username, changed = false, actions = {} } end
  local c = self.client
  local actions = {}
  rec.offboarding = true
  self:save(rec)
  if rec.block_id then
    local attached = self.store:read(function(txn)
      local t = {}
      for key in txn:each("attachments") do
        if key:sub(-#rec.block_id - 1) == "/" .. rec.block_id then t[#t + 1] = key end
      end
      return t
    end)
    for _, key in ipairs(attached) do
      local agent_id = key:sub(1, #key - #rec.block_id - 1)
      detach_once(c, agent_id, rec.block_id)
      self.store:update(function(txn) txn:del("attachments", key) end)
      actions[#actions + 1] = "detached " .. rec.block_id .. " from " .. agent_id
    end
    unless_missing(c.blocks.delete, c.blocks, rec.block_id) -- already gone is fine: a rerun
    actions[#actions + 1] = "deleted block " .. rec.block_id
  end
  if not rec.identity_id then -- an onboarding killed while creating it: it may have landed
    local identity = c.identities:find(rec.username, { identity_type = "user" })
    rec.identity_id = identity and identity.id
  end
  if rec.pending_block then -- an onboarding killed while creating the block: delete what landed
    for _, block in ipairs(self:sweep_orphans(rec, self:linked_blocks(rec.identity_id))) do
      unless_missing(c.blocks.delete, c.blocks, block.id)
      actions[#actions + 1] = "deleted block " .. block.id .. " (left by an interrupted onboarding)"
    end
  end
  if rec.identity_id then
    unless_missing(c.identities.delete, c.identities, rec.identity_id)
    actions[#actions + 1] = "deleted identity " .. rec.identity_id
  end
  self.store:delete_user(username)
  actions[#actions + 1] = "removed local record"
  return { username = username, changed = true, actions = actions }
end

-- ---------------------------------------------------------------------------------------------
-- doctor

-- What to check when the server, or its answer to our credentials, failed: --fix cannot help.
local function setup_hint(c, err)
  local code, status = errors.is(err) and err.code, errors.is(err) and err.status or 0
  if status == 401 or status == 403 then
    return c.authenticated and "check LETTA_PASSWORD (or LETTA_API_KEY): the server refused it"
      or "set LETTA_PASSWORD (or LETTA_API_KEY): the server wants one"
  elseif code == "tls" then
    return "the TLS connection failed: for a self-signed server, point LETTA_CA_FILE (or the ca_file setting) at its certificate"
  elseif code == "resolve" then
    return "check the host name in LETTA_BASE_URL (or the base_url setting)"
  elseif code == "connect" or code == "timeout" then
    return "is the Letta server running at " .. c.base_url .. "? check LETTA_BASE_URL (or the base_url setting) and its port"
  end
  return "check the Letta server at " .. c.base_url
end

-- Interrupted imports, as letta.import reports them ({agent_id=, source=, pending=, command=}),
-- or {} when this letta.import cannot say.
local function interrupted_imports(store)
  local ok, list = pcall(function() return require("letta.import").interrupted(store) end)
  return ok and type(list) == "table" and list or {}
end

-- doctor({fix=}) -> {ok=, checks=, problems=, counts=}: the server, the credentials and the store;
-- every cached identity and block checked by id (never by listing); attachments left by killed
-- chats; interrupted onboardings, offboardings and imports. With fix, heals what it can. A failed
-- check carries a hint (what to set: --fix cannot help there); a problem fix cannot heal carries
-- one too (the command that finishes it). counts: how much was checked.
function Users:doctor(opts)
  opts = opts or {}
  local c = self.client
  local report = { checks = {}, problems = {} }
  local counts = { users = 0, identities = 0, blocks = 0, attachments = 0, leases = 0, imports = 0 }
  local function check(name, fn)
    local ok, detail = pcall(fn)
    local ch = { name = name, ok = ok, detail = ok and detail or tostring(detail) }
    if not ok then ch.hint = setup_hint(c, detail) end
    report.checks[#report.checks + 1] = ch
    return ok
  end
  local function problem(kind, username, detail, fixer, hint)
    local p = { kind = kind, username = username, detail = detail, fixed = false, fixable = fixer ~= nil, hint = hint }
    if opts.fix and fixer then
      local ok, err = pcall(fixer)
      p.fixed = ok
      if not ok then p.detail = detail .. " (fix failed: " .. tostring(err) .. ")" end
    end
    report.problems[#report.problems + 1] = p
  end
  -- (whether the server behaves as lettash expects, beyond its version: scripts/check-server.lua)
  local server_ok = check("server", function()
    local h = c.health:check()
    return c.base_url .. " (Letta " .. tostring(h.version) .. "; check its behaviour with bin/lettash scripts/check-server.lua)"
  end)
  check("configuration", function()
    return string.format("base_url %s, token %s, store %s", c.base_url, c.authenticated and "set" or "not set", self.store.path)
  end)
  local creds_ok = server_ok and check("credentials", function()
    c.identities:list{ limit = 1 }
    return "accepted"
  end)
  check("store", function()
    local info = self.store:info()
    return string.format("%s (%d users, %d KiB used)", self.store.path, #self:list(), info.used // 1024)
  end)
  if not creds_ok then
    report.ok = false
    return report
  end
  -- leftover attachments (a chat killed between attach and detach; an attach that went
  -- unanswered is watched a while, and only a problem once it is seen on the agent)
  local attachments = self.store:read(function(txn)
    local t = {}
    for key, a in txn:each("attachments") do t[#t + 1] = { key = key, a = a } end
    return t
  end)
  for _, e in ipairs(attachments) do
    counts.attachments = counts.attachments + 1
    local agent_id, block_id = e.key:match("^(.-)/(.*)$")
    local stale = not core.alive(e.a.pid or 0) or e.a.pid == core.pid()
    if stale and still_watched(e.a) and _M.is_agent_id(agent_id) then
      local on = false
      for _, b in ipairs(unless_missing(c.agents.blocks.list, c.agents.blocks, agent_id) or {}) do
        if b.id == block_id then on = true end
      end
      stale = on
    end
    if stale then
      problem("leftover_attachment", e.a.username,
              string.format("%s still recorded as attached to %s (chat process %s is gone)", block_id, agent_id, tostring(e.a.pid)),
              function()
                local me = self:acquire(agent_id, 30)
                local ok, err = pcall(self.repair_agent, self, agent_id, {})
                self:release(agent_id, me)
                if not ok then error(err, 0) end
              end)
    end
  end
  -- every cached user, checked by id
  for _, rec in ipairs(self:list()) do
    local name = rec.username
    counts.users = counts.users + 1
    if rec.offboarding then
      problem("interrupted_offboard", name, "offboarding was interrupted", function() self:offboard(name) end)
    elseif rec.pending_block or not rec.onboarded then
      problem("interrupted_onboard", name, "onboarding was interrupted", function() self:onboard(name) end)
    else
      local identity = rec.identity_id and unless_missing(c.identities.retrieve, c.identities, rec.identity_id)
      local block = rec.block_id and unless_missing(c.blocks.retrieve, c.blocks, rec.block_id)
      counts.identities, counts.blocks = counts.identities + 1, counts.blocks + 1
      if not identity then
        problem("identity_missing", name, "identity " .. tostring(rec.identity_id) .. " is gone from the server",
                function() self:onboard(name) end)
      end
      if not block then
        problem("block_missing", name, "persona block " .. tostring(rec.block_id) .. " is gone from the server",
                function() self:onboard(name) end)
      end
    end
  end
  -- stale leases
  local leases = self.store:read(function(txn)
    local t = {}
    for agent_id, l in txn:each("leases") do t[#t + 1] = { agent_id = agent_id, l = l } end
    return t
  end)
  for _, e in ipairs(leases) do
    counts.leases = counts.leases + 1
    if not core.alive(e.l.pid or 0) then
      problem("stale_lease", nil, "lease on " .. e.agent_id .. " held by process " .. tostring(e.l.pid) .. ", which is gone",
              function() self.store:update(function(txn) txn:del("leases", e.agent_id) end) end)
    end
  end
  -- interrupted imports: only their own rerun finishes them (doctor does not send passages)
  for _, imp in ipairs(interrupted_imports(self.store)) do
    counts.imports = counts.imports + 1
    problem("interrupted_import", nil,
            string.format("import of %s into %s was interrupted (%s pending): resume it with %s",
                          tostring(imp.source), tostring(imp.agent_id), tostring(imp.pending or "?"), tostring(imp.command)),
            nil, imp.command)
  end
  report.counts = counts
  report.ok = true
  for _, ch in ipairs(report.checks) do report.ok = report.ok and ch.ok end
  for _, p in ipairs(report.problems) do report.ok = report.ok and p.fixed end
  return report
end

-- The workflows as plain functions over the default client and store (from the environment):
-- users.onboard(username, opts), users.chat(...), users.offboard(...), users.doctor(...).
local default
for _, name in ipairs({ "onboard", "chat", "offboard", "doctor", "list" }) do
  _M[name] = function(...)
    default = default or _M.new()
    return default[name](default, ...)
  end
end

return setmetatable(_M, { __call = function(_, opts) return _M.new(opts) end })
