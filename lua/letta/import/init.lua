-- Bulk import of archival memory (passages): streamed from a file, N requests in flight, exactly
-- once, resumable. The readers turn the input into items; the journal notes each item in the store
-- as pending before it is sent and done (with the passage id) after; the sender delivers one item
-- and says what happened, looking for the item's unique tag after an ambiguous failure before
-- sending again. A failure that no item can get past (TLS, credentials, the agent gone, the server
-- unreachable) stops the run at once. Every run is recorded in the store, so that an interrupted
-- one can be found and resumed (import.interrupted, which doctor reports).
--   readers.lua   jsonl, csv, text
--   journal.lua   item keys, the journal, the runs
--   sender.lua    one item's delivery, as an outcome; the requests in flight (a semaphore)
--   batcher.lua   many items per request, through the agent's archive (the default)
local errors = require "letta.errors"
local loop = require "letta.loop"
local core = require "letta.core"
local readers = require "letta.import.readers"
local journal = require "letta.import.journal"
local sender = require "letta.import.sender"
local batcher = require "letta.import.batcher"

local type, error, pcall, ipairs, tostring, string, table, math, io, os =
  type, error, pcall, ipairs, tostring, string, table, math, io, os

local _M = {}

-- What the import raises when it cannot start or go on: a letta.Error printed "letta.import:
-- <message>" (scripts print the message alone), with the code of the failure that caused it
-- (cause, a letta.Error), else code.
local function stopped(message, cause, code)
  local e = errors.refusal("letta.import", message, cause and cause.code or code)
  e.cause = cause
  return e
end

_M.MARKER_PREFIX = "lettash-import:"
_M.readers = readers
_M.needle = sender.needle
_M.interrupted = journal.interrupted

local DEFAULT_CHUNK = 8000
-- Passages per request through the archive batch route. Measured with the emulator charging 150 ms
-- per embedding request, 8 at once, 20 ms away (bench/import.sh): see bench/RESULTS.md.
local DEFAULT_BATCH = 50
local DEFAULT_BATCHES = 4 -- batches in flight
_M.DEFAULT_BATCH = DEFAULT_BATCH

