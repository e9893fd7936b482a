-- Runs the workflow scripts (scripts/<name>.lua) as children `bin/lettash scripts/X.lua ...`
-- against an emulator, each test with a store of its own, and checks what every script promises:
-- exit 0 on success, else exactly one line "<script>: <message>" on stderr and exit 1.
--
--   local ctx = {}                       -- the spec's hooks set ctx.emu and ctx.store
--   local sr = script_runner.new(ctx)
--   local out = sr.ok("agents", { "list" })
--   local msg = sr.fails("search", { "agent-…", "" })
local support = require "support"
local json = require("letta").json

local _M = {}

function _M.new(ctx)
  local r = {}

  -- run(script, args, {env=, stdin=, store=}) -> {code=, stdout=, stderr=}
  function r.run(script, args, opts)
    opts = opts or {}
    local env = { LETTA_BASE_URL = ctx.emu.url, LETTA_STORE = opts.store or ctx.store, LETTA_API_KEY = false,
                  LETTA_PASSWORD = false, LETTA_MODEL = false, LETTA_EMBEDDING = false,
                  LETTASH_LUA_PATH = support.lua_path }
    for k, v in pairs(opts.env or {}) do env[k] = v end
    local argv = { support.root .. "/scripts/" .. script .. ".lua" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return support.lettash(argv, { env = env, stdin = opts.stdin, cwd = opts.cwd })
  end

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

return _M
