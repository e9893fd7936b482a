-- offboard: detach the persona wherever a chat left it, delete the block and the identity, remove
-- the record. The record is marked first (offboarding), so a run killed at any point is finished
-- by the next one (or by doctor).
local base = require "letta.users.base"
local records = require "letta.users.records"
local persona = require "letta.users.persona"

local ipairs = ipairs

local Users, unless_missing = base.Users, base.unless_missing

-- Detaches the persona from every agent the store records it on.
local function detach_everywhere(self, rec, actions)
  local attached = self.store:read(function(txn) return records.attachments(txn, rec.block_id) end)
  for _, e in ipairs(attached) do
    persona.detach_once(self.client, e.agent_id, rec.block_id)
    persona.forget(self.store, e.agent_id, rec.block_id)
    actions[#actions + 1] = "detached " .. rec.block_id .. " from " .. e.agent_id
  end
end

-- offboard(username) -> {username=, changed=, actions=}: detaches the persona wherever a chat left
-- it, deletes the block and the identity, removes the record. Safe to rerun after a crash; a user
-- with no record (offboarded already, or never onboarded here) is nothing to do (changed = false).
function Users:offboard(username)
  base.validate(username)
  local rec = self.store:user(username)
  if not rec then return { username = username, changed = false, actions = {} } end
  local c = self.client
  local actions = {}
  rec.offboarding = true
  self:save(rec)
  if rec.block_id then
    detach_everywhere(self, rec, actions)
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
