-- The local LMDB store: transactions with safe lifetimes, growth, many processes, user records.
local support = require "support"
local store = require "letta.store"
local errors = require "letta.errors"
local letta = require "letta"

describe("letta.store", function()
  local dir, s
  before_each(function()
    dir = support.tmpdir()
    s = store.open(dir .. "/sub/store")
  end)
  after_each(function()
    s:close()
    support.rmdir(dir)
  end)

  it("creates its file (and directories) with mode 0600", function()
    local p = io.popen("stat -c %a " .. support.quote(dir .. "/sub/store") .. " " .. support.quote(dir .. "/sub/store-lock"))
    assert.equal("600\n600\n", p:read("a"))
    p:close()
  end)

  it("commits what update's function wrote, and aborts when it raises", function()
    s:update(function(txn) txn:put("settings", "a", { n = 1 }) end)
    assert.has_error(function()
      s:update(function(txn)
        txn:put("settings", "b", 2)
        error("boom")
      end)
    end, "boom")
    assert.same({ n = 1 }, s:read(function(txn) return txn:get("settings", "a") end))
    assert.is_nil(s:read(function(txn) return txn:get("settings", "b") end))
    assert.equal("integer", math.type(s:read(function(txn) return txn:get("settings", "a") end).n))
  end)

  it("aborts a transaction closed without commit, releasing the writer lock", function()
    do
      local txn <close> = s:begin(true)
      txn:put("settings", "x", 1)
    end
    assert.is_nil(s:read(function(txn) return txn:get("settings", "x") end))
    local t = s:begin(true) -- the lock is free again
    t:put("settings", "y", 1)
    t:commit()
    assert.equal(1, s:read(function(txn) return txn:get("settings", "y") end))
  end)

  it("refuses a second write transaction instead of deadlocking", function()
    local t = s:begin(true)
    assert.has_error(function() s:begin(true) end, "a write transaction is already open on this store")
    t:abort()
    t:abort() -- idempotent
    assert.has_error(function() t:get("settings", "x") end, "attempt to use a closed LMDB transaction")
  end)

  it("gives a read transaction a consistent snapshot", function()
    s:update(function(txn) txn:put("settings", "k", "old") end)
    local r <close> = s:begin(false)
    s:update(function(txn) txn:put("settings", "k", "new") end)
    assert.equal("old", r:get("settings", "k"))
    assert.equal("new", s:setting("k"))
  end)

  it("iterates a namespace by key prefix, in order", function()
    s:update(function(txn)
      for _, k in ipairs({ "job:2", "job:1", "other", "job:10" }) do txn:put("journal", k, k) end
    end)
    local keys = s:read(function(txn)
      local t = {}
      for k, v in txn:each("journal", "job:") do t[#t + 1] = k .. "=" .. v end
      return t
    end)
    assert.same({ "job:1=job:1", "job:10=job:10", "job:2=job:2" }, keys)
  end)

  it("inserts only when absent", function()
    assert.is_true(s:update(function(txn) return txn:insert("leases", "agent-1", "me") end))
    assert.is_false(s:update(function(txn) return txn:insert("leases", "agent-1", "you") end))
    assert.equal("me", s:read(function(txn) return txn:get("leases", "agent-1") end))
  end)

  it("grows the map by itself: no 'database full' for many records", function()
    local small = store.open(dir .. "/small", { map_size = 64 * 1024 })
    for batch = 1, 20 do
      small:update(function(txn)
        for i = 1, 500 do txn:put("journal", string.format("%02d:%04d", batch, i), { text = string.rep("x", 100) }) end
      end)
    end
    local n = small:count("journal")
    assert.equal(10000, n)
    assert.truthy(small:info().map_size > 64 * 1024)
    small:close()
    small:close() -- idempotent
  end)

  describe("transactions cannot yield", function()
    local NO_YIELD = "store transaction cannot yield"

    it("a task that waits inside update gets an error, and another task's update works meanwhile", function()
      s:update(function(txn) txn:put("settings", "n", 0) end)
      local first = letta.spawn(function()
        return pcall(s.update, s, function(txn)
          txn:put("settings", "n", 1)
          letta.sleep(0.05) -- (before: the write transaction stayed open across this)
          txn:put("settings", "after", true)
        end)
      end)
      local second = letta.spawn(function()
        return s:update(function(txn)
          txn:put("settings", "second", true)
          return "committed"
        end)
      end)
      local ok, err = first:wait()
      assert.is_false(ok)
      assert.matches(NO_YIELD, err, 1, true)
      assert.equal("committed", second:wait())
      assert.equal(0, s:setting("n")) -- nothing of the first was written
      assert.is_nil(s:setting("after"))
      assert.is_true(s:setting("second"))
      -- one after the other: both succeed
      local a = letta.spawn(function() return s:update(function(txn) txn:put("settings", "a", 1) return "a" end) end)
      local b = letta.spawn(function() return s:update(function(txn) txn:put("settings", "b", 2) return "b" end) end)
      assert.same({ "a", "b" }, letta.gather{ a, b })
      assert.equal(2, s:setting("b"))
    end)

    it("a yield, a sleep or a request inside update or read raises before anything is written", function()
      s:update(function(txn) txn:put("settings", "k", "old") end)
      local refused = letta.client{ base_url = "http://127.0.0.1:9", token = "", max_retries = 0 }
      for _, wait in ipairs{ function() coroutine.yield() end, function() letta.sleep(0.01) end,
                             function() refused:get("/v1/health/") end } do
        local ok, err = pcall(s.update, s, function(txn)
          txn:put("settings", "k", "new")
          wait()
        end)
        assert.is_false(ok)
        assert.matches(NO_YIELD, tostring(err), 1, true)
        assert.equal("old", s:setting("k"))
        ok, err = pcall(s.read, s, function(txn) wait() end)
        assert.matches(NO_YIELD, tostring(err), 1, true)
      end
      -- also inside a task, and the store is usable after
      local t = letta.spawn(function()
        return pcall(s.update, s, function(txn) txn:put("settings", "k", "task"); refused:get("/v1/health/") end)
      end)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.matches(NO_YIELD, tostring(err), 1, true)
      s:update(function(txn) txn:put("settings", "k", "later") end)
      assert.equal("later", s:setting("k"))
    end)
  end)

  it("a transaction's function refuses a plain yield and the loop's waits without leaving a trace, and may run coroutines of its own", function()
    local NO_YIELD = "store transaction cannot yield"
    local sem = require("letta.loop").semaphore(0) -- full: an acquire would queue its task
    local t = letta.spawn(function()
      local results = {}
      for _, wait in ipairs{ coroutine.yield, function() letta.sleep(0.01) end, function() sem:acquire() end } do
        local ok, err = pcall(s.update, s, function(txn) txn:put("settings", "y", 1) wait() end)
        results[#results + 1] = not ok and tostring(err):find(NO_YIELD, 1, true) ~= nil
      end
      letta.sleep(0.02) -- the task goes on waiting normally: no stale sleeper woke it early
      return results
    end)
    assert.same({ true, true, true }, t:wait())
    assert.equal(0, sem.tail - sem.head + 1) -- no waiter was left queued
    assert.is_nil(s:setting("y"))
    -- a coroutine of the function's own yields to it as usual
    local got = s:read(function()
      local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
      return gen() + gen() + gen()
    end)
    assert.equal(6, got)
  end)

  it("raises the map_full error when growing the map does not help", function()
    local probe = s.env:begin(false)
    local lmdb_txn = getmetatable(probe).__index -- the binding's methods: put fakes a map that cannot grow
    probe:abort()
    local put = lmdb_txn.put
    lmdb_txn.put = function() return nil, "MDB_MAP_FULL: Environment mapsize limit reached", "map_full" end
    local tries = 0
    local ok, err = pcall(s.update, s, function(txn)
      tries = tries + 1
      txn:put("settings", "x", 1)
    end)
    lmdb_txn.put = put
    assert.is_false(ok)
    assert.is_true(errors.is(err, "map_full"))
    assert.equal(17, tries) -- the map doubled 16 times in between
    assert.matches("^letta.store: no room left in ", tostring(err))
  end)

  it("loses nothing when two processes write at once", function()
    s:close()
    local script = support.write_file(dir .. "/w.lua", [[
      local s = require("letta.store").open(arg[1], { map_size = 32 * 1024 })
      for i = 1, 300 do
        s:update(function(txn)
          local n = (txn:get("settings", "counter") or 0) + 1
          txn:put("settings", "counter", n)
          txn:put("journal", arg[2] .. ":" .. i, i)
        end)
      end
    ]])
    local path = dir .. "/sub/store"
    local cmd = string.format("%s %s %s a & %s %s %s b & wait", support.quote(support.bin), script, path,
                              support.quote(support.bin), script, path)
    assert.equal(0, support.sh(cmd).code)
    s = store.open(path)
    assert.equal(600, s:setting("counter"))
    local n = s:count("journal")
    assert.equal(600, n)
  end)

  it("keeps user records with lookups by identity and by block", function()
    s:put_user{ username = "alice", name = "Alice", identity_id = "identity-1", block_id = "block-1",
                block_label = "Persona_alice" }
    assert.equal("Alice", s:user("alice").name)
    assert.equal("alice", s:user_by("identity", "identity-1").username)
    assert.equal("alice", s:user_by("block", "block-1").username)
    s:put_user{ username = "alice", name = "Alice", identity_id = "identity-1", block_id = "block-2" }
    assert.is_nil(s:user_by("block", "block-1")) -- the stale lookup went with the old id
    assert.truthy(s:user("alice").created_at)
    assert.equal(1, #s:users())
    assert.is_true(s:delete_user("alice"))
    assert.is_nil(s:user("alice"))
    assert.is_nil(s:user_by("identity", "identity-1"))
  end)

  it("keeps settings, but refuses anything that looks like a secret", function()
    s:set_setting("base_url", "https://vps:8283")
    s:set_setting("timeout", 90)
    assert.same({ base_url = "https://vps:8283", timeout = 90 }, s:settings())
    assert.has_error(function() s:set_setting("password", "x") end)
    assert.has_error(function() s:set_setting("LETTA_API_KEY", "x") end)
  end)

  it("finds its default path from LETTA_STORE, else XDG_DATA_HOME", function()
    local r = support.lettash({ "-e", "print(require('letta.store').default_path())" },
                              { env = { LETTA_STORE = "/x/s", XDG_DATA_HOME = "/d" } })
    assert.equal("/x/s\n", r.stdout)
    r = support.lettash({ "-e", "print(require('letta.store').default_path())" },
                        { env = { LETTA_STORE = false, XDG_DATA_HOME = "/d" } })
    assert.equal("/d/lettash/store\n", r.stdout)
  end)

  it("raises clear errors for misuse", function()
    assert.has_error(function() store.open(42) end, "bad argument #1 to 'open' (string expected, got number)")
    local t <close> = s:begin(false)
    assert.has_error(function() t:put("settings", "k", 1) end, "cannot write in a read transaction")
    assert.has_error(function() t:get("nope", "k") end)
    s:close()
    assert.has_error(function() s:begin(false) end, "attempt to use a closed LMDB environment")
  end)
  describe("export and import", function()
    local json = require("letta").json

    -- the lines store:export writes, and an open() over them for store:import
    local function export(st)
      local lines = {}
      local r = st:export(function(l) lines[#lines + 1] = l end)
      return lines, r
    end
    local function over(lines, opened)
      return function()
        if opened then opened.n = opened.n + 1 end
        local i = 0
        return function()
          i = i + 1
          return lines[i]
        end
      end
    end

    it("exports every namespace but the leases, and an import rebuilds them exactly", function()
      s:put_user{ username = "alice", name = "Alice", identity_id = "identity-1", block_id = "block-1",
                  preferences = { tags = json.array(), meta = json.object(), n = 9007199254740993, f = 1.0 } }
      s:set_setting("timeout", 90)
      s:update(function(txn)
        txn:put("attachments", "agent-1/block-1", { username = "alice", pid = 1, since = 5 })
        txn:put("imports", "import:k1", { s = "done", id = "passage-1", line = 3 })
        txn:put("leases", "agent-1", { owner = "1:x", pid = 1, expires = 9 })
      end)
      local lines, r = export(s)
      assert.equal(6, r.records)
      assert.same({ users = 1, by_identity = 1, by_block = 1, settings = 1, attachments = 1, journal = 0, imports = 1 }, r.counts)
      assert.matches('^{"format":"lettash%-store%-export","version":1,', lines[1])
      assert.equal('{"format":"lettash-store-export","end":true,"records":6}', lines[#lines])
      for _, l in ipairs(lines) do assert.no.matches('"leases"', l, 1, true) end
      local b <close> = store.open(dir .. "/b")
      local got = b:import(over(lines))
      assert.equal(6, got.records)
      assert.equal(0, got.replaced)
      local again = export(b)
      for i = 2, #lines do assert.same(json.decode(lines[i]), json.decode(again[i])) end -- all but the header's time
      assert.equal("alice", b:user_by("block", "block-1").username)
      local prefs = b:user("alice").preferences
      assert.equal(9007199254740993, prefs.n)
      assert.equal("float", math.type(prefs.f))
      assert.equal("[]", json.encode(prefs.tags))
      assert.equal("{}", json.encode(prefs.meta))
      assert.equal(0, b:count("leases"))
    end)

    it("grows the map during an import, reading its input again from the start", function()
      s:update(function(txn)
        for i = 1, 3000 do txn:put("imports", string.format("import:%05d", i), { s = "done", text = string.rep("x", 100) }) end
      end)
      local lines = export(s)
      local small <close> = store.open(dir .. "/small", { map_size = 64 * 1024 })
      local opened = { n = 0 }
      assert.equal(3000, small:import(over(lines, opened)).records)
      assert.truthy(opened.n > 1, "the map never grew")
      assert.equal(3000, small:count("imports"))
    end)

    it("imports all or nothing: a refused file leaves the store as it was, also with replace", function()
      s:put_user{ username = "alice" }
      local lines = export(s)
      local b <close> = store.open(dir .. "/b")
      b:put_user{ username = "bob" }
      assert.has_error(function() b:import(over(lines)) end)
      local truncated = { table.unpack(lines, 1, #lines - 1) }
      local ok, err = pcall(b.import, b, over(truncated), { replace = true, source = "x.jsonl" })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "refused"))
      assert.equal("letta.store: x.jsonl: ends before its last line (a truncated export?)", tostring(err))
      assert.equal("bob", b:users()[1].username)
      assert.equal(1, #b:users())
      assert.equal(1, b:import(over(lines), { replace = true }).replaced)
      assert.equal("alice", b:users()[1].username)
    end)
  end)
end)
