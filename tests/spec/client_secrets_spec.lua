-- The token never shows: a child bin/lettash makes calls with a known token, prints the client,
-- its resources and every kind of error (401, 404, 422, connect, timeout, an uncaught error), and
-- the REPL shows the same things; the token is in none of that output, nor in the emulator's
-- request log (where it is redacted).
local support = require "support"
local emulator = require "emulator"

local TOKEN = "sk-let-3f9c1a7e5b2d4c68-SECRET"

local SCRIPT = [[
local letta = require "letta"
local pretty = require "letta.pretty"
local url = os.getenv("EMU_URL")

local function show(label, ok, err)
  print(label, ok)
  print("  tostring:", tostring(err))
  if type(err) == "table" then
    for _, k in ipairs({ "status", "code", "message", "body", "method", "path", "retryable", "attempts" }) do
      print("  " .. k .. ":", tostring(err[k]))
    end
    print("  repr:", pretty.repr(err))
  end
end

-- a raw admin call (no token), to switch the server's password at run time
local function admin(path, body)
  local s = require("letta.http").session{}
  local r = s:request{ method = "POST", url = url .. path, body = letta.json.encode(body) }
  while not r:wait(100) do end
  r:close()
  s:close()
end

local client = letta.client{ base_url = url, max_retries = 0 }       -- token from LETTA_API_KEY
local client2 = letta.client{ base_url = url, token = os.getenv("SPEC_TOKEN"), max_retries = 0, timeout = 0.3 }
print("client:", tostring(client), tostring(client2))
print("repr:", pretty.repr(client))
print("blocks:", pretty.repr(client.blocks))
print("session:", tostring(client.session))
for k, v in pairs(client) do print("field", k, tostring(v)) end

print("health:", client.health:check().status)
local b = client.blocks:create{ label = "secret-spec", value = "v" }
print("created:", b.id == client2.blocks:retrieve(b.id).id)
show("404", pcall(client.blocks.retrieve, client.blocks, "block-00000000-0000-4000-8000-000000000000"))
show("422", pcall(client.blocks.retrieve, client.blocks, "block-1"))
show("misuse", pcall(client.blocks.retrieve, client.blocks))
admin("/_emulator/config", { password = "some-other-password" })
show("401", pcall(client.blocks.list, client.blocks))
show("401 stream", pcall(client.agents.messages.stream, client.agents.messages, "agent-00000000-0000-4000-8000-000000000000", "hi"))
admin("/_emulator/config", { password = os.getenv("SPEC_TOKEN") })
admin("/_emulator/faults", { spec = "kind=slow,ms=1000,times=1,route=GET /v1/blocks/" })
show("timeout", pcall(client2.blocks.list, client2.blocks))
local dead = letta.client{ base_url = "http://127.0.0.1:1", token = os.getenv("SPEC_TOKEN"), max_retries = 0 }
show("connect", pcall(dead.health.check, dead.health))
print("dead:", tostring(dead))
-- and an uncaught one: lettash prints it with a traceback
client.blocks:retrieve("block-00000000-0000-4000-8000-000000000000")
]]

describe("the token", function()
  local emu, dir
  lazy_setup(function()
    emu = emulator.start{ "--password", TOKEN }
    dir = support.tmpdir()
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    support.rmdir(dir)
  end)

  it("appears nowhere in a script's output and errors", function()
    local script = support.write_file(dir .. "/secrets.lua", SCRIPT)
    local r = support.lettash({ script }, { env = { EMU_URL = emu.url, LETTA_API_KEY = TOKEN, SPEC_TOKEN = TOKEN,
                                                    LETTA_PASSWORD = false, LETTA_BASE_URL = false } })
    -- it ran to the end and showed every kind of error
    assert.equal(1, r.code)
    for _, want in ipairs({ "health:\tok", "created:\ttrue", "404\tfalse", "422\tfalse", "misuse\tfalse",
                            "401\tfalse", "401 stream\tfalse", "timeout\tfalse", "connect\tfalse", "token set" }) do
      assert.truthy(r.stdout:find(want, 1, true), want .. "\n" .. r.stdout .. r.stderr)
    end
    assert.matches("401 Unauthorized: Unauthorized", r.stdout)
    assert.matches("code:\ttimeout", r.stdout)
    assert.matches("code:\tconnect", r.stdout)
    assert.matches("^lettash: 404 Not Found: [^\n]*\n$", r.stderr) -- an error object: its one line, as lua5.4
    assert.is_nil(r.stdout:find(TOKEN, 1, true), "the token is in stdout")
    assert.is_nil(r.stderr:find(TOKEN, 1, true), "the token is in stderr")
    assert.is_nil(r.stdout:find("SECRET", 1, true))
  end)

  it("appears nowhere in what the REPL prints", function()
    emu:config{ password = TOKEN }
    local input = table.concat({
      "client", "client.blocks", "client.agents.messages", "letta", "tostring(client)",
      "client.blocks:retrieve('block-00000000-0000-4000-8000-000000000000')",
      "local ok, e = pcall(client.blocks.list, client.blocks, {limit = 'x'}) return e",
      "client.health:check()", "#client.blocks:list()",
    }, "\n") .. "\n"
    local r = support.lettash({ "-i" }, { stdin = input, env = { LETTA_BASE_URL = emu.url, LETTA_API_KEY = TOKEN,
                                                                LETTA_PASSWORD = false } })
    assert.equal(0, r.code, r.stderr)
    assert.matches("letta.Client %(", r.stdout)
    assert.matches("404 Not Found", r.stderr)
    assert.matches('status = "ok"', r.stdout)
    assert.is_nil(r.stdout:find(TOKEN, 1, true), "the token is in the REPL's stdout")
    assert.is_nil(r.stderr:find(TOKEN, 1, true), "the token is in the REPL's stderr")
  end)

  it("is redacted in the emulator's request log", function()
    local log = emu:requests_text()
    assert.truthy(#emu:requests() > 5)
    assert.matches('"authorization":"%*%*%*"', log)
    assert.is_nil(log:find(TOKEN, 1, true), "the token is in the request log")
  end)
end)
