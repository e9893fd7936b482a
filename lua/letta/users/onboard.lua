-- onboard: an identity of type user and a persona block Persona_<name>, linked, both ids cached in
-- the store. Every server write is preceded by a note of intent in the store (the record itself,
-- then pending_block), so a run killed at any point is finished by the next one (or by doctor).
-- blocks:list is never used to find a block we use, and neither is an identity's block_ids
-- (Letta 0.16.8 returns it empty): an identity's blocks are read through
-- GET /v1/identities/{id}/blocks.
local json = require "letta.json"
local errors = require "letta.errors"
local core = require "letta.core"
local store_mod = require "letta.store"
local base = require "letta.users.base"
local records = require "letta.users.records"

local type, error, pcall, ipairs, pairs, table = type, error, pcall, ipairs, pairs, table

local Users, unless_missing = base.Users, base.unless_missing

local function same(a, b) -- deep equality of decoded JSON values
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

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
    if not fok and errors.is(res, "interrupted") then error(res, 0) end
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

-- The persona block an earlier run left: the one linked to the identity (the store lost its id,
-- e.g. a new store on a server where this user was onboarded), else the one an interrupted run
-- created (found by its nonce; duplicates deleted), else nil.
function Users:adopt_block(rec, identity, linked, actions)
  for _, b in ipairs(linked) do
    if b.label == rec.block_label then
      actions[#actions + 1] = "adopted block " .. b.id .. " (already linked to identity " .. identity.id .. ")"
      return b
    end
  end
  if not rec.pending_block then return nil end -- else an earlier run was creating it: did that land?
  local c = self.client
  local orphans = self:sweep_orphans(rec, linked)
  local block = orphans[1]
  if block then actions[#actions + 1] = "adopted block " .. block.id .. " (left by an interrupted run)" end
  for i = 2, #orphans do
    unless_missing(c.blocks.delete, c.blocks, orphans[i].id)
    actions[#actions + 1] = "deleted duplicate block " .. orphans[i].id
  end
  return block
end

-- The persona block: the cached one, else one an earlier run left (adopt_block), else a new one.
-- linked: the identity's blocks (linked_blocks).
function Users:ensure_block(rec, identity, linked, actions)
  local c = self.client
  local block = cached(rec, "block_id", c.blocks, "block", actions)
    or self:adopt_block(rec, identity, linked, actions)
  if not block then
    rec.pending_block = rec.pending_block or core.nonce() -- the note of intent, before the write
    self:save(rec)
    block = c.blocks:create{
      label = rec.block_label, value = records.persona_value(rec.name, rec.preferences),
      description = "Persona of user " .. rec.username .. " (lettash)",
      metadata = { lettash_user = rec.username, lettash_nonce = rec.pending_block },
    }
    actions[#actions + 1] = "created block " .. block.id
  end
  rec.block_id = block.id
  self:save(rec)
  return block
end

-- Links the block to the identity unless linked_blocks holds it already.
function Users:ensure_link(block, identity, linked_blocks, actions)
  for _, b in ipairs(linked_blocks) do
    if b.id == block.id then return end
  end
  self.client.blocks.identities:attach(block.id, identity.id)
  actions[#actions + 1] = "linked block " .. block.id .. " to identity " .. identity.id
end

-- A rerun with a new name or preferences updates them, on the identity and in the persona.
function Users:update_persona(rec, identity, block, renamed, new_prefs, actions)
  if renamed then
    self.client.identities:modify(identity.id, { name = rec.name })
    actions[#actions + 1] = "renamed to " .. rec.name
  end
  if renamed or new_prefs then
    local value = records.decode_persona(block.value) or {}
    value.name, value.preferences = rec.name, rec.preferences or json.object()
    local history = type(value.conversation_history) == "table" and value.conversation_history or {}
    self.client.blocks:modify(block.id, { value = records.encode_persona(value, history) })
    if new_prefs then actions[#actions + 1] = "updated preferences" end
  end
end

-- Onboards the user of record rec (the stored one, or a new one): see onboard.
local function onboard_record(self, rec, opts)
  local username = rec.username
  local actions = {}
  local old_name, old_prefs = rec.name, rec.preferences
  rec.name = opts.name or rec.name or username
  if opts.preferences ~= nil then rec.preferences = opts.preferences end
  rec.block_label = base.label(username)
  local renamed = rec.onboarded and opts.name ~= nil and opts.name ~= old_name
  local new_prefs = rec.onboarded and opts.preferences ~= nil and not same(opts.preferences, old_prefs)
  if not rec.onboarded then self:save(rec) end
  local identity = self:ensure_identity(rec, actions)
  local linked_blocks = self:linked_blocks(identity.id)
  local block = self:ensure_block(rec, identity, linked_blocks, actions)
  self:ensure_link(block, identity, linked_blocks, actions)
  self:update_persona(rec, identity, block, renamed, new_prefs, actions)
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
  base.validate(username)
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
