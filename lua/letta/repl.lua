-- What the interactive REPL adds to plain Lua: `letta` preloaded, results printed readably (long
-- lists cut to their first rows, the last result kept in `_`), and the check that keeps lines
-- holding secrets out of the history file.
local pretty = require "letta.pretty"
local json = require "letta.json"

local select, io, os, tostring, type, table, pcall, pairs, getmetatable, string =
  select, io, os, tostring, type, table, pcall, pairs, getmetatable, string

local _M = {}

local ROWS = 20 -- rows of a long list the REPL shows; pretty.all(_) shows them all

-- `letta` and `pretty` are loaded; `client` is ready when LETTA_BASE_URL says where the server is.
function _M.start()
  _G.letta = require "letta"
  if _G.pretty == nil then _G.pretty = pretty end
  local url = os.getenv("LETTA_BASE_URL")
  if url and url ~= "" then
    local ok, c = pcall(_G.letta.client)
    if ok then
      _G.client = c
      io.stderr:write("client: ", tostring(c), "\n")
    else
      io.stderr:write("client not created: ", tostring(c), "\n")
    end
  end
end

-- A table shown as a list: its own summary (__tostring) takes precedence.
local function long_list(v)
  if type(v) ~= "table" or #v <= ROWS then return false end
  local mt = getmetatable(v)
  return not (type(mt) == "table" and mt.__tostring)
end

local function show_one(v)
  if long_list(v) then
    local total = 0
    for _ in pairs(v) do total = total + 1 end
    return string.format("%d items, showing the first %d (all: pretty.all(_))\n", total, ROWS)
      .. pretty.repr(v, { rows = ROWS })
  end
  -- Like lua.c for scalars (strings unquoted); tables and JSON null readably.
  return (type(v) == "table" or v == json.null) and pretty.repr(v) or tostring(v)
end

-- Prints REPL results: tables through letta.pretty, everything else as print would. The first
-- result becomes the global `_`, so a list cut short can be seen whole with pretty.all(_).
function _M.show(...)
  local n = select("#", ...)
  if n > 0 then _G._ = (...) end
  local out = {}
  for i = 1, n do out[i] = show_one((select(i, ...))) end
  io.stdout:write(table.concat(out, "\t"), "\n")
  io.stdout:flush()
end

-- ---------------------------------------------------------------------------------------------
-- History: ~/.lettash_history outlives the session and is not treated as a secret, so a line that
-- may hold a token or password is kept out of it (and out of the up-arrow). Erring towards
-- dropping a line: losing some history is better than keeping a secret.

-- A name that says its value is a secret (token, access_token, LETTA_PASSWORD, api_key...).
local SECRET_NAMES = { "token", "passw", "pwd", "secret", "api_?key", "apikey", "credential", "authorization" }

-- 8-4-4-4-12 hex: the ids Letta gives (agent-<uuid>, block-<uuid>) are not secrets.
local UUID = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x"

-- Whether a run of base64 / url-safe characters looks random: 20 or more of them, letters and
-- digits alternating at least 3 times (a token does; an identifier such as import_2024_v2, a
-- date or a path rarely does).
local function random_looking(run)
  if #run < 20 then return false end
  local changes, last = 0, nil
  for c in run:gmatch("%w") do
    local class = c:match("%d") and "d" or "a"
    if last and class ~= last then changes = changes + 1 end
    last = class
  end
  return changes >= 3
end

-- repl.is_secret(line) -> whether the line may hold a secret the user typed: the value of
-- LETTA_PASSWORD or LETTA_API_KEY; a string given to a secret-named field (token = "...",
-- ["password"] = '...', password == "..."); "Bearer xxx"; a key such as sk-... or sk-let-...;
-- a long random-looking string. Letta ids (agent-<uuid>) and ordinary code are not.
function _M.is_secret(line)
  -- Read from the environment at each line, so a token exported by the init script is covered.
  for _, name in pairs { "LETTA_PASSWORD", "LETTA_API_KEY" } do
    local v = os.getenv(name)
    if v and v ~= "" and line:find(v, 1, true) then return true end
  end
  local lower = line:lower()
  for _, name in pairs(SECRET_NAMES) do
    -- the name, maybe a closing quote or bracket, then =, :, == or ~= and a string opening
    if lower:find(name .. "[%w_]*[\"'%]]?%s*[=:~]=?%s*[\"'%[]") then return true end
  end
  if lower:find("bearer%s+[%w%-._~+/]") then return true end
  if lower:find("%f[%w]sk%-" .. ("[%w_%-]"):rep(8)) then return true end
  for run in line:gsub(UUID, " "):gmatch("[%w+/=_%-]+") do
    if random_looking(run) then return true end
  end
  return false
end

return _M
