-- What the interactive REPL adds to plain Lua: `letta` preloaded, and results printed readably.
local pretty = require "letta.pretty"
local json = require "letta.json"

local select, io, tostring, type, table = select, io, tostring, type, table

local _M = {}

function _M.start()
  _G.letta = require "letta"
end

-- Prints REPL results: tables through letta.pretty, everything else as print would.
function _M.show(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do
    local v = select(i, ...)
    -- Like lua.c for scalars (strings unquoted); tables and JSON null readably.
    out[i] = (type(v) == "table" or v == json.null) and pretty.repr(v) or tostring(v)
  end
  io.stdout:write(table.concat(out, "\t"), "\n")
  io.stdout:flush()
end

return _M
