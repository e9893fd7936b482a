-- The records the workflows keep in the store, in one place: what each namespace's keys and values
-- look like. The workflows (letta.users, letta.import) and the tests that set up or inspect a
-- store read and write them only through these functions. User records themselves (namespace
-- "users" and its reverse lookups) are letta.store's: Store:user, Store:put_user, Store:users.
--   attachments  "<agent_id>/<block_id>" = {username=, pid=, since=, unsure=}
--   leases       "<agent_id>" or "user:<username>" = {owner=, pid=, expires=}
--   imports      "<agent_id>/<position or c:hash>" = {s = "pending"|"done", id=, line=, r=}
--                (an item of the journal) and "run:<hash>" = {agent_id=, source=, args=, pid=,
--                started=, done=, error=, finished=} (a run of letta.import)
local core = require "letta.core"
local json = require "letta.json"

local os, type, ipairs, pcall, table = os, type, ipairs, pcall, table

local _M = {}

-- ---------------------------------------------------------------------------------------------
-- Attachments: a persona a chat attached (or was attaching) to an agent. unsure: the chat ended
-- with its attach unanswered, which may still land (up to LATE_WINDOW after since): the record
-- stays until a detach finds the persona there, or until then.

_M.LATE_WINDOW = 600 -- seconds an unanswered attach is watched for (it may land that late)

local function attachment_key(agent_id, block_id) return agent_id .. "/" .. block_id end

-- put_attachment(txn, agent_id, block_id, username [, pid [, since]]): the note of intent written
-- before an attach (pid and since default to this process and now).
function _M.put_attachment(txn, agent_id, block_id, username, pid, since)
  txn:put("attachments", attachment_key(agent_id, block_id),
          { username = username, pid = pid or core.pid(), since = since or os.time() })
end

function _M.attachment(txn, agent_id, block_id) return txn:get("attachments", attachment_key(agent_id, block_id)) end

function _M.del_attachment(txn, agent_id, block_id) txn:del("attachments", attachment_key(agent_id, block_id)) end

-- Marks the attachment as unsure from now on (its attach went unanswered).
function _M.mark_unsure(txn, agent_id, block_id)
  local a = _M.attachment(txn, agent_id, block_id)
  if a then
    a.unsure, a.since = true, os.time()
    txn:put("attachments", attachment_key(agent_id, block_id), a)
  end
end

-- The attachments recorded on agent_id: {[block_id] = attachment}.
function _M.attachments_on(txn, agent_id)
  local t = {}
  for key, a in txn:each("attachments", agent_id .. "/") do t[key:sub(#agent_id + 2)] = a end
  return t
end

-- Every attachment: a list of {agent_id=, block_id=, a=} (block_id given: only that block's).
function _M.attachments(txn, block_id)
  local t = {}
  for key, a in txn:each("attachments") do
    local agent_id, b = key:match("^(.-)/(.*)$")
    if not block_id or b == block_id then t[#t + 1] = { agent_id = agent_id, block_id = b, a = a } end
  end
  return t
end

-- Whether an attachment may still see its attach land: kept then, even though nothing is attached.
function _M.still_watched(a) return a.unsure and os.time() - (a.since or 0) < _M.LATE_WINDOW end

-- ---------------------------------------------------------------------------------------------
-- Leases: one holder at a time of an agent (a chat) or of a user's history, across processes. A
-- lease names its process; one whose process died (or past expires) is free.

function _M.lease_owner() return core.pid() .. ":" .. core.nonce() end

function _M.lease(txn, key) return txn:get("leases", key) end

-- put_lease(txn, key, owner, ttl [, pid]): pid defaults to this process.
function _M.put_lease(txn, key, owner, ttl, pid)
  txn:put("leases", key, { owner = owner, pid = pid or core.pid(), expires = os.time() + ttl })
end

function _M.del_lease(txn, key) txn:del("leases", key) end

function _M.lease_held(l) return l ~= nil and l.expires > os.time() and core.alive(l.pid) end

-- Every lease: a list of {key=, l=}.
function _M.leases(txn)
  local t = {}
  for key, l in txn:each("leases") do t[#t + 1] = { key = key, l = l } end
  return t
end

function _M.user_lease(username) return "user:" .. username end

-- ---------------------------------------------------------------------------------------------
-- The import journal: an item is "pending" (noted before it is sent; r names the run) until it is
-- "done" (with the passage id), or its entry is deleted (certainly not sent).

function _M.item_key(agent_id, suffix) return agent_id .. "/" .. suffix end

function _M.item(txn, key) return txn:get("imports", key) end

function _M.put_pending(txn, key, line, run_id) txn:put("imports", key, { s = "pending", line = line, r = run_id }) end

function _M.put_done(txn, key, line, passage_id) txn:put("imports", key, { s = "done", id = passage_id, line = line }) end

function _M.del_item(txn, key) txn:del("imports", key) end

function _M.is_done(j) return j ~= nil and j.s == "done" end

function _M.is_pending(j) return j ~= nil and j.s == "pending" end

local RUN_PREFIX = "run:"

-- each_item(txn [, agent_id]) -> iterator of key, entry over the journal (an agent's, or all),
-- without the run records.
function _M.each_item(txn, agent_id)
  local next_entry = txn:each("imports", agent_id and agent_id .. "/" or nil)
  return function()
    while true do
      local key, j = next_entry()
      if key == nil or key:sub(1, #RUN_PREFIX) ~= RUN_PREFIX then return key, j end
    end
  end
end

function _M.put_run(txn, run_id, run) txn:put("imports", RUN_PREFIX .. run_id, run) end

-- each_run(txn) -> iterator of run_id, run.
function _M.each_run(txn)
  local next_entry = txn:each("imports", RUN_PREFIX)
  return function()
    local key, r = next_entry()
    if key then return key:sub(#RUN_PREFIX + 1), r end
  end
end

-- ---------------------------------------------------------------------------------------------
-- The persona block's value (JSON, on the server): {name=, preferences=, conversation_history=
-- {{id=, at=, user=, agent=}...}}, the history bounded to the last HISTORY_MAX exchanges.

_M.HISTORY_MAX = 20

-- The value of a new persona.
function _M.persona_value(name, preferences)
  return json.encode({ name = name, preferences = preferences or json.object(), conversation_history = json.array() })
end

-- The persona's value decoded (a table), or nil when it is not a JSON object.
function _M.decode_persona(text)
  local ok, value = pcall(json.decode, text)
  if ok and type(value) == "table" then return value end
  return nil
end

-- The persona's value as JSON, with its history (a list) and preferences in their JSON types.
function _M.encode_persona(value, history)
  value.conversation_history = json.array(history)
  if value.preferences == nil then value.preferences = json.object() end
  return json.encode(value)
end

-- Appends an exchange to history (a list) unless an entry with this id is there already (a retry
-- of a write whose answer was lost); returns whether it appended.
function _M.add_exchange(history, id, text, reply)
  for _, e in ipairs(history) do
    if id and type(e) == "table" and e.id == id then return false end
  end
  history[#history + 1] = { id = id, at = os.date("!%Y-%m-%dT%H:%M:%SZ"), user = text, agent = reply }
  while #history > _M.HISTORY_MAX do table.remove(history, 1) end
  return true
end

return _M
