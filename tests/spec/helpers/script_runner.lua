-- Runs the workflow scripts (scripts/<name>.lua) as children `bin/lettash scripts/X.lua ...`
-- against an emulator, each test with a store of its own, and checks what every script promises:
-- exit 0 on success, else exactly one line "<script>: <message>" on stderr and exit 1.
--
--   local ctx = {}                       -- the spec's hooks set ctx.emu and ctx.store
--   local sr = script_runner.new(ctx)
--   local out = sr.ok("agents", { "list" })
--   local msg = sr.fails("search", { "agent-…", "" })
-- or, in a describe block, with the hooks that set ctx (script_runner.suite below):
--   local sr, ctx = script_runner.suite(_ENV, function(emu, admin) ... end)
local support = require "support"
local emulator = require "emulator"
local json = require("letta").json

local _M = {}

-- The path of scripts/<script>.lua.
function _M.path(script) return support.root .. "/scripts/" .. script .. ".lua" end

-- env({url=, store=, env=}) -> the environment the scripts run in: the server at url, the store,
-- nothing else from ours (no password, model or CA), then opts.env (false unsets).
function _M.env(opts)
  local env = { LETTA_BASE_URL = opts.url, LETTA_STORE = opts.store, LETTA_API_KEY = false, LETTA_PASSWORD = false,
                LETTA_MODEL = false, LETTA_EMBEDDING = false, LETTA_CA_FILE = false, SSL_CERT_FILE = false,
                CURL_CA_BUNDLE = false, LETTASH_LUA_PATH = support.lua_path }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return env
end

-- run(script, args, {url=, store=, env=, stdin=, cwd=}) -> {code=, stdout=, stderr=}: the script
-- as a child in env(opts).
function _M.run(script, args, opts)
  local argv = { _M.path(script) }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return support.lettash(argv, { env = _M.env(opts), stdin = opts.stdin, cwd = opts.cwd })
end

function _M.new(ctx)
  local r = {}

  -- The options of _M.run on ctx's emulator and store (opts.store: another store).
  local function on_ctx(opts)
    opts = opts or {}
    return { url = ctx.emu.url, store = opts.store or ctx.store, env = opts.env, stdin = opts.stdin, cwd = opts.cwd }
  end

  -- env({env=, store=}) -> the environment run gives the scripts (for a spec's own command lines).
  function r.env(opts) return _M.env(on_ctx(opts)) end

  -- run(script, args, {env=, stdin=, store=, cwd=}) -> {code=, stdout=, stderr=}
  function r.run(script, args, opts) return _M.run(script, args, on_ctx(opts)) end

  -- The run must succeed (exit 0, nothing on stderr unless opts.stderr_ok); returns its stdout.
  function r.ok(script, args, opts)
    local res = r.run(script, args, opts)
    assert(res.code == 0, string.format("%s exited %d: %s", script, res.code, res.stderr))
    return res.stdout, res
  end

  -- The run must fail with exactly one line "<script>: <message>" on stderr; returns the message.
  function r.fails(script, args, opts, code)
    local res = r.run(script, args, opts)
    assert(res.code == (code or 1), string.format("%s exited %d, expected %d: %s%s", script, res.code, code or 1,
                                                  res.stdout, res.stderr))
    local msg = res.stderr:match("^" .. script .. ": ([^\n]+)\n$")
    assert(msg, "expected one line '" .. script .. ": ...' on stderr, got: " .. res.stderr)
    return msg, res
  end

  -- The run with --json must succeed; returns its stdout decoded.
  function r.json(script, args, opts)
    local a = { "--json" }
    for _, x in ipairs(args or {}) do a[#a + 1] = x end
    return json.decode((r.ok(script, a, opts)))
  end

  return r
end

-- suite(_ENV, set [, {store=, each=}]) -> runner, ctx: in a describe block, emulator.suite's
-- emulator and client (handed to set(emu, admin)), and for every test a temporary directory ctx.dir
-- (removed after it) with the store at ctx.store, dir/<opts.store or "store">; each() runs after
-- the emulator's reset and ctx are ready. (busted's hooks live in the spec's environment.)
function _M.suite(env, set, opts)
  opts = opts or {}
  local ctx = {}
  emulator.suite(env, function(e, c)
    ctx.emu = e
    set(e, c)
  end, { each = function()
    ctx.dir = support.tmpdir()
    ctx.store = ctx.dir .. "/" .. (opts.store or "store")
    if opts.each then opts.each() end
  end })
  env.after_each(function() support.rmdir(ctx.dir) end)
  return _M.new(ctx), ctx
end

return _M
