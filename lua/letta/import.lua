-- Bulk import of archival memory (passages): streamed from a file, N requests in flight, exactly
-- once, resumable. Each item has a stable key (its position and a hash of its content, or with
-- dedupe = "content" its content alone); the store journals it as pending before it is sent and
-- done (with the passage id) after. When a send ends ambiguously (reset, timeout, 5xx: the server
-- may have committed it) the importer looks for the item's unique tag (among the passages that
-- hold its text: see needle) before sending again, and deletes any duplicate it finds. A failure
-- that no item can get past (TLS, credentials, the agent gone, the server unreachable) stops the
-- run at once. Every run is recorded in the store, so that an interrupted one can be found and
-- resumed (import.interrupted, which doctor reports).
local json = require "letta.json"
local errors = require "letta.errors"
local loop = require "letta.loop"
local core = require "letta.core"

local type, error, pcall, ipairs, pairs, tostring, tonumber, string, table, math, io, os, utf8, coroutine =
  type, error, pcall, ipairs, pairs, tostring, tonumber, string, table, math, io, os, utf8, coroutine

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

-- created_at as Letta 0.16.8 reads it (CreateArchivalMemory.created_at, a pydantic 2.11 datetime
-- in lax mode, parsed by speedate): a date YYYY-MM-DD (that day at 00:00), or a date, then T, t,
-- '_' or a space, then HH:MM[:SS[.fraction]] and an optional zone (Z, z, +HH, +HHMM, +HH:MM); or a
-- Unix time in seconds (milliseconds above 2e10) written as a number. Anything else is a 422 there
-- for every item that has it, so it is a bad line here, caught by --dry-run too.
local DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local function check_created_at(s)
  if type(s) ~= "string" then return "created_at must be a string" end
  local bad = "created_at is not a date (expected ISO 8601, e.g. 2024-01-31 or 2024-01-31T09:30:00Z): " .. s:sub(1, 64)
  if s:match("^%-?%d+$") or s:match("^%-?%d+%.%d+$") then
    local t = tonumber(s)
    return not (t >= -11676096000 and t <= 253402300799000) and bad or nil
  end
  local y, m, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if not y or y < 1 or m < 1 or m > 12 or d < 1 or d > DAYS[m]
     or (m == 2 and d == 29 and not (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0))) then
    return bad
  end
  if rest == "" then return nil end
  local hh, mm, after = rest:match("^[Tt_ ](%d%d):(%d%d)(.*)$")
  if not hh or tonumber(hh) > 23 or tonumber(mm) > 59 then return bad end
  local ss, after2 = after:match("^:(%d%d)(.*)$")
  if ss then
    if tonumber(ss) > 59 then return bad end
    after = after2:gsub("^[.,]%d+", "", 1)
  end
  if after == "" or after == "Z" or after == "z" then return nil end
  local zh, zm = after:match("^[+-](%d%d):?(%d%d)$")
  if not zh then zh, zm = after:match("^[+-](%d%d)$"), "00" end
  if not zh or tonumber(zh) > 23 or tonumber(zm) > 59 then return bad end
  return nil
end

-- JSON null is "not given" (the server reads it so).
local function given(v) if v == json.null then return nil end return v end

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
        local item = { line = n, text = v.text, tags = given(v.tags), created_at = given(v.created_at) }
        local bad = check_text(item, limit)
          or (item.tags ~= nil and not json.is_array(item.tags) and "tags must be an array of strings" or nil)
          or check_tags(item.tags)
          or (item.created_at ~= nil and check_created_at(item.created_at) or nil)
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
          or (item.created_at and check_created_at(item.created_at) or nil)
        if bad then return { line = n, error = bad } end
        return item
      end
    end
  end
end

