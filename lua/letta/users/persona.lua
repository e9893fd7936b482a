-- The persona on an agent, for the length of a chat: the agent's lease (one chat per agent at a
-- time, across processes, so that no two users' personas are ever attached together), the attach
-- and the detach, and the repair of what killed chats, late attaches and other stores left there.
local errors = require "letta.errors"
local loop = require "letta.loop"
local retry = require "letta.retry"
local base = require "letta.users.base"
local records = require "letta.users.records"

local type, error, pcall, ipairs, pairs, tostring, string, math =
  type, error, pcall, ipairs, pairs, tostring, string, math

local Users, fail = base.Users, base.fail

local _M = {}

local LEASE_TTL = 600 -- at least: a chat holds an agent for 3 client timeouts + a minute at most

-- How the workflows repeat a step that is idempotent (a detach, a history write named by its id):
-- after any failure but Ctrl-C, three tries in all, 0.25 s then 0.5 s apart.
_M.AGAIN = { attempts = 3, base = 0.25, cap = 0.5, jitter = 0, when = function() return true end }

-- The pauses between looks at a busy lease (0.02 s doubling up to 0.25 s) and at another store's
-- persona (0.1 s doubling up to 1 s).
local LEASE_WAIT = { base = 0.02, cap = 0.25, jitter = 0 }
local FOREIGN_WAIT = { base = 0.1, cap = 1, jitter = 0 }

-- ---------------------------------------------------------------------------------------------
-- Leases

-- acquire(key, timeout) -> owner: waits (up to timeout s, default 120) for the lease on key (an
-- agent id, or records.user_lease(username)); one whose process died is taken over.
function Users:acquire(key, timeout)
  local me = records.lease_owner()
  local deadline = loop.now() + (timeout or 120)
  local n = 0
  while true do
    local ok = self.store:update(function(txn)
      if records.lease_held(records.lease(txn, key)) then return false end
      records.put_lease(txn, key, me, math.max(LEASE_TTL, 3 * (self.client.timeout or 60) + 60))
      return true
    end)
    if ok then return me end
    if loop.now() >= deadline then
      fail("agent %s is busy with another chat (waited %gs)", key, timeout or 120)
    end
    loop.sleep(retry.delay(n, nil, LEASE_WAIT))
    n = n + 1
  end
end

function Users:release(key, me)
  self.store:update(function(txn)
    local l = records.lease(txn, key)
    if l and l.owner == me then records.del_lease(txn, key) end
  end)
end

-- ---------------------------------------------------------------------------------------------
-- Attach and detach

function _M.attachments_on(store, agent_id)
  return store:read(function(txn) return records.attachments_on(txn, agent_id) end)
end

function _M.forget(store, agent_id, block_id)
  store:update(function(txn) records.del_attachment(txn, agent_id, block_id) end)
end

-- Detaches block_id from agent_id: true if it was attached, false if not. Not attached is fine:
-- 404 (not attached, or no such agent or block), 422, or an agent id that is not agent-<uuid>
-- (a mistyped id recorded by an older lettash: nothing can be attached there).
function _M.detach_once(c, agent_id, block_id)
  if not base.is_agent_id(agent_id) then return false end
  local ok, err = pcall(c.agents.blocks.detach, c.agents.blocks, agent_id, block_id)
  if ok then return true end
  if errors.is(err) and (err.status == 404 or err.status == 422) then return false end
  error(err, 0)
end
local detach_once = _M.detach_once

-- Attaches the persona for a send; returns the agent (as the attach answers it). Not repeated
-- after a timeout: the server may still be working on that attach, and a copy that lands after
-- our detach would leave the persona on the agent. The chat then fails and its attachment stays
-- recorded, so the next chat on the agent (or doctor) detaches it, whenever it landed. 5xx
-- answers, resets and undecodable answers (the attach is idempotent) are tried again here, twice
-- at most.
local ATTACH_AGAIN = {
  attempts = 3, base = 0.25, cap = 0.5, jitter = 0,
  when = function(e)
    return errors.is(e) and e.code ~= "timeout" and (e.status >= 500 or e.code == "reset" or e.code == "invalid_json")
  end,
}

function _M.attach(c, agent_id, block_id)
  return retry.call(function() return c.agents.blocks:attach(agent_id, block_id, { safe = false }) end, ATTACH_AGAIN)
end

-- Detaches the persona: idempotent (not attached is fine), so tried again after any failure the
-- client does not retry itself (an undecodable answer to a detach that was applied). Returns
-- whether it was attached.
function _M.detach(c, agent_id, block_id)
  return retry.call(function() return detach_once(c, agent_id, block_id) end, _M.AGAIN)
end

-- ---------------------------------------------------------------------------------------------
-- Repairs

-- Detaches what crashed chats left attached to agent_id (the caller holds the agent's lease, so
-- any recorded attachment there is stale).
function Users:repair_agent(agent_id, actions)
  for block_id, a in pairs(_M.attachments_on(self.store, agent_id)) do
    local was = detach_once(self.client, agent_id, block_id)
    if was or not records.still_watched(a) then
      _M.forget(self.store, agent_id, block_id)
      actions[#actions + 1] = string.format("repaired: detached %s (%s) left attached by process %s",
                                            block_id, tostring(a.username), tostring(a.pid))
    end
  end
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
  local recorded, foreign = _M.attachments_on(self.store, agent_id), {}
  for _, b in ipairs(other_personas(agent, block_id)) do
    if recorded[b.id] then
      detach_once(self.client, agent_id, b.id)
      _M.forget(self.store, agent_id, b.id)
      actions[#actions + 1] = string.format("repaired: detached %s (%s), an attach that landed after its chat", b.id, b.label)
    else
      foreign[#foreign + 1] = b
    end
  end
  return foreign
end

-- The error of a chat that waited `bound` seconds for another store's persona b to go.
function _M.busy(agent_id, b, bound)
  fail("agent %s is in use by user '%s' (%s attached) from another lettash store (another host or Unix account); "
       .. "waited %g s; try again once that chat is over (if none is running, detach it: "
       .. "bin/lettash -l letta -e \"letta.client().agents.blocks:detach('%s', '%s')\")",
       agent_id, b.label:sub(#"Persona_" + 1), b.label, bound, agent_id, b.id)
end

-- Waits until no other store's persona is on the agent (reading its blocks), until deadline.
function Users:await_foreign(agent_id, block_id, deadline, bound, actions)
  local n = 0
  while true do
    local ok, blocks = pcall(self.client.agents.blocks.list, self.client.agents.blocks, agent_id)
    if not ok and base.is_not_found(blocks) then
      fail("no agent %s on %s (bin/lettash scripts/agents.lua list shows the agents there)", agent_id, self.client.base_url)
    elseif not ok then
      error(blocks, 0)
    end
    local foreign = self:foreign_personas(agent_id, blocks, block_id, actions)
    if #foreign == 0 then return end
    local now = loop.now()
    if now >= deadline then _M.busy(agent_id, foreign[1], bound) end
    loop.sleep(math.min(retry.delay(n, nil, FOREIGN_WAIT), deadline - now))
    n = n + 1
  end
end

return _M
