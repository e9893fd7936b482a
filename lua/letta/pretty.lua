-- Readable rendering of Lua values for people: the REPL prints results with it. Tables come out
-- nested with sorted keys, short ones on one line, deep ones cut at a depth limit, cycles marked;
-- objects with a __tostring (a client, a store, an error) as that summary, not their internals.
local json = require "letta.json"

local type, tostring, pairs, next, string, table, math = type, tostring, pairs, next, string, table, math
local getmetatable, pcall, io = getmetatable, pcall, io

local _M = {}

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (TYPE_ORDER[ta] or 9) < (TYPE_ORDER[tb] or 9) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function scalar(v)
  if type(v) == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if v == json.null then return "null" end
  if math.type(v) == "float" and v == math.floor(v) and v == v and math.abs(v) < 2^53 then
    return string.format("%.1f", v)
  end
  return tostring(v)
end

local function key_repr(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  return "[" .. scalar(k) .. "]"
end

-- An object's own summary (its __tostring), unless opts.raw asks for the fields; nil if it has none
-- or it fails (then the fields are shown).
local function summary(v, opts)
  if opts.raw then return nil end
  local mt = getmetatable(v)
  if type(mt) ~= "table" or mt.__tostring == nil then return nil end
  local ok, text = pcall(tostring, v)
  return ok and type(text) == "string" and text or nil
end

local function render(v, opts, depth, seen, indent)
  if type(v) ~= "table" then return scalar(v) end
  if seen[v] then return "<cycle>" end
  local text = summary(v, opts)
  if text then return text end
  if next(v) == nil then
    local mt = getmetatable(v)
    return (mt and mt.__jsontype == "array") and "[]" or "{}"
  end
  if depth >= opts.depth then return "{...}" end
  seen[v] = true
  local n = #v
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  local limit = depth == 0 and math.min(opts.items, opts.rows) or opts.items
  local items, nested = {}, false
  local shown = 0
  -- A table holding tables with content is laid out over lines; flat ones may fit on one.
  local function add(prefix, value)
    local text = render(value, opts, depth + 1, seen, indent .. "  ")
    if text:find("^{[ \n]") then nested = true end
    items[#items + 1] = prefix .. text
  end
  for i = 1, n do
    shown = shown + 1
    if shown > limit then break end
    add("", v[i])
  end
  for _, k in ipairs(keys) do
    shown = shown + 1
    if shown > limit then break end
    add(key_repr(k) .. " = ", v[k])
  end
  local total = n + #keys
  if total > limit then items[#items + 1] = string.format("... (%d more)", total - limit) end
  seen[v] = nil
  local one_line = "{ " .. table.concat(items, ", ") .. " }"
  if not nested and #one_line + #indent <= opts.width then return one_line end
  return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

-- pretty.repr(v, {depth = 4, items = 100, width = 80, rows = items, raw = false}) -> string
-- items caps the entries shown of every table, rows those of the outer one only (the REPL shows
-- the first rows of a long list); raw shows the fields of objects that have a __tostring.
function _M.repr(v, opts)
  opts = opts or {}
  local o = { depth = opts.depth or 4, items = opts.items or 100, width = opts.width or 80,
              rows = opts.rows or math.huge, raw = opts.raw }
  return render(v, o, 0, {}, "")
end

-- pretty.all(v [, opts]): prints v whole, every entry of every table (depth still applies):
-- what the REPL points to when it shows only the first rows of a long list.
function _M.all(v, opts)
  local o = {}
  for k, x in pairs(opts or {}) do o[k] = x end
  o.items, o.rows = math.huge, math.huge
  io.stdout:write(_M.repr(v, o), "\n")
  io.stdout:flush()
end

return _M
