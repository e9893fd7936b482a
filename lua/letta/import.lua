-- Bulk import of archival memory (passages): streamed from a file, N requests in flight, exactly
-- once, resumable. Each item has a stable key (its position and a hash of its content); the store
-- journals it as pending before it is sent and done (with the passage id) after. When a send ends
-- ambiguously (reset, timeout, 5xx: the server may have committed it) the importer looks for the
-- item's unique tag (among the passages that hold its text: see needle) before sending again, and
-- deletes any duplicate it finds.
local json = require "letta.json"
local errors = require "letta.errors"
local loop = require "letta.loop"
local core = require "letta.core"

local type, error, pcall, ipairs, tostring, string, table, math, io, utf8 =
  type, error, pcall, ipairs, tostring, string, table, math, io, utf8

local _M = {}

_M.MARKER_PREFIX = "lettash-import:"
local DEFAULT_CHUNK = 8000

-- ---------------------------------------------------------------------------------------------
-- Readers: iterators of items {line=, text=, tags=, created_at=} or bad lines {line=, error=}.

local function lines(fh)
  local n = 0
  return function()
    local l = fh:read("l")
    if l == nil then return nil end
    n = n + 1
    return n, (l:gsub("\r$", ""))
  end
end

local function check_text(item, limit)
  if type(item.text) ~= "string" or item.text:match("^%s*$") then return "missing text" end
  if not utf8.len(item.text) then return "text is not valid UTF-8" end
  if #item.text > limit then return string.format("text over the size limit (%d > %d bytes)", #item.text, limit) end
  return nil
end

local function check_tags(tags)
  if tags == nil then return nil end
  if type(tags) ~= "table" then return "tags must be an array of strings" end
  for _, t in ipairs(tags) do
    if type(t) ~= "string" or not utf8.len(t) then return "tags must be an array of strings" end
  end
  return nil
end

local function jsonl_reader(fh, limit)
  local next_line = lines(fh)
  return function()
    while true do
      local n, l = next_line()
      if not n then return nil end
      if not l:match("^%s*$") then
        if not utf8.len(l) then return { line = n, error = "not valid UTF-8" } end
        local ok, v = pcall(json.decode, l)
        if not ok then return { line = n, error = "invalid JSON (" .. tostring(v):gsub("^.-json: ", "") .. ")" } end
        if type(v) ~= "table" or json.is_array(v) then return { line = n, error = "not a JSON object" } end
        local item = { line = n, text = v.text, tags = v.tags, created_at = v.created_at }
        local bad = check_text(item, limit)
          or (item.tags ~= nil and not json.is_array(item.tags) and "tags must be an array of strings" or nil)
          or check_tags(item.tags)
          or (item.created_at ~= nil and type(item.created_at) ~= "string" and "created_at must be a string" or nil)
        if bad then return { line = n, error = bad } end
        return item
      end
    end
  end
end

