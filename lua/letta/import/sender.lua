-- The sender of letta.import: delivers one journalled item, exactly once, and says what happened.
-- Failures are of three kinds: about one item (a refusal of it: reported by line, the run goes
-- on), ambiguous (reset, timeout, 5xx: it may have landed, so the sender looks for the item's
-- unique tag before sending again, and deletes any duplicate it finds), and those no item can get
-- past, which stop the run at once instead of trying every item against them.
local json = require "letta.json"
local errors = require "letta.errors"
local loop = require "letta.loop"
local retry = require "letta.retry"
local journal = require "letta.import.journal"
local records = require "letta.users.records"

local error, pcall, ipairs, tostring, table, math, setmetatable =
  error, pcall, ipairs, tostring, table, math, setmetatable

local _M = {}

-- The backoff between the attempts at one item: 0.25 s doubling up to 8 s, less up to 25% jitter.
local BACKOFF = { base = 0.25, cap = 8, jitter = 0.25 }
_M.BACKOFF = BACKOFF

-- What to look for an item with, after an ambiguous failure: a piece of its text for the passage
-- list's `search`, whose results are then picked out by the item's unique tag.
-- Not passages:search: Letta 0.16.8 takes the top_k passages nearest to the query first and
-- applies the tag filter after (agent_manager.py:query_agent_passages_async), so among many
-- near-identical passages the tagged one can fall outside top_k and never be returned; a bigger
-- top_k only moves the limit, and a blank query returns nothing. The list's `search` is a plain
-- case-insensitive substring match on the text, with no embedding involved
-- (helpers/agent_manager_helper.py:build_agent_passage_query, reached through
-- server.py:get_agent_archival_async): every passage holding the piece is listed, the item's own
-- among them, however many look alike (they are paged through). The piece is the longest run
-- without '\' or NUL (PostgreSQL's LIKE reads '\' as an escape, and the server stores no NULs;
-- '%' and '_' are wildcards there, which only widen the match), cut to 512 bytes at a character
-- boundary so that the URL stays short.
local NEEDLE_MAX = 512
local LOOK_PAGE = 100
function _M.needle(text)
  local best = ""
  for run in text:gmatch("[^\\\0]+") do -- the server drops NUL bytes from what it stores
    if #run > #best then best = run end
  end
  if #best > NEEDLE_MAX then
    local cut = NEEDLE_MAX + 1
    while cut > 1 and best:byte(cut) >= 0x80 and best:byte(cut) < 0xC0 do cut = cut - 1 end
    best = best:sub(1, cut - 1)
  end
  return best
end

-- The whole run is blocked: no connection (TLS, refused, DNS), no access (401, 403), or no agent
-- (404: Letta answers it on this route when the agent is gone).
local function blocks_run(err)
  if err.status == 0 then return err.code == "tls" or err.code == "connect" or err.code == "resolve" end
  return err.status == 401 or err.status == 403 or err.status == 404
end

-- ---------------------------------------------------------------------------------------------
-- A sender: what every item's delivery shares. new{store=, passages=, agent_id=, run_id=,
-- summary=, concurrency=, max_attempts=} -> sender; sender.rate is the semaphore of requests in flight
-- (halved on 429/503, grown back by one on each success), sender.stop the failure that stops the
-- run (nil while it goes on).
local Sender = {}
Sender.__index = Sender

function _M.new(opts)
  local n = opts.concurrency
  return setmetatable({ store = opts.store, passages = opts.passages, agent_id = opts.agent_id,
                        run_id = opts.run_id, summary = opts.summary, concurrency = n,
                        max_attempts = opts.max_attempts or 6, rate = loop.semaphore(n), stop = nil,
                        locks = {} }, Sender)
end

function Sender:halt(e) self.stop = self.stop or e end

