-- The batched sender of letta.import: many items in one request to the archive batch route,
-- POST /v1/archives/{archive_id}/passages/batch (Letta 0.16.4 and later). There the server asks its
-- embedding provider once for the whole batch and writes it in one transaction, so a batch lands
-- whole or not at all (archive_manager.create_passages_in_archive_async: the embeddings first, then
-- passage_manager.create_agent_passages_async -> batch_create_async), and its answer lists the
-- passages in created_at order, not the request's: items are matched to passages by their marker
-- tag. Exactly once as in the sender (sender.lua): each batch's items are journalled as pending
-- before it is sent and done with their passage ids after; after an ambiguous failure each item of
-- the batch is looked for by its tag and only those not found are sent again. A batch the server
-- refuses (a 4xx, or a 500, which is what Letta answers when its embedding provider refuses one
-- text: request_embeddings re-raises the provider's error) is cut in halves until the item at fault
-- is alone, and that item is reported by its line. A server without the route (405, or FastAPI's
-- plain 404 "Not Found") gets one passage per request instead, through the sender.
local loop = require "letta.loop"
local retry = require "letta.retry"
local errors = require "letta.errors"
local journal = require "letta.import.journal"
local sender = require "letta.import.sender"

local type, ipairs, pcall, error, table, string = type, ipairs, pcall, error, table, string

local _M = {}

-- Whether err says the route does not exist: Starlette's 405 (0.16.3 serves DELETE
-- /v1/archives/{id}/passages/{passage_id}, whose path "batch" matches) or its 404 "Not Found".
local function no_route(err)
  return errors.is(err) and (err.status == 405 or (err.status == 404 and err.message == "Not Found"))
end

