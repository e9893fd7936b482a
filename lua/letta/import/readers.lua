-- The readers of letta.import: each turns an open file into an iterator of items {line=, text=,
-- tags=, created_at=} or bad lines {line=, error=} (fatal = true: nothing after it can be read).
-- Everything Letta 0.16.8 would refuse is a bad line here, caught by --dry-run too.
local json = require "letta.json"

local type, pcall, ipairs, tostring, tonumber, string, table, math, utf8, coroutine, setmetatable, os =
  type, pcall, ipairs, tostring, tonumber, string, table, math, utf8, coroutine, setmetatable, os

local _M = {}

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

-- created_at (as check_created_at lets through) in the form Python's datetime.fromisoformat reads,
-- which is how the archive routes read it (archive_manager.create_passages_in_archive_async), where
-- the agent route takes pydantic's wider set: a Unix time becomes UTC, the separator T, a comma
-- a point, the fraction at most 6 digits (pydantic keeps microseconds), Z and +HH[MM] +HH:MM.
function _M.iso8601(s)
  if s:match("^%-?%d+$") or s:match("^%-?%d+%.%d+$") then
    local t = tonumber(s)
    if math.abs(t) > 2e10 then t = t / 1000 end
    local whole = math.floor(t)
    local us = math.floor((t - whole) * 1e6 + 0.5)
    if us >= 1000000 then whole, us = whole + 1, 0 end
    return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. (us > 0 and string.format(".%06d", us) or "") .. "+00:00"
  end
  local date, rest = s:match("^(%d%d%d%d%-%d%d%-%d%d)(.*)$")
  if not date or rest == "" then return s end
  local hm, after = rest:match("^[Tt_ ](%d%d:%d%d)(.*)$")
  if not hm then return s end
  local sec, frac = after:match("^(:%d%d)[.,](%d+)")
  if frac then after = after:sub(5 + #frac) else
    sec = after:match("^:%d%d")
    if sec then after = after:sub(4) end
  end
  local zone = after
  if after == "Z" or after == "z" then zone = "+00:00"
  elseif after:match("^[+-]%d%d$") then zone = after .. ":00"
  elseif after:match("^[+-]%d%d%d%d$") then zone = after:sub(1, 3) .. ":" .. after:sub(4) end
  return date .. "T" .. hm .. (sec or ":00") .. (frac and "." .. frac:sub(1, 6) or "") .. zone
end

-- JSON null is "not given" (the server reads it so).
local function given(v) if v == json.null then return nil end return v end

-- ---------------------------------------------------------------------------------------------
-- JSONL: an object per line, {"text": ..., "tags": [...], "created_at": ...}.

-- The item of a non-blank line n, or its bad line.
local function jsonl_item(n, l, limit)
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

function _M.jsonl(fh, limit)
  local next_line = lines(fh)
  return function()
    while true do
      local n, l = next_line()
      if not n then return nil end
      if not l:match("^%s*$") then return jsonl_item(n, l, limit) end
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- CSV (RFC 4180) with a header naming the columns: text (required), tags (separated by ';'),
-- created_at. Quoted fields may hold commas, quotes ("") and line breaks.

-- The next record: its first line and its fields, or its first line, nil and an error.
local function csv_record(next_line)
  local n, l = next_line()
  if not n then return nil end
  local fields, field, i, quoted = {}, {}, 1, false
  while true do
    local c = l:sub(i, i)
    if quoted then
      if c == "" then -- a line break inside quotes
        local n2, l2 = next_line()
        if not n2 then return n, nil, "unterminated quoted field" end
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
    elseif c == "," or c == "" then
      fields[#fields + 1] = table.concat(field)
      if c == "" then return n, fields end
      field, i = {}, i + 1
    else
      field[#field + 1] = c
      i = i + 1
    end
  end
end

-- The item of record n (fields), header giving the columns' positions, or its bad line.
local function csv_item(n, fields, header, limit)
  local tags
  if header.tags and fields[header.tags] and fields[header.tags] ~= "" then
    tags = {}
    for t in fields[header.tags]:gmatch("[^;]+") do tags[#tags + 1] = t:match("^%s*(.-)%s*$") end
  end
  local created = header.created_at and fields[header.created_at]
  local item = { line = n, text = fields[header.text], tags = tags, created_at = created ~= "" and created or nil }
  local bad = check_text(item, limit) or check_tags(item.tags)
    or (item.created_at and check_created_at(item.created_at) or nil)
  if bad then return { line = n, error = bad } end
  return item
end

function _M.csv(fh, limit)
  local next_line = lines(fh)
  local header
  return function()
    while true do
      local n, fields, err = csv_record(next_line)
      if not n then return nil end
      if err then return { line = n, error = err } end
      if not header then
        header = {}
        for i, name in ipairs(fields) do header[name:match("^%s*(.-)%s*$"):lower()] = i end
        if not header.text then return { line = n, error = "the header has no 'text' column", fatal = true } end
      elseif not (#fields == 1 and fields[1] == "") then
        return csv_item(n, fields, header, limit)
      end
    end
  end
end

-- ---------------------------------------------------------------------------------------------
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

-- The input as spans of lines: an iterator of (text, ended), ended true when the line ends after
-- it. A block's last bytes are held for the next one when they may be a CR before its LF or part
-- of a character, so that each span is whole characters and a line's CR is always seen.
local function spans(fh, block)
  local data, pos, carry, eof = "", 1, "", false
  return function()
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
end

-- The open paragraph: first (the line it starts at), parts and len (its text not yet handed out:
-- len <= limit between adds), strip (drop the whitespace that comes next: it follows a cut),
-- skipping (the rest of a paragraph with a line that is not UTF-8). emit(item) hands items out.
local Paragraph = {}
Paragraph.__index = Paragraph

local function paragraph(limit, emit)
  return setmetatable({ limit = limit, emit = emit, parts = {}, len = 0, strip = false, skipping = false }, Paragraph)
end

-- Hands out the full chunks of text from pos (the paragraph goes on past them): the same cut as
-- on the whole text. Returns where the rest starts.
function Paragraph:cut(text, pos)
  local limit = self.limit
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
    if piece ~= "" then self.emit({ line = self.first, text = piece }) end
  end
  return pos
end

-- Appends s to the paragraph, and hands out the chunks that are full.
function Paragraph:add(s)
  if self.strip then
    local i = s:find("%S")
    if not i then return end
    s, self.strip = s:sub(i), false
  end
  self.parts[#self.parts + 1], self.len = s, self.len + #s
  if self.len <= self.limit then return end
  local text = table.concat(self.parts)
  local rest = text:sub(self:cut(text, 1))
  self.parts, self.len, self.strip = { rest }, #rest, rest == ""
end

function Paragraph:close()
  if self.first and not self.skipping and self.len > 0 then
    local text = table.concat(self.parts)
    if text ~= "" then self.emit({ line = self.first, text = text }) end
  end
  self.first, self.parts, self.len, self.strip, self.skipping = nil, {}, 0, false, false
end

-- A line's span s (of line lineno) when the line is not blank so far: ws holds its leading
-- whitespace seen while it looked blank. Returns whether the line is still blank.
function Paragraph:line(s, lineno, blank, ws)
  if blank then
    if not s:find("%S") then
      ws[#ws + 1] = s -- its leading whitespace, until the line turns out blank or not
      return true
    end
    -- the line is not blank: it opens or continues a paragraph
    if self.first == nil then
      self.first = lineno
    elseif not self.skipping then
      self:add("\n")
    end
    if not self.skipping then for _, w in ipairs(ws) do self:add(w) end end
  end
  if not self.skipping then
    if utf8.len(s) then
      self:add(s)
    else
      self.skipping = true
      self.emit({ line = self.first, error = "not valid UTF-8" })
    end
  end
  return false
end

function _M.text(fh, limit, block) -- block: bytes read at a time (tests make it small)
  local produce = coroutine.wrap(function()
    local p = paragraph(limit, coroutine.yield)
    local lineno, ws, blank = 1, {}, true -- ws: the current line's text while it is only whitespace
    for s, ended in spans(fh, block or BLOCK) do
      if ended and s:byte(-1) == 13 then s = s:sub(1, -2) end
      blank = p:line(s, lineno, blank, ws)
      if ended then
        if blank and p.first then p:close() end
        ws, blank, lineno = {}, true, lineno + 1
      end
    end
    p:close()
  end)
  local done = false
  return function()
    if done then return nil end
    local it = produce()
    if it == nil then done = true end
    return it
  end
end

return _M