-- CSV (RFC 4180) with a header naming the columns: text (required), tags (separated by ';'),
-- created_at. Quoted fields may hold commas, quotes ("") and line breaks.
local function csv_reader(fh, limit)
  local next_line = lines(fh)
  local function record()
    local n, l = next_line()
    if not n then return nil end
    local fields, field, i, quoted, start = {}, {}, 1, false, n
    while true do
      local c = l:sub(i, i)
      if quoted then
        if c == "" then -- a line break inside quotes
          local n2, l2 = next_line()
          if not n2 then return start, nil, "unterminated quoted field" end
          field[#field + 1] = "\n"
          l, i = l2, 1
        elseif c == '"' and l:sub(i + 1, i + 1) == '"' then
          field[#field + 1] = '"'
          i = i + 2
        elseif c == '"' then
          quoted, i = false, i + 1
        else
          field[#field + 1] = c
          i = i + 1
        end
      elseif c == '"' and #field == 0 then
        quoted, i = true, i + 1
      elseif c == "," then
        fields[#fields + 1] = table.concat(field)
        field, i = {}, i + 1
      elseif c == "" then
        fields[#fields + 1] = table.concat(field)
        return start, fields
      else
        field[#field + 1] = c
        i = i + 1
      end
    end
  end
  local header
  return function()
    while true do
      local n, fields, err = record()
      if not n then return nil end
      if err then return { line = n, error = err } end
      if not header then
        header = {}
        for i, name in ipairs(fields) do header[name:match("^%s*(.-)%s*$"):lower()] = i end
        if not header.text then return { line = n, error = "the header has no 'text' column", fatal = true } end
      elseif not (#fields == 1 and fields[1] == "") then
        local tags
        if header.tags and fields[header.tags] and fields[header.tags] ~= "" then
          tags = {}
          for t in fields[header.tags]:gmatch("[^;]+") do tags[#tags + 1] = t:match("^%s*(.-)%s*$") end
        end
        local created = header.created_at and fields[header.created_at]
        local item = { line = n, text = fields[header.text], tags = tags,
                       created_at = created ~= "" and created or nil }
        local bad = check_text(item, limit) or check_tags(item.tags)
        if bad then return { line = n, error = bad } end
        return item
      end
    end
  end
end

-- Plain text: a passage per paragraph (blank lines between), paragraphs longer than the limit
-- cut at a space (or anywhere, for a word longer than the limit).
local function text_reader(fh, limit)
  local next_line = lines(fh)
  local pending = {} -- pieces of an over-long paragraph still to hand out
  local function split(text, line)
    local out = {}
    while #text > limit do
      local cut = text:sub(1, limit):match("^.*()%s") or (limit + 1)
      if cut <= 1 then cut = limit + 1 end
      -- never cut inside a UTF-8 sequence
      while cut > 1 and cut <= #text and text:byte(cut) >= 0x80 and text:byte(cut) < 0xC0 do cut = cut - 1 end
      out[#out + 1] = { line = line, text = text:sub(1, cut - 1):match("^(.-)%s*$") }
      text = text:sub(cut):match("^%s*(.*)$")
    end
    if text ~= "" then out[#out + 1] = { line = line, text = text } end
    return out
  end
  return function()
    while true do
      if #pending > 0 then return table.remove(pending, 1) end
      local first, para = nil, {}
      while true do
        local n, l = next_line()
        if not n then break end
        if l:match("^%s*$") then
          if first then break end
        else
          first = first or n
          if not utf8.len(l) then
            -- skip the rest of this paragraph: it is one bad item
            repeat n, l = next_line() until not n or l:match("^%s*$")
            return { line = first, error = "not valid UTF-8" }
          end
          para[#para + 1] = l
        end
      end
      if not first then return nil end
      pending = split(table.concat(para, "\n"), first)
    end
  end
end

_M.readers = { jsonl = jsonl_reader, csv = csv_reader, text = text_reader }

-- ---------------------------------------------------------------------------------------------
-- The import

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
local function needle(text)
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
_M.needle = needle

local function item_key(agent_id, ordinal, item)
  local h = core.hash(table.concat({ agent_id, tostring(ordinal), item.text, table.concat(item.tags or {}, "\31"),
                                     item.created_at or "" }, "\0"))
  -- ordered by position: the journal is appended to, and its pages stay few and hot
  return string.format("%s/%012d:%s", agent_id, ordinal, h), h
end

-- Progress reporting: a bar on a terminal, a line every few seconds otherwise.
local function progress_reporter(opts, summary, total_bytes, fh)
  if opts.progress == false then return function() end end
  local tty = opts.progress == "tty" or (opts.progress == nil and core.isatty(2))
  local every = tty and 0.2 or (opts.progress_interval or 5)
  local start = loop.now()
  local last = tty and 0 or start -- not a line at once: a short import prints only its summary
  local out = opts.progress_out or io.stderr
  return function(final)
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

-- import.run{client=, store=, agent_id=, source="file" | "-", format="jsonl"|"csv"|"text", tags={},
-- concurrency=16, chunk_size=8000, dry_run=false, progress=nil|false|"tty"|"lines",
-- max_attempts=6} -> summary {items, sent, skipped, recovered, duplicates_removed, bad, failed,
-- bad_lines = {{line=, error=}...}, failures = {{line=, error=}...}, seconds, rate}
function _M.run(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'run' (table expected)", 2) end
  local agent_id, source = opts.agent_id, opts.source or "-"
  if type(agent_id) ~= "string" or agent_id == "" then error("bad argument #1 to 'run' (agent_id expected)", 2) end
  local format = opts.format or (type(source) == "string" and source:match("%.csv$") and "csv")
                 or (type(source) == "string" and source:match("%.txt$") and "text") or "jsonl"
  local reader_of = _M.readers[format]
  if not reader_of then error("bad argument #1 to 'run' (format must be jsonl, csv or text)", 2) end
  local limit = opts.chunk_size or DEFAULT_CHUNK
  local concurrency = math.max(1, math.floor(opts.concurrency or 16))
  local extra_tags = opts.tags or {}

  local fh, total_bytes = source, nil
  if type(source) == "string" then
    if source == "-" then
      fh = io.stdin
    else
      local err
      fh, err = io.open(source, "rb")
      if not fh then error("letta.import: cannot open " .. tostring(err), 0) end
      total_bytes = fh:seek("end")
      fh:seek("set", 0)
    end
  end
  local next_raw = reader_of(fh, limit)

  local summary = { items = 0, sent = 0, skipped = 0, recovered = 0, duplicates_removed = 0, bad = 0, failed = 0,
                    bad_lines = {}, failures = {}, dry_run = opts.dry_run or false, format = format }
  local ordinal = 0
  local fatal
  -- The next good item (bad ones are counted and reported by line number, never sent).
  local function next_item()
    while not fatal do
      local it = next_raw()
      if not it then return nil end
      if it.error then
        summary.bad = summary.bad + 1
        if #summary.bad_lines < 1000 then summary.bad_lines[#summary.bad_lines + 1] = { line = it.line, error = it.error } end
        if it.fatal then fatal = it.error end
      else
        ordinal = ordinal + 1
        summary.items = summary.items + 1
        local tags = {}
        for _, t in ipairs(extra_tags) do tags[#tags + 1] = t end
        for _, t in ipairs(it.tags or {}) do tags[#tags + 1] = t end
        it.tags = tags
        it.key, it.hash = item_key(agent_id, ordinal, it)
        it.marker = _M.MARKER_PREFIX .. it.hash
        return it
      end
    end
  end

  local started = loop.now()
  local function finish()
    summary.seconds = loop.now() - started
    summary.rate = summary.sent / math.max(summary.seconds, 1e-3)
    if fh ~= io.stdin and type(source) == "string" then fh:close() end
    if fatal then error("letta.import: " .. fatal, 0) end
    return summary
  end

  if opts.dry_run then
    while next_item() do end
    return finish()
  end

  local client, store = opts.client, opts.store
  local passages = client.agents.passages
  local report = progress_reporter(opts, summary, total_bytes, fh)
  local max_attempts = opts.max_attempts or 6
  local limit_inflight, inflight = concurrency, 0 -- halved on 429/503, grows back on success

  -- The passage(s) an earlier attempt left on the server, found by the item's unique tag.
  local function landed(it)
    local found = {}
    for p in passages:each(agent_id, { search = needle(it.text), limit = 100 }) do
      for _, t in ipairs(p.tags or {}) do
        if t == it.marker then found[#found + 1] = p.id break end
      end
    end
    table.sort(found)
    for i = 2, #found do -- keep one: the rest are duplicates a lost answer let through
      pcall(passages.delete, passages, agent_id, found[i])
      summary.duplicates_removed = summary.duplicates_removed + 1
    end
    return found[1]
  end

  local function journal(it, state, id)
    store:update(function(txn)
      if state then txn:put("imports", it.key, { s = state, id = id, line = it.line }) else txn:del("imports", it.key) end
    end)
  end

  local function send(it)
    -- one write transaction: read the item's state, and note the intent to send it
    local prior = store:update(function(txn)
      local j = txn:get("imports", it.key)
      if not j then txn:put("imports", it.key, { s = "pending", line = it.line }) end
      return j
    end)
    if prior and prior.s == "done" then
      summary.skipped = summary.skipped + 1
      return
    end
    if prior then -- pending: an earlier run was sending it when it stopped
      local id = landed(it)
      if id then
        journal(it, "done", id)
        summary.recovered = summary.recovered + 1
        return
      end
    end
    local delay = 0.25
    local unsure = false -- an earlier attempt may have landed, and looking for it failed
    -- A send that timed out may still be applied later (the server can be working on it still):
    -- this run then only looks for it, never sends it again (late holds that timeout).
    local late
    for attempt = 1, max_attempts do
      local ok, res
      if unsure or late then -- look first: sending again now could duplicate it
        local lok, id = pcall(landed, it)
        if lok and id then
          journal(it, "done", id)
          summary.sent = summary.sent + 1
          return
        end
        unsure, res = not lok, id
        if lok and late then res = late end
      end
      if not unsure and not late then
        ok, res = pcall(passages.create, passages, agent_id,
                        { text = it.text, tags = json.array({ it.marker, table.unpack(it.tags) }), created_at = it.created_at })
        if ok then
          journal(it, "done", res[1] and res[1].id)
          summary.sent = summary.sent + 1
          if limit_inflight < concurrency then limit_inflight = limit_inflight + 1 end
          return
        end
        if not errors.is(res) then error(res, 0) end
        if res.status == 429 or res.status == 503 then -- the server asks us to slow down
          limit_inflight = math.max(1, limit_inflight // 2)
        end
        local ambiguous = res.status == 0 or res.status >= 500
        if not ambiguous and res.status ~= 429 and res.status ~= 408 then -- refused: sending again will not help
          journal(it, nil)
          summary.failed = summary.failed + 1
          summary.failures[#summary.failures + 1] = { line = it.line, error = tostring(res) }
          return
        end
        if ambiguous then
          if res.code == "timeout" then late = res end
          local lok, id = pcall(landed, it)
          if lok and id then
            journal(it, "done", id)
            summary.sent = summary.sent + 1
            return
          end
          unsure = not lok
        end
      end
      if attempt < max_attempts then
        loop.sleep(delay * (1 - 0.25 * math.random()))
        delay = math.min(delay * 2, 8)
      else -- still pending in the journal when unsure: the next run looks before sending
        summary.failed = summary.failed + 1
        summary.failures[#summary.failures + 1] = { line = it.line, error = tostring(res)
          .. (late and " (it may still land: run the import again, it looks for it before sending)" or "") }
      end
    end
  end

  store:durable(false) -- the journal is written per item: no disk wait per commit
  local handled = 0
  local function worker()
    while true do
      while inflight >= limit_inflight do loop.sleep(0.02) end
      local it = next_item()
      if not it then return end
      inflight = inflight + 1
      local ok, err = pcall(send, it)
      inflight = inflight - 1
      handled = handled + 1
      if handled % 256 == 0 then store:trim() end -- the journal's pages: flat resident memory
      if not ok then
        summary.failed = summary.failed + 1
        summary.failures[#summary.failures + 1] = { line = it.line, error = tostring(err) }
      end
      report()
    end
  end
  local workers = {}
  for i = 1, concurrency do workers[i] = loop.spawn(worker) end
  local ok, err = pcall(loop.gather, workers)
  store:durable(true)
  report(true)
  if not ok then error(err, 0) end
  return finish()
end

return _M
