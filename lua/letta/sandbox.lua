-- The environment of scripts a host did not write (lh_config.sandbox): an allow-list of libraries
-- (no io, os.execute, package/require, debug, loadfile, dofile, binary chunks, string.dump),
-- frozen globals, and a Letta client bound to the host's server whose token the script cannot
-- read (it lives in the C transport, which also refuses any URL outside that server). The
-- instruction budget and the memory cap are enforced in C (src/lh_host.c).
local letta = require "letta"
local loop = require "letta.loop"

local type, error, pairs, setmetatable, tostring = type, error, pairs, setmetatable, tostring
local load, collectgarbage, rawget, xpcall = load, collectgarbage, rawget, xpcall

local _M = {}

-- A copy of a library, without the names in `drop`: the script may change its copy, not ours.
local function copy(lib, drop)
  local t = {}
  for k, v in pairs(lib) do
    if not (drop and drop[k]) then t[k] = v end
  end
  return t
end

-- sandbox.env({base_url=, token=}, budget_spent) -> the environment table for untrusted chunks.
-- budget_spent() tells whether the instruction budget of the current host call ran out.
function _M.env(opts, budget_spent)
  -- Nothing may hold the host inside its call (see loop.refuse_blocking): requests and sleeps
  -- run in tasks, which the host steps.
  loop.refuse_blocking("a wait outside a task would block the host: run it in a task (letta.spawn)")
  local client = letta.client{ base_url = opts.base_url, token = opts.token }
  opts.token = nil
  local env
  env = {
    _VERSION = _VERSION,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    print = print, rawequal = rawequal, rawget = rawget, rawlen = rawlen, select = select,
    tonumber = tonumber, tostring = tostring, type = type,
    getmetatable = getmetatable,
    -- Lua runs finalizers with hooks off: a __gc could loop past the instruction budget
    setmetatable = function(t, mt)
      if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("setmetatable: __gc metamethods are not allowed in the sandbox", 2)
      end
      return setmetatable(t, mt)
    end,
    -- and message handlers with hooks off after a hook's error: skip them once the budget is spent
    xpcall = function(f, msgh, ...)
      return xpcall(f, function(e)
        if budget_spent and budget_spent() then return e end
        return msgh(e)
      end, ...)
    end,
    string = copy(string, { dump = true }),
    table = copy(table), math = copy(math), utf8 = copy(utf8), coroutine = copy(coroutine),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
    -- only text chunks, in this environment unless another is given
    load = function(chunk, name, mode, e)
      if mode ~= nil and mode ~= "t" then error("load: binary chunks are not allowed in the sandbox", 2) end
      return load(chunk, name, "t", e or env)
    end,
    collectgarbage = function(what)
      if what == nil or what == "collect" or what == "count" then return collectgarbage(what) end
      error("collectgarbage: only \"count\" and \"collect\" in the sandbox", 2)
    end,
    letta = {
      _VERSION = letta._VERSION, json = copy(letta.json), spawn = letta.spawn, gather = letta.gather,
      sleep = letta.sleep, is_error = letta.is_error,
    },
    client = client,
    exports = {}, -- functions the host may call (lh_call): scripts cannot make globals
  }
  -- the string metatable is shared by every string: the script may not change it
  getmetatable("").__metatable = "locked"
  return setmetatable(env, {
    __index = function(_, k) error("attempt to read undefined global '" .. tostring(k) .. "'", 2) end,
    __newindex = function(_, k)
      error("attempt to create global '" .. tostring(k) .. "' (globals are frozen in the sandbox: use locals, or exports)", 2)
    end,
    __metatable = "locked",
  })
end

return _M
