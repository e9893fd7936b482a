-- What the interactive REPL adds to plain Lua: `letta` preloaded, and results printed readably.
local pretty = require "letta.pretty"
local json = require "letta.json"

local select, io, os, tostring, type, table, pcall = select, io, os, tostring, type, table, pcall

local _M = {}

-- `letta` is loaded; `client` is ready when LETTA_BASE_URL says where the server is.
function _M.start()
  _G.letta = require "letta"
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
