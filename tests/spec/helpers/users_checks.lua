-- Checks the user-workflow specs share (users_spec.lua, users_crash_spec.lua): what the emulator
-- holds (through /_emulator/state) and what the store records.
local assert = require "luassert"

local _M = {}

function _M.identities_of(state, username)
  local t = {}
  for _, i in ipairs(state.identities) do
    if i.identifier_key == username then t[#t + 1] = i end
  end
  return t
end

function _M.blocks_labelled(state, label)
  local t = {}
  for _, b in ipairs(state.blocks) do
    if b.label == label then t[#t + 1] = b end
  end
  return t
end

function _M.agent_in(state, agent_id)
  for _, a in ipairs(state.agents) do
    if a.id == agent_id then return a end
  end
end

function _M.personas_attached(state, agent_id)
  local t = {}
  for _, label in ipairs(_M.agent_in(state, agent_id).block_labels) do
    if label:match("^Persona_") then t[#t + 1] = label end
  end
  return t
end

function _M.count_ns(store, ns) return store:count(ns) end

-- The server requests that change something (everything but GET).
function _M.writes(emu)
  local t = {}
  for _, r in ipairs(emu:requests()) do
    if r.method ~= "GET" then t[#t + 1] = r.method .. " " .. r.path end
  end
  return t
end

function _M.has_action(result, pattern)
  for _, a in ipairs(result.actions) do
    if a:match(pattern) then return a end
  end
  return nil
end

-- Exactly one identity and one persona block for username on the server, linked (as
-- GET /v1/identities/{id}/blocks says), recorded in the store with both reverse lookups, nothing
-- pending.
function _M.assert_onboarded(emu, store, username)
  local state = emu:state()
  local ids = _M.identities_of(state, username)
  local blocks = _M.blocks_labelled(state, "Persona_" .. username)
  assert.equal(1, #ids, "identities for " .. username)
  assert.equal(1, #blocks, "persona blocks for " .. username)
  assert.equal("user", ids[1].identity_type)
  -- the link, read as on a real server (an Identity's own block_ids is always empty there)
  local linked = {}
  for _, b in ipairs(emu.admin.identities.blocks:list(ids[1].id)) do linked[#linked + 1] = b.id end
  assert.same({ blocks[1].id }, linked)
  local rec = store:user(username)
  assert.truthy(rec, "no record for " .. username)
  assert.equal(ids[1].id, rec.identity_id)
  assert.equal(blocks[1].id, rec.block_id)
  assert.equal("Persona_" .. username, rec.block_label)
  assert.is_true(rec.onboarded)
  assert.is_nil(rec.pending_block)
  assert.equal(username, store:user_by("identity", rec.identity_id).username)
  assert.equal(username, store:user_by("block", rec.block_id).username)
  return rec, ids[1], blocks[1]
end

return _M