-- archive(client, agent_id) -> the id of the agent's archive | nil (it has none yet: its first
-- passage through the agent route creates it) | false, why (the server cannot list archives, as
-- before Letta 0.12). Raises other failures. Whether it has the batch route shows at the first batch.
function _M.archive(client, agent_id)
  local archives = client.archives
  local ok, res = pcall(archives.list, archives, { agent_id = agent_id })
  if not ok then
    if no_route(res) then return false, string.format("the server cannot list archives (%d %s)", res.status, res.message) end
    if errors.is(res) and res.status == 404 and res.path then res.path = res.path .. "?agent_id=" .. agent_id end -- which agent
    error(res, 0)
  end
  if #res > 1 then
    error(errors.refusal("letta.import", string.format("agent %s has %d archives; Letta 0.16.8 gives an agent one", agent_id, #res)), 0)
  end
  return res[1] and res[1].id or nil
end

-- What the items of a batch look like on the wire: created_at in the form the route reads.
local function wire(items, iso8601)
  local list = {}
  for i, it in ipairs(items) do
    local f = sender.fields(it)
    if f.created_at then f.created_at = iso8601(f.created_at) end
    list[i] = f
  end
  return list
end

-- post(s, items) -> "sent", {passage id of items[i] or false} | "no_route", error | what
-- sender:outcome says.
local function post(s, items)
  if s.route ~= "batch" then return "no_route" end -- another batch found the route missing meanwhile
  local passages = s.client.archives.passages
  local ok, res = pcall(passages.create_many, passages, s.archive_id, wire(items, s.iso8601), { timeout = s.timeout })
  if not ok and no_route(res) then return "no_route", res end
  local outcome, detail = s:outcome(ok, res)
  if outcome ~= "sent" then return outcome, detail end
  local by_marker = {}
  for _, p in ipairs(type(detail) == "table" and detail or {}) do
    for _, t in ipairs(p.tags or {}) do by_marker[t] = p.id end
  end
  local ids = {}
  for i, it in ipairs(items) do ids[i] = by_marker[it.marker] or false end
  return "sent", ids
end

-- Journals as done the items of `items` that landed (ids[i] the passage id of items[i], false
-- when not found), counting each as sent (or recovered: an earlier run sent it); returns the
-- others.
local function land(s, items, ids)
  local landed, lids, rest = {}, {}, {}
  for i, it in ipairs(items) do
    if ids[i] then
      landed[#landed + 1], lids[#lids + 1] = it, ids[i]
      local how = it.st.recovering and "recovered" or "sent"
      s.summary[how] = s.summary[how] + 1
    else
      rest[#rest + 1] = it
    end
  end
  if #landed > 0 then journal.done_many(s.store, landed, lids) end
  return rest
end

-- Looks for each item that may have landed (st.maybe), LOOKS at once: seen[i] = {what s:look
-- says} for items[i], or nil for the others.
local LOOKS = 8
local function look_all(s, items)
  local seen, slots, tasks = {}, loop.semaphore(LOOKS), {}
  for i, it in ipairs(items) do
    if it.st.maybe and not s.stop then
      tasks[#tasks + 1] = function()
        slots:acquire()
        local ok, what, detail = pcall(s.look, s, it) -- (a listing: not one of the slots, which the batches pace)
        slots:release()
        if not ok then error(what, 0) end
        seen[i] = { what, detail }
      end
    end
  end
  if #tasks > 0 then loop.gather(tasks) end
  return seen
end

-- Looks for the items that may have landed (st.maybe, as in sender:attempt): those found are
-- journalled done. Returns the others and whether any of them is still unresolved (looking
-- failed, or a send that timed out may still land: not to be sent again yet).
local function settle(s, items)
  local ids, unresolved = {}, false
  local looked = look_all(s, items)
  for i, it in ipairs(items) do
    ids[i] = false
    if looked[i] then
      local seen, detail = looked[i][1], looked[i][2]
      if seen == "there" then ids[i] = detail
      elseif seen == "halt" then s:halt(detail)
      elseif seen == "unknown" or it.st.late then
        unresolved, it.st.last = true, detail or it.st.last
      else
        it.st.maybe = false
      end
    end
  end
  return land(s, items, ids), unresolved
end

-- Gives up on items after the last attempt (or when the run stops): those that may have landed
-- stay pending in the journal (the next run looks for them first), the others' entries go.
local function give_up(s, items, last)
  local gone = {}
  for _, it in ipairs(items) do
    if not it.st.maybe then gone[#gone + 1] = it end
  end
  if #gone > 0 then journal.forget_many(s.store, gone) end
  if s.stop then return end
  for _, it in ipairs(items) do
    s:failed(it, it.st.last or last, it.st.late and " (it may still land: run the import again, it looks for it before sending)" or nil)
  end
end

-- The server has no batch route: these items (journalled) and every later one go one per request.
local function fall_back(s, items)
  if s.route ~= "passage" then
    s.route = "passage"
    s.on_note("the server has no batch route (Letta before 0.16.4): sending one passage per request")
  end
  for _, it in ipairs(items) do
    if s.stop then break end
    s.in_slot(s, s.deliver, s, it, it.st.maybe)
  end
end

local deliver

-- Cuts a refused batch in halves, each delivered on its own.
local function split(s, items)
  local mid = #items // 2
  deliver(s, table.move(items, 1, mid, 1, {}))
  deliver(s, table.move(items, mid + 1, #items, 1, {}))
end

-- Delivers journalled items (each with st = {maybe=, recovering=}) as one batch, until each has
-- landed, been refused, or the attempts ran out, or the run stops.
function deliver(s, items)
  local last
  for attempt = 1, s.max_attempts do
    if s.stop then break end
    local unresolved
    items, unresolved = settle(s, items)
    if #items == 0 or s.stop then break end
    if not unresolved then
      local outcome, detail = s.in_slot(s, post, s, items)
      if outcome == "sent" then
        for i, it in ipairs(items) do if not detail[i] then it.st.maybe = true end end -- not in the answer: look
        items = land(s, items, detail)
        if #items == 0 then return end
      elseif outcome == "halt" then
        s:halt(detail)
        break
      elseif outcome == "no_route" then
        return fall_back(s, items)
      else
        last = detail
        for _, it in ipairs(items) do
          it.st.last = nil
          if outcome == "maybe" then it.st.maybe, it.st.late = true, detail.code == "timeout" and detail or nil end
        end
        local at_fault = outcome == "refused" or (outcome == "maybe" and detail.status == 500)
        if at_fault and #items > 1 then return split(s, items) end
        if outcome == "refused" then
          journal.forget_many(s.store, items)
          s:failed(items[1], detail)
          return
        end
      end
    end
    if attempt < s.max_attempts and not s.stop then loop.sleep(retry.delay(attempt - 1, nil, sender.BACKOFF)) end
  end
  if #items > 0 then give_up(s, items, last) end
end

-- send(s, batch) journals a batch of items (no key twice) and delivers those not done before. It
-- holds each item's key meanwhile (dedupe = "content": the same item in another batch waits), taken
-- in key order so that two batches never wait for each other. Each request takes a slot of the
-- requests in flight (s.in_slot) for as long as it is in flight: the journal is written outside.
function _M.send(s, batch)
  local keys = {}
  for i, it in ipairs(batch) do keys[i] = it.key end
  table.sort(keys)
  local locks = {}
  for i, k in ipairs(keys) do locks[i] = s:lock(k) end
  local ok, err = pcall(function()
    local prior = journal.begin_many(s.store, batch, s.run_id)
    local todo = {}
    for i, it in ipairs(batch) do
      local j = prior[i] or nil
      if j and j.s == "done" then
        s.summary.skipped = s.summary.skipped + 1
      else
        it.st = { maybe = j ~= nil, recovering = j ~= nil }
        todo[#todo + 1] = it
      end
    end
    if #todo > 0 then deliver(s, todo) end
  end)
  for i = #keys, 1, -1 do s:unlock(keys[i], locks[i]) end
  if not ok then error(err, 0) end
end

-- take(next_item, n, held) -> up to n items, never the same key twice (an item whose key the
-- batch holds already waits in held[1] for the next batch, so that the per-key locks order it).
function _M.take(next_item, n, held)
  local batch, keys = {}, {}
  while #batch < n do
    local it = table.remove(held) or next_item()
    if not it then break end
    if keys[it.key] then
      held[#held + 1] = it
      break
    end
    keys[it.key], batch[#batch + 1] = true, it
  end
  return batch
end

return _M
