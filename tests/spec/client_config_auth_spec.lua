-- The client's configuration and authentication against an emulator in secure mode (--password):
-- 401 without or with a wrong token, success with the right one given to the constructor or in
-- LETTA_PASSWORD / LETTA_API_KEY (in a child bin/lettash), defaults from the environment,
-- constructor misuse, and the REPL's ready-made `client`.
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local fails = emulator.fails

local PASSWORD = "pw-for-the-auth-spec"

describe("client authentication and configuration", function()
  local emu
  lazy_setup(function() emu = emulator.start{ "--password", PASSWORD } end)
  lazy_teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:reset() end)

  -- runs `bin/lettash -e code` with LETTA_* set as given (and every other LETTA_* unset)
  local function child(code, env)
    local e = { LETTA_BASE_URL = false, LETTA_API_KEY = false, LETTA_PASSWORD = false, LETTASH_INIT = false }
    for k, v in pairs(env or {}) do e[k] = v end
    return support.lettash({ "-e", code }, { env = e })
  end

  it("a wrong password is 401 Unauthorized, raised at once (not retried)", function()
    local c = emu:client{ token = "wrong" }
    local err = fails(c.blocks.list, c.blocks)
    assert.equal(401, err.status)
    assert.equal("unauthorized", err.code)
    assert.equal("Unauthorized", err.message)
    assert.equal('{"detail":"Unauthorized"}', err.body)
    assert.equal(false, err.retryable)
    assert.equal("401 Unauthorized: Unauthorized (GET /v1/blocks/)", tostring(err))
    assert.equal(1, emu:count("GET", "/v1/blocks/"))
    c:close()
  end)

  it("no token is 401 too, except for the health check", function()
    local c = emu:client()
    assert.equal(401, fails(c.blocks.list, c.blocks).status)
    assert.same({ status = "ok", version = "0.16.8" }, c.health:check())
    c:close()
  end)

  it("the right token from the constructor is sent as a Bearer token (redacted in the log)", function()
    local c = emu:client{ token = PASSWORD }
    local b = c.blocks:create{ label = "x", value = "y" }
    assert.equal(b.id, c.blocks:retrieve(b.id).id)
    local req = emu:requests()[1]
    assert.equal("***", req.headers.authorization)
    assert.equal(200, req.status)
    c:close()
  end)

  it("takes the token from LETTA_PASSWORD or LETTA_API_KEY, and the URL from LETTA_BASE_URL", function()
    local code = "local c = require('letta').client(); print(tostring(c)); print(#c.blocks:list())"
    local r = child(code, { LETTA_BASE_URL = emu.url, LETTA_PASSWORD = PASSWORD })
    assert.equal(0, r.code, r.stderr)
    assert.equal("letta.Client (" .. emu.url .. ", token set)\n0\n", r.stdout)
    r = child(code, { LETTA_BASE_URL = emu.url, LETTA_API_KEY = PASSWORD })
    assert.equal(0, r.code, r.stderr)
    assert.equal("letta.Client (" .. emu.url .. ", token set)\n0\n", r.stdout)
    -- LETTA_API_KEY first; an empty one falls back to LETTA_PASSWORD
    r = child(code, { LETTA_BASE_URL = emu.url, LETTA_API_KEY = PASSWORD, LETTA_PASSWORD = "wrong" })
    assert.equal(0, r.code, r.stderr)
    r = child(code, { LETTA_BASE_URL = emu.url, LETTA_API_KEY = "wrong", LETTA_PASSWORD = PASSWORD })
    assert.equal(1, r.code)
    assert.matches("401 Unauthorized: Unauthorized %(GET /v1/blocks/%)", r.stderr)
    r = child(code, { LETTA_BASE_URL = emu.url, LETTA_API_KEY = "", LETTA_PASSWORD = PASSWORD })
    assert.equal(0, r.code, r.stderr)
    -- a token given to the constructor wins over the environment
    r = child("local c = require('letta').client{ token = '" .. PASSWORD .. "' }; print(#c.blocks:list())",
              { LETTA_BASE_URL = emu.url, LETTA_API_KEY = "wrong" })
    assert.equal("0\n", r.stdout)
  end)

  it("defaults to http://localhost:8283 without LETTA_BASE_URL and says whether a token is set", function()
    local r = child("print(tostring(require('letta').client()))")
    assert.equal("letta.Client (http://localhost:8283, no token)\n", r.stdout)
    local c = letta.client{ base_url = emu.url .. "//", token = "" }
    assert.equal("letta.Client (" .. emu.url .. ", no token)", tostring(c))
    assert.equal("ok", c.health:check().status) -- the trailing slashes are not doubled
    assert.equal("/v1/health/", emu:requests()[1].path)
    c:close()
  end)

  it("sends user_id, X-Project-Id and extra headers when asked", function()
    local uid = "user-11111111-2222-4333-8444-555555555555"
    local c = emu:client{ token = PASSWORD, user_id = uid, project_id = "proj-1", headers = { "X-Extra: yes" } }
    local b = c.blocks:create{ label = "x", value = "y" }
    -- a user the server does not have: it acts as its default user
    -- (user_manager.py:get_actor_or_default_async)
    assert.equal("user-00000000-0000-4000-8000-000000000000", b.created_by_id)
    local h = emu:requests()[1].headers
    assert.equal(uid, h.user_id)
    assert.equal("proj-1", h["x-project-id"])
    assert.equal("yes", h["x-extra"])
    c:close()
  end)

  it("refuses bad constructor arguments at once, naming them", function()
    assert.matches("bad argument #1 to 'client' %(table expected, got string%)", fails(letta.client, "http://x"))
    assert.matches("bad argument #1 to 'client' %(base_url must be an http:// or https:// URL%)",
                   fails(letta.client, { base_url = "ftp://127.0.0.1" }))
    assert.matches("bad argument #1 to 'client' %(timeout must be a non%-negative number%)",
                   fails(letta.client, { base_url = emu.url, timeout = -1 }))
    assert.matches("bad argument #1 to 'client' %(max_retries must be a non%-negative number%)",
                   fails(letta.client, { base_url = emu.url, max_retries = "2" }))
    assert.matches("bad argument #1 to 'client' %(token must be a string%)",
                   fails(letta.client, { base_url = emu.url, token = 42 }))
  end)

  it("the REPL has `client` ready when LETTA_BASE_URL is set", function()
    local r = support.lettash({ "-i" }, { stdin = "client.health:check().status\n",
                                          env = { LETTA_BASE_URL = emu.url, LETTA_API_KEY = false, LETTA_PASSWORD = false } })
    assert.equal(0, r.code, r.stderr)
    assert.equal("ok\n", r.stdout)
    r = support.lettash({ "-i" }, { stdin = "#client.blocks:list()\nclient.blocks:list{label = 5}\n",
                                    env = { LETTA_BASE_URL = emu.url, LETTA_PASSWORD = PASSWORD, LETTA_API_KEY = false } })
    assert.equal(0, r.code, r.stderr)
    assert.equal("0\n", r.stdout:sub(1, 2))
    r = support.lettash({ "-i" }, { stdin = "client\n", env = { LETTA_BASE_URL = false } })
    assert.equal("nil\n", r.stdout)
  end)
end)