-- Plain text: a passage per paragraph (blank lines between), paragraphs longer than the limit
-- cut at the last space before it (or anywhere, for a word longer than the limit, never inside a
-- UTF-8 character). Streamed in blocks, and a paragraph is cut as it fills: time is linear and
-- memory bounded (a block and a chunk) whatever the length of a paragraph or of a line; the whole
-- paragraph is never held, nor sliced again for each chunk. The pieces are the ones that cutting
-- the whole paragraph would give. A line that is not UTF-8 makes the rest of its paragraph one bad
-- item (at the paragraph's first line); pieces of that paragraph already cut stay items.
local BLOCK = 65536

local function continuation(s, i)
  local b = s:byte(i)
  return b ~= nil and b >= 0x80 and b < 0xC0
end

-- How many bytes at the end of s start a UTF-8 character that goes on past it.
local function partial_tail(s)
  for k = 1, math.min(3, #s) do
    local b = s:byte(#s - k + 1)
    if b < 0x80 then return 0 end
    if b >= 0xC0 then
      local need = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
      return need > k and k or 0
    end
  end
  return 0
end

local function text_reader(fh, limit, block) -- block: bytes read at a time (tests make it small)
  block = block or BLOCK
  local produce = coroutine.wrap(function()
    local yield = coroutine.yield
    local lineno, first = 1, nil -- first: the line the open paragraph starts at
    local parts, len = {}, 0      -- the paragraph's text not yet handed out (len <= limit between adds)
    local strip = false           -- drop the whitespace that comes next (it follows a cut)
    local skipping = false        -- the rest of a paragraph with a line that is not UTF-8

    -- Appends s to the paragraph, and hands out the chunks that are full (the paragraph's text
    -- is then known to go on past the limit): the same cut as on the whole text.
    local function add(s)
      if strip then
        local i = s:find("%S")
        if not i then return end
        s, strip = s:sub(i), false
      end
      parts[#parts + 1], len = s, len + #s
      if len <= limit then return end
      local text, pos = table.concat(parts), 1
      while #text - pos + 1 > limit do
        local head = text:sub(pos, pos + limit - 1)
        local cut = head:match("^.*()%s") or (limit + 1)
        if cut <= 1 then cut = limit + 1 end
        cut = pos + cut - 1
        while cut > pos and continuation(text, cut) do cut = cut - 1 end
        if cut == pos then -- a character longer than the limit: it goes whole
          cut = pos + 1
          while continuation(text, cut) do cut = cut + 1 end
        end
        local piece = text:sub(pos, cut - 1):match("^(.-)%s*$")
        pos = text:find("%S", cut) or #text + 1
        if piece ~= "" then yield({ line = first, text = piece }) end
      end
      local rest = text:sub(pos)
      parts, len, strip = { rest }, #rest, rest == ""
    end

    local function close_paragraph()
      if first and not skipping and len > 0 then
        local text = table.concat(parts)
        if text ~= "" then yield({ line = first, text = text }) end
      end
      first, parts, len, strip, skipping = nil, {}, 0, false, false
    end

    -- The input as spans of lines: (text, ended) with ended true when the line ends after it. A
    -- block's last bytes are held for the next one when they may be a CR before its LF or part of
    -- a character, so that each span is whole characters and a line's CR is always seen.
    local data, pos, carry, eof = "", 1, "", false
    local function span()
      while pos > #data do
        if eof then return nil end
        local more = fh:read(block)
        if more then
          data, pos = carry .. more, 1
        else
          data, pos, eof = carry, 1, true
          if data == "" then return nil end
        end
        carry = ""
      end
      local nl = data:find("\n", pos, true)
      if nl then
        local s = data:sub(pos, nl - 1)
        pos = nl + 1
        return s, true
      end
      local stop = #data
      if not eof then
        local hold = data:byte(stop) == 13 and 1 or partial_tail(data)
        carry, stop = data:sub(stop - hold + 1), stop - hold
      end
      local s = data:sub(pos, stop)
      pos = #data + 1
      return s, eof
    end

    local ws = {} -- the current line's text while it is only whitespace
    local blank = true
    while true do
      local s, ended = span()
      if s == nil then break end
      if ended and s:byte(-1) == 13 then s = s:sub(1, -2) end
      if blank then
        if s:find("%S") then -- the line is not blank: it opens or continues a paragraph
          blank = false
          if first == nil then
            first = lineno
          elseif not skipping then
            add("\n")
          end
          if not skipping then for _, w in ipairs(ws) do add(w) end end
          ws = {}
        else
          ws[#ws + 1] = s -- its leading whitespace, until the line turns out blank or not
        end
      end
      if not blank and not skipping then
        if utf8.len(s) then
          add(s)
        else
          skipping = true
          yield({ line = first, error = "not valid UTF-8" })
        end
      end
      if ended then
        if blank and first then close_paragraph() end
        ws, blank, lineno = {}, true, lineno + 1
      end
    end
    close_paragraph()
  end)
  local done = false
  return function()
    if done then return nil end
    local it = produce()
    if it == nil then done = true end
    return it
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

-- The key of an item in the journal, and the hash its marker tag carries. By position (the
-- default): its line's rank and content, so the same text twice is two passages. By content
-- (dedupe = "content"): its text, tags (a set on the server, so sorted) and created_at, wherever it
-- sits: an edited file sends only its new items, and an item repeated in the input is sent once.
local function item_key(agent_id, ordinal, item, dedupe)
  if dedupe == "content" then
    local tags = {}
    for _, t in ipairs(item.tags) do tags[#tags + 1] = t end
    table.sort(tags)
    local h = core.hash(table.concat({ agent_id, "content", item.text, table.concat(tags, "\31"), item.created_at or "" }, "\0"))
    return string.format("%s/c:%s", agent_id, h), h
  end
  local h = core.hash(table.concat({ agent_id, tostring(ordinal), item.text, table.concat(item.tags or {}, "\31"),
                                     item.created_at or "" }, "\0"))
  -- ordered by position: the journal is appended to, and its pages stay few and hot
  return string.format("%s/%012d:%s", agent_id, ordinal, h), h
end

-- Letta 0.16.8 stores an item's tags as a set (passage_manager.create_agent_passage_async:
-- list(set(tags))): a tag given twice is sent once, in first-seen order.
local function unique(list)
  local seen, out = {}, {}
  for _, t in ipairs(list) do
    if not seen[t] then seen[t], out[#out + 1] = true, t end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Failures. Three kinds: about one item (a refusal of it: reported by line, the run goes on),
-- ambiguous (reset, timeout, 5xx: it may have landed, look before sending again), and those no
-- item can get past, which stop the run at once instead of trying every item against them.

-- The whole run is blocked: no connection (TLS, refused, DNS), no access (401, 403), or no agent
-- (404: Letta answers it on this route when the agent is gone).
local function blocks_run(err)
  if err.status == 0 then return err.code == "tls" or err.code == "connect" or err.code == "resolve" end
  return err.status == 401 or err.status == 403 or err.status == 404
end

-- The server certainly did not store it (errors.not_applied): its pending entry can go.
local unsent = errors.not_applied

-- ---------------------------------------------------------------------------------------------
-- Runs: each import is recorded in the store (namespace "imports", keys "run:<hash>" beside the
-- journal's "<agent_id>/..." keys), with what resuming it takes, so that one that stopped before
-- the end can be found (import.interrupted) and continued with the same command.

local RUN_PREFIX = "run:"

local function shell_quote(a)
  if a:match("^[%w%-_./:,=@+]+$") then return a end
  return "'" .. a:gsub("'", "'\\''") .. "'"
end

local function absolute(path)
  if path == "-" or path:sub(1, 1) == "/" then return path end
  local cwd = os.getenv("PWD")
  if not cwd or cwd == "" then
    local p = io.popen("pwd")
    cwd = p and p:read("l") or "."
    if p then p:close() end
  end
  return (cwd:gsub("/$", "")) .. "/" .. path:gsub("^%./", "")
end

-- The arguments of scripts/import.lua that continue this run: the same agent, input and options.
local function resume_args(opts, source)
  local args = { opts.agent_id, source }
  local function add(flag, v)
    if v ~= nil then
      args[#args + 1] = flag
      args[#args + 1] = tostring(v)
    end
  end
  add("--format", opts.format)
  if opts.tags and #opts.tags > 0 then add("--tags", table.concat(opts.tags, ",")) end
  add("--chunk-size", opts.chunk_size)
  add("--concurrency", opts.concurrency)
  if opts.dedupe == "content" then add("--dedupe", "content") end
  return args
end

-- import.interrupted(store) -> list of {agent_id=, source= (absolute path, or "stdin"), pending=,
-- done=, started=, error=, command=} for the runs that stopped before the end of their input and
-- whose process is gone (killed, or stopped by a failure: error says which), oldest first.
-- pending: items that run was sending when it stopped (the next run looks for them before sending
-- again); done: items it had landed; command: what continues it (from the directory of your
-- choice: the source path is absolute). A run that reached the end of its input is not listed.
function _M.interrupted(store)
  return store:read(function(txn)
    local runs, by_agent = {}, {}
    for key, r in txn:each("imports", RUN_PREFIX) do
      if not r.finished and not (r.pid and core.alive(r.pid)) then
        local args = {}
        for i, a in ipairs(r.args or {}) do args[i] = shell_quote(a) end
        local run = { agent_id = r.agent_id, source = r.source == "-" and "stdin" or r.source, pending = 0,
                      done = r.done or 0, started = r.started, error = r.error,
                      command = "bin/lettash scripts/import.lua " .. table.concat(args, " ") }
        runs[#runs + 1] = run
        by_agent[r.agent_id] = by_agent[r.agent_id] or {}
        by_agent[r.agent_id][key:sub(#RUN_PREFIX + 1)] = run
      end
    end
    -- the pending items of each run, from its agent's journal (one pass per agent)
    for agent_id, of_run in pairs(by_agent) do
      for _, j in txn:each("imports", agent_id .. "/") do
        local run = j.s == "pending" and of_run[j.r]
        if run then run.pending = run.pending + 1 end
      end
    end
    table.sort(runs, function(x, y) return (x.started or "") < (y.started or "") end)
    return runs
  end)
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

-- import.run{client=, store=, agent_id=, source="file" | "-", format="jsonl"|"csv"|"text", tags={},
-- concurrency=16, chunk_size=8000, dedupe="position"|"content", dry_run=false,
-- progress=nil|false|"tty"|"lines", progress_final=true, max_attempts=6} -> summary {items, sent,
-- skipped (= already_present), already_present, recovered, duplicates_removed, bad, failed,
-- bad_lines = {{line=, error=}...}, failures = {{line=, error=}...}, seconds, rate, format, dedupe,
-- dry_run}. Raises when the run stops on a failure no item can get past (the agent, checked before
-- the first item; TLS; 401/403; the server unreachable): "letta.import: <why>"; what it had sent is
-- journalled, and the same call continues it.
function _M.run(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'run' (table expected)", 2) end
  local agent_id, source = opts.agent_id, opts.source or "-"
  if type(agent_id) ~= "string" or agent_id == "" then error("bad argument #1 to 'run' (agent_id expected)", 2) end
  local format = opts.format or (type(source) == "string" and source:match("%.csv$") and "csv")
                 or (type(source) == "string" and source:match("%.txt$") and "text") or "jsonl"
  local reader_of = _M.readers[format]
  if not reader_of then error("bad argument #1 to 'run' (format must be jsonl, csv or text)", 2) end
  local dedupe = opts.dedupe or "position"
  if dedupe ~= "position" and dedupe ~= "content" then error("bad argument #1 to 'run' (dedupe must be position or content)", 2) end
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
  local function close_input()
    if fh ~= io.stdin and type(source) == "string" then fh:close() end
  end
  local next_raw = reader_of(fh, limit)

  local summary = { items = 0, sent = 0, skipped = 0, already_present = 0, recovered = 0, duplicates_removed = 0,
                    bad = 0, failed = 0, bad_lines = {}, failures = {}, dry_run = opts.dry_run or false,
                    format = format, dedupe = dedupe }
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
        it.key, it.hash = item_key(agent_id, ordinal, it, dedupe) -- (as given: keys of earlier runs stay valid)
        it.tags = unique(tags)
        it.marker = _M.MARKER_PREFIX .. it.hash
        return it
      end
    end
  end

  local started = loop.now()
  local function finish()
    summary.already_present = summary.skipped
    summary.seconds = loop.now() - started
    summary.rate = summary.sent / math.max(summary.seconds, 1e-3)
    close_input()
    if fatal then error("letta.import: " .. fatal, 0) end
    return summary
  end

  if opts.dry_run then
    while next_item() do end
    return finish()
  end

  local client, store = opts.client, opts.store
  local passages = client.agents.passages

  -- The agent first: a wrong agent id, password or certificate, or a server that is down, stops
  -- the run here in one request, before any item is journalled.
  local ok, err = pcall(client.agents.retrieve, client.agents, agent_id)
  if not ok then
    close_input()
    error(errors.is(err) and "letta.import: " .. tostring(err) or err, 0)
  end

  -- This run in the store, until it reaches the end of its input.
  local run_args = resume_args(opts, type(source) == "string" and absolute(source) or "-")
  local identity = {} -- what makes the items: all but --concurrency (a resume may change it)
  for i, a in ipairs(run_args) do
    if a ~= "--concurrency" and run_args[i - 1] ~= "--concurrency" then identity[#identity + 1] = a end
  end
  local run_id = core.hash(table.concat(identity, "\0"))
  local run = { agent_id = agent_id, source = run_args[2], args = run_args, pid = core.pid(),
                started = os.date("!%Y-%m-%dT%H:%M:%SZ"), done = 0 }
  local function note_run(fields)
    for k, v in pairs(fields or {}) do run[k] = v end
    run.done = summary.sent + summary.skipped + summary.recovered
    store:update(function(txn) txn:put("imports", RUN_PREFIX .. run_id, run) end)
  end
  note_run()

  local report = progress_reporter(opts, summary, total_bytes, fh)
  local max_attempts = opts.max_attempts or 6
  local limit_inflight, inflight = concurrency, 0 -- halved on 429/503, grows back on success
  local stop -- the failure that stops the run: no item can get past it
  local sending = {} -- keys being sent (with dedupe = "content", a repeat waits for the first)

  local function halt(e) stop = stop or e end

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

  local function failed(it, e, note)
    summary.failed = summary.failed + 1
    summary.failures[#summary.failures + 1] = { line = it.line, error = tostring(e) .. (note or "") }
  end

  -- Sends an item journalled as pending until it landed or was refused, or the run stops.
  -- recovering: an earlier run was sending it when it stopped, so it may be on the server already.
  local function deliver(it, recovering)
    local delay = 0.25
    local maybe = recovering -- an attempt may have landed, and no look since has told
    -- A send that timed out may still be applied later (the server can be working on it still):
    -- this run then only looks for it, never sends it again (late holds that timeout).
    local late, last
    -- Looks for the item: true when it is there (journalled done), false when it is not, nil
    -- when looking failed (the run stops if that failure blocks it).
    local function look()
      local lok, id = pcall(landed, it)
      if not lok then
        if not errors.is(id) then error(id, 0) end
        last = id
        if blocks_run(id) then halt(id) end
        return nil
      end
      if id then
        journal(it, "done", id)
        if recovering then summary.recovered = summary.recovered + 1 else summary.sent = summary.sent + 1 end
        return true
      end
      if not late then maybe = false end -- not there, and nothing in flight can land any more
      return false
    end
    for attempt = 1, max_attempts do
      if stop then -- left pending if it may have landed (the next run looks), else forgotten
        if not maybe then journal(it, nil) end
        return
      end
      local found
      if maybe or late then found = look() end
      if found then return end
      if not maybe and not late then
        local cok, res = pcall(passages.create, passages, agent_id,
                               { text = it.text, tags = json.array({ it.marker, table.unpack(it.tags) }), created_at = it.created_at })
        if cok then
          journal(it, "done", res[1] and res[1].id)
          summary.sent = summary.sent + 1
          if limit_inflight < concurrency then limit_inflight = limit_inflight + 1 end
          return
        end
        if not errors.is(res) then error(res, 0) end
        last = res
        if res.status == 429 or res.status == 503 then -- the server asks us to slow down
          limit_inflight = math.max(1, limit_inflight // 2)
        end
        if blocks_run(res) then
          if unsent(res) then journal(it, nil) end -- else pending: the next run looks for it first
          return halt(res)
        elseif unsent(res) and res.status ~= 429 and res.status ~= 408 then -- refused: sending again will not help
          journal(it, nil)
          return failed(it, res)
        elseif not unsent(res) then -- reset, timeout, 5xx: it may have landed
          maybe = true
          if res.code == "timeout" then late = res end
          if look() then return end
        end
      end
      if attempt < max_attempts and not stop then
        loop.sleep(delay * (1 - 0.25 * math.random()))
        delay = math.min(delay * 2, 8)
      end
    end
    if stop then
      if not maybe then journal(it, nil) end
      return
    end
    -- still pending in the journal when it may have landed: the next run looks before sending
    if not maybe then journal(it, nil) end
    failed(it, last, late and " (it may still land: run the import again, it looks for it before sending)" or nil)
  end

  local function send(it)
    while sending[it.key] do loop.sleep(0.02) end -- the same item, earlier in the input
    -- one write transaction: read the item's state, and note the intent to send it
    local prior = store:update(function(txn)
      local j = txn:get("imports", it.key)
      if not j then txn:put("imports", it.key, { s = "pending", line = it.line, r = run_id }) end
      return j
    end)
    if prior and prior.s == "done" then
      summary.skipped = summary.skipped + 1
      return
    end
    sending[it.key] = true
    local sok, e = pcall(deliver, it, prior ~= nil)
    sending[it.key] = nil
    if not sok then error(e, 0) end
  end

  store:durable(false) -- the journal is written per item: no disk wait per commit
  local handled = 0
  local function worker()
    while not stop do
      while inflight >= limit_inflight and not stop do loop.sleep(0.02) end
      if stop then return end
      local it = next_item()
      if not it then return end
      inflight = inflight + 1
      local wok, e = pcall(send, it)
      inflight = inflight - 1
      handled = handled + 1
      if handled % 256 == 0 then -- the journal's pages: flat resident memory; and the run's progress
        store:trim()
        note_run()
      end
      if not wok then failed(it, e) end
      report()
    end
  end
  local workers = {}
  for i = 1, concurrency do workers[i] = loop.spawn(worker) end
  local gok, gerr = pcall(loop.gather, workers)
  store:durable(true)
  if not gok then
    close_input()
    error(gerr, 0)
  end
  if stop then
    report(true, true)
    close_input()
    local why = tostring(stop)
    note_run{ error = why }
    error(string.format("letta.import: stopped: %s (%d sent before it stopped; the same command continues)",
                        why, summary.sent + summary.recovered), 0)
  end
  report(true)
  note_run{ finished = os.date("!%Y-%m-%dT%H:%M:%SZ") }
  return finish()
end

return _M
