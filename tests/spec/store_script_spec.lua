-- scripts/store.lua: export a store's records as JSON Lines and rebuild a store from them, run as
-- a child against the emulator. A store rebuilt from an export works with every workflow (chat,
-- offboard, doctor, a rerun import); exports hold no secret and are mode 0600; an import refuses
-- to merge into a store that holds records, and refuses what is not a complete export.
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local letta = require "letta"
local storelib = require "letta.store"
local records = require "letta.users.records"
local json = letta.json

local PASSWORD = "pw-Secret-4711" -- the server's password: it must appear in no export

local function lines_of(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function mode_of(path)
  local p = io.popen("stat -c %a " .. support.quote(path))
  local m = p:read("l")
  p:close()
  return m
end

local function count_ns(path, ns)
  local s <close> = storelib.open(path)
  return s:count(ns)
end

describe("scripts/store.lua", function()
  local emu, admin, agent
  local sr, ctx = script_runner.suite(_ENV, function(e, c) emu, admin = e, c end, { store = "a/store", each = function()
    agent = emulator.new_agent(admin, { name = "bot", memory_blocks = { { label = "human", value = "?" },
                                                                       { label = "persona", value = "helpful" } } })
  end })

  it("prints --help naming export, import and --replace, touching nothing", function()
    emu:clear_requests()
    local out, r = sr.ok("store", { "--help" })
    assert.equal("", r.stderr)
    assert.matches("^usage: lettash %S*scripts/store%.lua export %[FILE|%-%] | import FILE|%- %[%-%-replace%] %[%-%-json%]", out)
    assert.matches("Leases", out)
    assert.equal(0, #emu:requests())
    assert.falsy(support.read_file(ctx.store), "--help must not create the store")
  end)

  it("rebuilds a store that works with every workflow: chat, offboard, doctor, a rerun import", function()
    local B = ctx.dir .. "/b/store"
    local notes = support.write_file(ctx.dir .. "/notes.jsonl",
      '{"text": "the sky is blue", "tags": ["facts"]}\n{"text": "grass is green"}\n{"text": "water is wet"}\n')
    emu:config{ password = PASSWORD }
    local server = emu:client{ token = PASSWORD }
    finally(function()
      server:close()
      emu:config{ password = json.null }
    end)
    local env = { LETTA_PASSWORD = PASSWORD }
    -- store A: settings, three users, a chat, an import, and what a killed chat leaves behind
    sr.ok("config", { "set", "default_agent", agent.id }, { env = env })
    for _, u in ipairs({ "alice", "bob", "carol" }) do sr.ok("onboard", { u }, { env = env }) end
    sr.ok("chat", { "alice", "hello from A" }, { env = env })
    local first = json.decode((sr.ok("import", { agent.id, notes, "--json" }, { env = env })))
    assert.equal(3, first.sent)
    local dead = tonumber(support.sh("sh -c 'echo $$'").stdout) -- a process that has ended
    do
      local a <close> = storelib.open(ctx.store)
      local carol = a:user("carol")
      a:update(function(txn)
        records.put_attachment(txn, agent.id, carol.block_id, "carol", dead)
        records.put_lease(txn, agent.id, dead .. ":x", 600, dead)
      end)
      server.agents.blocks:attach(agent.id, carol.block_id)
    end

    -- export A, import into a new store B
    local file = ctx.dir .. "/backup.jsonl"
    local out = sr.ok("store", { "export", file }, { env = env })
    assert.matches("^exported %d+ records %(3 users, 1 setting, 1 recorded attachment, 4 import records%) to "
                   .. file:gsub("%p", "%%%0") .. "\n$", out)
    assert.equal("600", mode_of(file))
    local text = support.read_file(file)
    assert.no.matches(PASSWORD, text, 1, true)
    assert.no.matches('"ns":"leases"', text, 1, true)
    out = sr.ok("store", { "import", file }, { store = B, env = env })
    assert.matches("^imported %d+ records %(3 users, 1 setting, 1 recorded attachment, 4 import records%) into "
                   .. B:gsub("%p", "%%%0") .. "\n", out)
    assert.equal(0, count_ns(B, "leases"))
    assert.equal(1, count_ns(ctx.store, "leases"))

    -- from B: the users, the default agent, a chat, an offboard, doctor, the import again
    local users = sr.ok("users", {}, { store = B, env = env })
    for _, u in ipairs({ "alice", "bob", "carol" }) do assert.matches(u, users) end
    local report = json.decode((sr.run("doctor", { "--json" }, { store = B, env = env }).stdout))
    local kinds = {}
    for _, p in ipairs(report.problems) do kinds[#kinds + 1] = p.kind end
    assert.same({ "leftover_attachment" }, kinds) -- carol's, recorded in A, seen from B
    sr.ok("doctor", { "--fix" }, { store = B, env = env })
    local reply = sr.ok("chat", { "alice", "hello from B" }, { store = B, env = env })
    assert.matches("Persona_alice", reply)
    assert.no.matches("Persona_carol", reply)
    sr.ok("offboard", { "bob" }, { store = B, env = env })
    local healthy = sr.ok("doctor", {}, { store = B, env = env })
    assert.matches("\ndoctor: healthy[^\n]*\n$", "\n" .. healthy)
    emu:clear_requests()
    local again = json.decode((sr.ok("import", { agent.id, notes, "--json" }, { store = B, env = env })))
    assert.equal(0, again.sent)
    assert.equal(3, again.skipped)
    assert.equal(0, emu:count("POST", "/v1/agents/[^/]+/archival%-memory"))
    -- and the server agrees: three passages, bob gone, nothing of carol's left attached
    assert.equal(3, #server.agents.passages:list(agent.id))
    assert.is_nil(server.identities:find("bob"))
    for _, a in ipairs(emu:state().agents) do
      if a.id == agent.id then assert.equal("human,persona", table.concat(a.block_labels, ",")) end
    end
  end)

  it("exports to stdout, the same records; and imports from stdin", function()
    sr.ok("config", { "set", "timeout", "30" })
    sr.ok("onboard", { "alice" })
    local file = ctx.dir .. "/x.jsonl"
    sr.ok("store", { "export", file })
    local piped = sr.ok("store", { "export" })
    local a, b = lines_of(support.read_file(file)), lines_of(piped)
    assert.equal(#a, #b)
    for i = 2, #a do assert.equal(a[i], b[i]) end -- the header differs by its time only
    local head = json.decode(b[1])
    assert.equal("lettash-store-export", head.format)
    assert.equal(1, head.version)
    assert.matches('^{"format":"lettash%-store%-export","end":true,"records":%d+}$', b[#b])
    local B = ctx.dir .. "/b/store"
    local r = json.decode((sr.ok("store", { "import", "-", "--json" }, { store = B, stdin = piped })))
    assert.equal(#b - 2, r.records)
    assert.equal(1, r.counts.users)
    assert.equal(B, r.store)
    assert.equal("30", sr.ok("config", { "get", "timeout" }, { store = B }):gsub("\n", ""))
  end)

  it("writes an export file with mode 0600, replacing an older one only when complete", function()
    sr.ok("onboard", { "alice" })
    local file = support.write_file(ctx.dir .. "/old.jsonl", "older backup\n")
    os.execute("chmod 644 " .. support.quote(file))
    local r = json.decode((sr.ok("store", { "export", file, "--json" })))
    assert.equal(file, r.file)
    assert.equal(1, r.counts.users)
    assert.equal("600", mode_of(file))
    assert.matches("^{\"format\":\"lettash%-store%-export\"", support.read_file(file))
    -- nowhere to write: one line, the old file untouched, no temporary file left
    local msg = sr.fails("store", { "export", ctx.dir .. "/no/such/dir/x.jsonl" })
    assert.equal("cannot write " .. ctx.dir .. "/no/such/dir/x.jsonl (is its directory there and writable?)", msg)
    local left = io.popen("ls " .. support.quote(ctx.dir)):read("a")
    assert.no.matches("%.tmp%-", left)
  end)

  it("refuses to import into a store that holds records, unless --replace", function()
    sr.ok("onboard", { "alice" })
    local file = ctx.dir .. "/a.jsonl"
    sr.ok("store", { "export", file })
    local B = ctx.dir .. "/b/store"
    sr.ok("config", { "set", "timeout", "5" }, { store = B })
    sr.ok("onboard", { "bob" }, { store = B })
    local msg = sr.fails("store", { "import", file }, { store = B })
    assert.equal("the store " .. B .. " already holds records (users: 1, by_identity: 1, by_block: 1, settings: 1): "
                 .. "import into a new store "
                 .. "(LETTA_STORE), or replace them with --replace", msg)
    assert.matches("bob", sr.ok("users", {}, { store = B }))
    local out = sr.ok("store", { "import", file, "--replace" }, { store = B })
    assert.matches("%(replacing %d+%)", out)
    local users = sr.ok("users", {}, { store = B })
    assert.matches("alice", users)
    assert.no.matches("bob", users)
    assert.equal("'timeout' is not set", sr.fails("config", { "get", "timeout" }, { store = B }))
  end)

  it("refuses a file that is not a complete lettash export, in one line, importing nothing", function()
    sr.ok("onboard", { "alice" })
    local good = ctx.dir .. "/good.jsonl"
    sr.ok("store", { "export", good })
    local lines = lines_of(support.read_file(good))
    local B = ctx.dir .. "/b/store"
    local function refused(name, text)
      local f = support.write_file(ctx.dir .. "/" .. name, text)
      local msg = sr.fails("store", { "import", f }, { store = B })
      assert.equal(0, count_ns(B, "users"))
      return msg:sub(#f + 3), msg:sub(1, #f + 2)
    end
    local passages = '{"text": "the sky is blue", "tags": ["facts"]}\n'
    local msg, prefix = refused("passages.jsonl", passages)
    assert.equal("not a lettash store export (made by: store.lua export)", msg)
    assert.equal(ctx.dir .. "/passages.jsonl: ", prefix)
    assert.equal("not a lettash store export (made by: store.lua export)", refused("bin", "\0\1\2garbage"))
    assert.equal("empty: not a lettash store export (made by: store.lua export)", refused("empty", "\n"))
    assert.equal("ends before its last line (a truncated export?)",
                 refused("truncated", table.concat(lines, "\n", 1, #lines - 1) .. "\n"))
    local bad_count = {}
    for i = 1, #lines - 1 do bad_count[i] = lines[i] end
    bad_count[#lines] = '{"format":"lettash-store-export","end":true,"records":99}'
    assert.matches("^its last line counts 99 records, the file holds %d+$", refused("count", table.concat(bad_count, "\n")))
    local secret = { lines[1], '{"ns":"settings","key":"api_key","value":"abc"}',
                     '{"format":"lettash-store-export","end":true,"records":1}' }
    assert.equal("line 2: setting 'api_key' looks like a secret: a store never holds one",
                 refused("secret", table.concat(secret, "\n")))
    local unknown = { lines[1], '{"ns":"leases","key":"agent-x","value":{}}',
                      '{"format":"lettash-store-export","end":true,"records":1}' }
    assert.equal("line 2: 'leases' is not a namespace this lettash exports (an export of a newer version?)",
                 refused("unknown", table.concat(unknown, "\n")))
    local newer = { (lines[1]:gsub('"version":1', '"version":2')), lines[#lines] }
    assert.equal("export format version 2 is newer than this lettash reads (1)", refused("newer", table.concat(newer, "\n")))
    assert.equal("cannot read " .. ctx.dir .. "/missing.jsonl: No such file or directory",
                 sr.fails("store", { "import", ctx.dir .. "/missing.jsonl" }, { store = B }))
  end)

  it("refuses bad command lines in one line", function()
    assert.equal("import needs a FILE (or - for stdin) (try --help)", sr.fails("store", { "import" }))
    assert.equal("unknown command 'backup' (export or import; try --help)", sr.fails("store", { "backup" }))
    assert.equal("--replace is for import", sr.fails("store", { "export", "x", "--replace" }))
    assert.equal("export to stdout is already JSON: give a FILE to get --json's summary",
                 sr.fails("store", { "export", "--json" }))
    assert.equal("no store at " .. ctx.store .. " (LETTA_STORE): nothing to export", sr.fails("store", { "export", "x" }))
    sr.ok("config", { "set", "timeout", "5" })
    assert.equal("the export would overwrite the store itself", sr.fails("store", { "export", ctx.store }))
    assert.equal("5", sr.ok("config", { "get", "timeout" }):gsub("\n", ""))
  end)
end)
