-- Checks shared by the import specs: what the emulator holds after an import.
local _M = {}

-- passages(emu, agent_id) -> the agent's passages on the server (the admin state).
function _M.passages(emu, agent_id)
  return emu:state().passages[agent_id] or {}
end

-- exactly(emu, agent_id, texts) -> the passages, after asserting that every text of `texts` is on
-- the server exactly once and nothing else is.
function _M.exactly(emu, agent_id, texts)
  local want, seen, dups, extra = {}, {}, {}, {}
  for _, t in ipairs(texts) do want[t] = true end
  local ps = _M.passages(emu, agent_id)
  for _, p in ipairs(ps) do
    if seen[p.text] then dups[#dups + 1] = p.text end
    seen[p.text] = true
    if not want[p.text] then extra[#extra + 1] = p.text end
  end
  local missing = 0
  for _, t in ipairs(texts) do if not seen[t] then missing = missing + 1 end end
  assert(#dups == 0, #dups .. " duplicates on the server, e.g. " .. tostring(dups[1]))
  assert(missing == 0, missing .. " items missing on the server")
  assert(#extra == 0, #extra .. " unexpected passages on the server, e.g. " .. tostring(extra[1]))
  assert(#texts == #ps, #ps .. " passages for " .. #texts .. " texts")
  return ps
end

-- count(reqs, method, pattern) -> how many logged requests match (path by Lua pattern).
function _M.count(reqs, method, pattern)
  local n = 0
  for _, q in ipairs(reqs) do
    if q.method == method and q.path:match(pattern) then n = n + 1 end
  end
  return n
end

-- per_passage(args) -> args with --batch 1 in front unless they name a batch: the specs that assert
-- the per-passage route's faults and request counts pin it (import_batch_spec.lua covers batches).
function _M.per_passage(args)
  for _, a in ipairs(args) do if a == "--batch" then return args end end
  local a = { "--batch", "1" }
  for _, x in ipairs(args) do a[#a + 1] = x end
  return a
end

_M.BATCH = "/v1/archives/[^/]+/passages/batch$"
_M.AGENT_ROUTE = "/v1/agents/[^/]+/archival%-memory$"

return _M