-- Letta 0.16.8 stores an item's tags as a set (passage_manager.create_agent_passage_async:
-- list(set(tags))): a tag given twice is sent once, in first-seen order.
local function unique(list)
  local seen, out = {}, {}
  for _, t in ipairs(list) do
    if not seen[t] then seen[t], out[#out + 1] = true, t end
  end
  return out
end

-- The run's settings from run's opts: {agent_id=, source=, format=, reader=, dedupe=, limit=,
-- concurrency=, batch=, tags=}; misuse raises as run's own argument error.
local function settings(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'run' (table expected)", 3) end
  local agent_id, source = opts.agent_id, opts.source or "-"
  if type(agent_id) ~= "string" or agent_id == "" then error("bad argument #1 to 'run' (agent_id expected)", 3) end
  local format = opts.format or (type(source) == "string" and source:match("%.csv$") and "csv")
                 or (type(source) == "string" and source:match("%.txt$") and "text") or "jsonl"
  local reader = readers[format]
  if not reader then error("bad argument #1 to 'run' (format must be jsonl, csv or text)", 3) end
  local dedupe = opts.dedupe or "position"
  if dedupe ~= "position" and dedupe ~= "content" then error("bad argument #1 to 'run' (dedupe must be position or content)", 3) end
  local batch = opts.batch or DEFAULT_BATCH
  if math.type(batch) ~= "integer" or batch < 1 then error("bad argument #1 to 'run' (batch must be a whole number above 0)", 3) end
  return { agent_id = agent_id, source = source, format = format, reader = reader, dedupe = dedupe,
           limit = opts.chunk_size or DEFAULT_CHUNK,
           concurrency = math.max(1, math.floor(opts.concurrency or (batch > 1 and DEFAULT_BATCHES or 16))),
           batch = batch, tags = opts.tags or {} }
end

-- The input: {fh=, total_bytes= (nil for stdin or a handle), close=}.
local function open_input(source)
  local input = { fh = source }
  function input.close()
    if input.fh ~= io.stdin and type(source) == "string" then input.fh:close() end
  end
  if type(source) ~= "string" then return input end
  if source == "-" then
    input.fh = io.stdin
    return input
  end
  local fh, err = io.open(source, "rb")
  if not fh then error(stopped("cannot open " .. tostring(err), nil, "cannot_open"), 0) end
  input.fh, input.total_bytes = fh, fh:seek("end")
  fh:seek("set", 0)
  return input
end

-- An iterator of the input's good items, each with its key, hash and marker tag; bad ones are
-- counted and reported by line number in summary, never sent. A fatal bad line ends the items:
-- state.fatal says why.
local function items(cfg, next_raw, summary, state)
  local ordinal = 0
  return function()
    while not state.fatal do
      local it = next_raw()
      if not it then return nil end
      if it.error then
        summary.bad = summary.bad + 1
        if #summary.bad_lines < 1000 then summary.bad_lines[#summary.bad_lines + 1] = { line = it.line, error = it.error } end
        if it.fatal then state.fatal = it.error end
      else
        ordinal = ordinal + 1
        summary.items = summary.items + 1
        local tags = {}
        for _, t in ipairs(cfg.tags) do tags[#tags + 1] = t end
        for _, t in ipairs(it.tags or {}) do tags[#tags + 1] = t end
        it.tags = tags
        it.key, it.hash = journal.item_key(cfg.agent_id, ordinal, it, cfg.dedupe) -- (as given: keys of earlier runs stay valid)
        it.tags = unique(tags)
        it.marker = _M.MARKER_PREFIX .. it.hash
        return it
      end
    end
  end
end
-- Progress reporting: a bar on a terminal, a line every few seconds otherwise.
local function progress_reporter(opts, summary, total_bytes, fh)
  if opts.progress == false then return function() end end
  local tty = opts.progress == "tty" or (opts.progress == nil and core.isatty(2))
  local every = tty and 0.2 or (opts.progress_interval or 5)
  local start = loop.now()
  local last = tty and 0 or start -- not a line at once: a short import prints only its summary
  local out = opts.progress_out or io.stderr
  -- report(final, stopped): final draws the last bar (ending its line) or line; stopped, the bar
  -- only (the error line follows).
  return function(final, stopped)
    if final and not tty and (stopped or opts.progress_final == false) then return end -- the caller prints a summary
    local now = loop.now()
    if not final and now - last < every then return end
    last = now
    local done = summary.sent + summary.skipped + summary.recovered + summary.failed
    local rate = done / math.max(now - start, 1e-3)
    local frac
    if total_bytes and total_bytes > 0 then
      local pos = fh:seek("cur")
      frac = pos and math.min(pos / total_bytes, 1) or nil
    end
    local eta = ""
    if frac and frac > 0 and not final then eta = string.format(" ETA %ds", math.floor((now - start) * (1 - frac) / frac + 0.5)) end
    if tty then
      local width = 30
      local filled = frac and math.floor(frac * width) or 0
      out:write(string.format("\r[%s%s] %d items %s %.0f/s%s ", string.rep("#", filled), string.rep(".", width - filled),
                              done, frac and string.format("%3d%%", math.floor(frac * 100)) or "", rate, eta))
      if final then out:write("\n") end
    else
      out:write(string.format("import: %d items (%d sent, %d already done, %d bad, %d failed) %.0f/s%s\n",
                              done, summary.sent, summary.skipped, summary.bad, summary.failed, rate, eta))
    end
    out:flush()
  end
end

-- The items sent by `workers` workers through sender s: each takes its next items (take() -> a
-- list, empty at the end) and sends them (send(list)); after each list, on_sent(list, ok, err).
-- The requests in flight are s.rate's slots: with own_slots, send takes one itself, just before
-- its request (then one worker more than slots reads and journals the next batch while the others
-- are in flight, and sends it the moment a slot frees); else each worker takes one before it takes
-- its items.
local function send_all(s, take, send, workers, on_sent, own_slots)
  local rate = s.rate
  local function worker()
    while not s.stop do
      if not own_slots then rate:acquire() end
      local rok, list = true, nil
      if not s.stop then rok, list = pcall(take) end
      if not (rok and list and #list > 0) then
        if not own_slots then rate:release() end
        if not rok then error(list, 0) end
        return
      end
      local ok, e = pcall(send, list)
      if not own_slots then rate:release() end
      on_sent(list, ok, e)
    end
  end
  local tasks = {}
  for i = 1, workers do tasks[i] = loop.spawn(worker) end
  return pcall(loop.gather, tasks)
end

-- fn(...)'s results, fn holding a slot of s.rate (a request in flight) while it runs.
local function in_slot(s, fn, ...)
  s.rate:acquire()
  local r = table.pack(pcall(fn, ...))
  s.rate:release()
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- The sender's route: "batch" through the agent's archive (s.archive_id), "passage" one per
-- request. With batches, an agent without an archive yet (archive: what batcher.archive said) gets
-- its first items through the agent route (the first passage creates the archive: its answer
-- names it) until it has one.
local function choose_route(s, cfg, take_one, send_one, archive, why)
  if cfg.batch == 1 then return "passage" end
  while archive == nil and not s.stop do
    if not send_one(take_one()) then break end
    archive = s.archive_seen
    if archive == nil then archive, why = batcher.archive(s.client, cfg.agent_id) end
  end
  if archive == false then
    s.on_note(why .. ": sending one passage per request")
    return "passage"
  end
  s.archive_id = archive
  return archive and "batch" or "passage"
end

-- The route (choose_route), then the workers (send_all); returns as pcall does. Finding the archive
-- failing stops the run as any failure no item can get past does (s:halt).
local function run_workers(s, cfg, ctx, take, send, on_sent)
  local function send_one(list)
    if #list == 0 then return false end
    on_sent(list, pcall(s.send, s, list[1]))
    return true
  end
  local ok, route = pcall(choose_route, s, cfg, take, send_one, ctx.archive, ctx.why)
  if ok then
    s.route = route
    local batching = route == "batch"
    s.batching = batching -- (it stays so when a batch finds no route: send then takes the slot)
    return send_all(s, take, send, batching and cfg.concurrency + 1 or cfg.concurrency, on_sent, batching)
  end
  if not errors.is(route) then return false, route end
  s:halt(route)
  return true
end

-- Sends the items with the journal and the run's record in store (the input was read to its end,
-- or the run stopped: then raises). ctx: {cfg=, opts=, client=, store=, input=, summary=, next_item=,
-- archive=, why= (what batcher.archive said), note=, report=}.
local function send_items(ctx)
  local cfg, store, summary, input = ctx.cfg, ctx.store, ctx.summary, ctx.input
  local source = ctx.opts.source or "-"
  local run = journal.new_run(store, ctx.opts, type(source) == "string" and journal.absolute(source) or "-")
  local function note_run(fields) run.note(fields, summary.sent + summary.skipped + summary.recovered) end
  note_run()
  local report = ctx.report
  local s = sender.new{ store = store, passages = ctx.client.agents.passages, agent_id = cfg.agent_id, run_id = run.id,
                        summary = summary, concurrency = cfg.concurrency, max_attempts = ctx.opts.max_attempts }
  s.client, s.iso8601, s.on_note, s.in_slot = ctx.client, readers.iso8601, ctx.note, in_slot
  store:durable(false) -- the journal is written per batch: no disk wait per commit
  local handled, held = 0, {}
  local function take()
    return batcher.take(ctx.next_item, s.route == "batch" and cfg.batch or 1, held)
  end
  local function send(list)
    if s.route == "batch" then return batcher.send(s, list) end
    if s.batching then return in_slot(s, s.send, s, list[1]) end -- a server without the batch route
    return s:send(list[1])
  end
  local function on_sent(list, ok, e)
    local before = handled
    handled = handled + #list
    if handled // 256 > before // 256 then -- the journal's pages: flat resident memory; and the run's progress
      store:trim()
      note_run()
    end
    if not ok and errors.is(e, "interrupted") then s:halt(e) -- Ctrl-C stops the run (the items stay pending)
    elseif not ok and #list > 1 then s:halt(e) -- not the server's answer (those are handled): the store, say
    elseif not ok then s:failed(list[1], e) end
    report()
  end
  local gok, gerr = run_workers(s, cfg, ctx, take, send, on_sent)
  summary.route = s.route or "passage"
  store:durable(true)
  if not gok then
    input.close()
    error(gerr, 0)
  end
  if s.stop then
    report(true, true)
    input.close()
    local why = tostring(s.stop)
    note_run{ error = why }
    if errors.is(s.stop, "interrupted") then error(s.stop, 0) end -- Ctrl-C: printed as such
    error(stopped(string.format("stopped: %s (%d sent before it stopped; the same command continues)",
                                why, summary.sent + summary.recovered), s.stop), 0)
  end
  report(true)
  note_run{ finished = os.date("!%Y-%m-%dT%H:%M:%SZ") }
end

-- import.run{client=, store=, agent_id=, source="file" | "-", format="jsonl"|"csv"|"text", tags={},
-- concurrency=16, batch=50, chunk_size=8000, dedupe="position"|"content", dry_run=false,
-- progress=nil|false|"tty"|"lines", progress_final=true, max_attempts=6} -> summary {items, sent,
-- skipped (= already_present), already_present, recovered, duplicates_removed, bad, failed,
-- bad_lines = {{line=, error=}...}, failures = {{line=, error=}...}, notes = {...}, seconds, rate,
-- format, dedupe, batch, route ("batch" | "passage"), dry_run}. batch: passages per request through
-- the agent's archive (POST /v1/archives/{id}/passages/batch); 1, or a server without that route,
-- sends one per request through the agent (POST /v1/agents/{id}/archival-memory); concurrency is
-- the requests in flight either way. Raises when the run stops on a failure no item can get past
-- (the agent, checked before the first item; TLS; 401/403; the server unreachable): "letta.import:
-- <why>"; what it had sent is journalled, and the same call continues it.
function _M.run(opts)
  local cfg = settings(opts)
  local input = open_input(cfg.source)
  local summary = { items = 0, sent = 0, skipped = 0, already_present = 0, recovered = 0, duplicates_removed = 0,
                    bad = 0, failed = 0, bad_lines = {}, failures = {}, notes = {}, dry_run = opts.dry_run or false,
                    format = cfg.format, dedupe = cfg.dedupe, batch = cfg.batch }
  local state = {}
  local next_item = items(cfg, cfg.reader(input.fh, cfg.limit), summary, state)
  local started = loop.now()
  local function finish()
    summary.already_present = summary.skipped
    summary.seconds = loop.now() - started
    summary.rate = summary.sent / math.max(summary.seconds, 1e-3)
    input.close()
    if state.fatal then error(stopped(state.fatal, nil, "bad_input"), 0) end
    return summary
  end
  if opts.dry_run then
    while next_item() do end
    return finish()
  end
  -- The agent first: a wrong agent id, password or certificate, or a server that is down, stops
  -- the run here in one request, before any item is journalled. With batches that request looks
  -- for the agent's archive (it answers 404 for an unknown agent: validate_agent_exists_async).
  local client = opts.client
  local ok, err, why
  if cfg.batch > 1 then
    ok, err, why = pcall(batcher.archive, client, cfg.agent_id)
  else
    ok, err = pcall(client.agents.retrieve, client.agents, cfg.agent_id)
  end
  if not ok then
    input.close()
    if errors.is(err, "interrupted") or not errors.is(err) then error(err, 0) end
    error(stopped(tostring(err), err), 0)
  end
  local function note(message) -- said once, as it happens; kept in the summary
    summary.notes[#summary.notes + 1] = message
    if opts.progress ~= false then
      local out = opts.progress_out or io.stderr
      out:write("import: ", message, "\n")
      out:flush()
    end
  end
  send_items{ cfg = cfg, opts = opts, client = client, store = opts.store, input = input, summary = summary,
              next_item = next_item, note = note, archive = cfg.batch > 1 and err or nil, why = why,
              report = progress_reporter(opts, summary, input.total_bytes, input.fh) }
  return finish()
end

return _M