function Sender:failed(it, e, note)
  local summary = self.summary
  summary.failed = summary.failed + 1
  summary.failures[#summary.failures + 1] = { line = it.line, error = tostring(e) .. (note or "") }
end

-- The passage(s) an earlier attempt left on the server, found by the item's unique tag: the
-- passage id, or nil. Deletes all but one (the rest are duplicates a lost answer let through).
function Sender:landed(it)
  local passages, found = self.passages, {}
  local q = { search = _M.needle(it.text), limit = LOOK_PAGE }
  repeat -- oldest first, after the last one seen; a short page is the last (SQL LIMIT)
    local page = passages:list(self.agent_id, q)
    for _, p in ipairs(page) do
      for _, t in ipairs(p.tags or {}) do
        if t == it.marker then found[#found + 1] = p.id break end
      end
    end
    q.after = page[#page] and page[#page].id
  until #page < LOOK_PAGE
  table.sort(found)
  for i = 2, #found do
    pcall(passages.delete, passages, self.agent_id, found[i])
    self.summary.duplicates_removed = self.summary.duplicates_removed + 1
  end
  return found[1]
end

-- look(it) -> "there", passage id | "absent" | "unknown", error (looking failed; "halt" when that
-- failure blocks the run).
function Sender:look(it)
  local ok, id = pcall(self.landed, self, it)
  if not ok then
    if not errors.is(id) or errors.is(id, "interrupted") then error(id, 0) end
    if blocks_run(id) then return "halt", id end
    return "unknown", id
  end
  if id then return "there", id end
  return "absent"
end

-- What a request's end means for the items it carried (ok, res: pcall's results): "sent", res |
-- "halt", error | "refused", error (sending again will not help) | "maybe", error (it may have
-- landed: reset, timeout, 5xx) | "again", error (certainly not stored; worth trying again: 429,
-- 408). Adjusts the requests in flight: halved on 429/503, grown back by one on each success.
function Sender:outcome(ok, res)
  local rate = self.rate
  if ok then
    if rate.limit < self.concurrency then rate:resize(rate.limit + 1) end
    return "sent", res
  end
  if not errors.is(res) or errors.is(res, "interrupted") then error(res, 0) end
  if res.status == 429 or res.status == 503 then rate:resize(math.max(1, rate.limit // 2)) end -- slow down, it asks
  if blocks_run(res) then return "halt", res end
  if not errors.not_applied(res) then return "maybe", res end
  if res.status == 429 or res.status == 408 then return "again", res end
  return "refused", res
end

-- The item's passage fields for the wire: its unique marker tag first.
function _M.fields(it)
  return { text = it.text, tags = json.array({ it.marker, table.unpack(it.tags) }), created_at = it.created_at }
end

-- post(it) -> as outcome, with the passage id when "sent".
function Sender:post(it)
  local passages = self.passages
  local outcome, res = self:outcome(pcall(passages.create, passages, self.agent_id, _M.fields(it)))
  if outcome == "sent" then
    self.archive_seen = res[1] and res[1].archive_id or nil -- the agent's archive (batcher.lua)
    return outcome, res[1] and res[1].id
  end
  return outcome, res
end

-- Looks for item it after an attempt that may have landed (st.maybe): "there"|"halt", detail; or
-- "retry" (looking failed, or a send that timed out may still land); or nil: it is not there, and
-- nothing in flight can land any more (st.maybe is cleared).
function Sender:recheck(it, st)
  local seen, detail = self:look(it)
  if seen == "there" or seen == "halt" then return seen, detail end
  if seen == "unknown" then
    st.last = detail
    return "retry"
  end
  if st.late then return "retry" end
  st.maybe = false
  return nil
end

-- One attempt at item it, whose delivery so far is st ({maybe=, late=, last=}): maybe, an
-- attempt may have landed and no look since has told; late, a send timed out and may still be
-- applied later (the server can be working on it still), so it is only looked for, never sent
-- again. Looks first when maybe, else sends (and looks at once when that ends ambiguously).
-- Returns "there"|"sent", passage id | "halt"|"refused", error | "retry" (st.last says why).
function Sender:attempt(it, st)
  if st.maybe then
    local outcome, detail = self:recheck(it, st)
    if outcome then return outcome, detail end
  end
  local sent, detail = self:post(it)
  if sent ~= "maybe" and sent ~= "again" then return sent, detail end
  st.last = detail
  if sent == "again" then return "retry" end
  st.maybe = true -- reset, timeout, 5xx: it may have landed
  if detail.code == "timeout" then st.late = detail end
  local outcome, found = self:recheck(it, st) -- (not `recheck() or "retry"`: that drops the id)
  if outcome then return outcome, found end
  return "retry"
end

-- deliver(it, recovering) -> "sent" | "recovered" | "failed" | "halt". Sends an item journalled
-- as pending until it landed or was refused, or the run stops (then it stays pending if it may
-- have landed: the next run looks for it first; else its entry goes). recovering: an earlier run
-- was sending it when it stopped, so it may be on the server already.
function Sender:deliver(it, recovering)
  local st, summary = { maybe = recovering }, self.summary
  for attempt = 1, self.max_attempts do
    if self.stop then break end
    local outcome, detail = self:attempt(it, st)
    if outcome == "sent" or outcome == "there" then
      journal.done(self.store, it, detail)
      local how = outcome == "there" and recovering and "recovered" or "sent"
      summary[how] = summary[how] + 1
      return how
    elseif outcome == "refused" then
      journal.forget(self.store, it)
      self:failed(it, detail)
      return "failed"
    elseif outcome == "halt" then
      self:halt(detail)
      break
    end
    if attempt < self.max_attempts and not self.stop then loop.sleep(retry.delay(attempt - 1, nil, BACKOFF)) end
  end
  if not st.maybe then journal.forget(self.store, it) end
  if self.stop then return "halt" end
  self:failed(it, st.last, st.late and " (it may still land: run the import again, it looks for it before sending)" or nil)
  return "failed"
end

-- The same item twice in the input (dedupe = "content"): the later one waits for the earlier.
function Sender:lock(key)
  local l = self.locks[key]
  if not l then
    l = { sem = loop.semaphore(1), users = 0 }
    self.locks[key] = l
  end
  l.users = l.users + 1
  l.sem:acquire()
  return l
end

function Sender:unlock(key, l)
  l.sem:release()
  l.users = l.users - 1
  if l.users == 0 then self.locks[key] = nil end
end

-- send(it) -> "skipped" (an earlier run landed it) or what deliver says.
function Sender:send(it)
  local l = self:lock(it.key)
  local ok, res = pcall(function()
    local prior = journal.begin(self.store, it, self.run_id)
    if records.is_done(prior) then
      self.summary.skipped = self.summary.skipped + 1
      return "skipped"
    end
    return self:deliver(it, prior ~= nil)
  end)
  self:unlock(it.key, l)
  if not ok then error(res, 0) end
  return res
end

return _M
