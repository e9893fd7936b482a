-- Bulk import under the failures and inputs of real deployments (issue 13): a failure that no
-- item can get past (untrusted certificate, wrong password, missing agent, server down, or one
-- that starts mid-run) stops the run at once with one line and exit 1, and the run after the fix
-- sends every item once without looking for any; plain text is read in linear time and flat
-- memory; --dedupe content; what --dry-run catches (created_at, duplicate tags); progress with
-- --json; and the runs that doctor reports as interrupted (import.interrupted).
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local letta = require "letta"
local loop = require "letta.loop"
local import = require "letta.import"
local records = require "letta.users.records"
local json = letta.json

local MISSING_AGENT = emulator.missing_id("agent")

-- These specs pin the per-passage route (--batch 1, one passage per request through the agent),
-- whose faults and request counts they assert; import_batch_spec.lua covers the batch route.
local per_passage = require("import_checks").per_passage

-- The script as a child: run(url, store, {args}, {env=, stdin=}) -> {code=, stdout=, stderr=}.
local function run(url, store, args, opts)
  opts = opts or {}
  return script_runner.run("import", per_passage(args), { url = url, store = store, env = opts.env, stdin = opts.stdin })
end

local function run_json(url, store, args, opts)
  local a = { "--json" }
  for _, x in ipairs(args) do a[#a + 1] = x end
  local r = run(url, store, a, opts)
  assert(r.code == 0, string.format("import exited %d: %s", r.code, r.stderr))
  return json.decode(r.stdout), r
end

-- The run stopped: exit 1, nothing on stdout, one line "import: ..." on stderr; returns it.
local function stopped(r)
  assert(r.code == 1, string.format("expected exit 1, got %d: %s%s", r.code, r.stdout, r.stderr:sub(1, 2000)))
  assert.equal("", r.stdout)
  local msg = r.stderr:match("^import: ([^\n]+)\n$")
  assert(msg, "expected one line 'import: ...' on stderr, got: " .. r.stderr:sub(1, 2000))
  return msg
end

local function count(reqs, pred)
  local n = 0
  for _, q in ipairs(reqs) do if pred(q) then n = n + 1 end end
  return n
end
local function is_post(q) return q.method == "POST" and q.path:match("/archival%-memory$") ~= nil end
local function is_search(q) -- a recovery look: the passage list searched by text
  return q.method == "GET" and q.path:match("/archival%-memory$") ~= nil and (q.query or ""):match("search=") ~= nil
end

-- Every text once on the server, nothing else.
local function assert_exactly(emu, agent, texts)
  local ps = emu:state().passages[agent] or {}
  local seen = {}
  for _, p in ipairs(ps) do
    assert(not seen[p.text], "twice on the server: " .. p.text)
    seen[p.text] = true
  end
  for _, t in ipairs(texts) do assert(seen[t], "missing on the server: " .. t) end
  assert.equal(#texts, #ps)
  return ps
end

-- The journal entries of an agent in a store (read in this process).
local function journal(store_path, agent)
  local st <close> = letta.store.open(store_path)
  local n, pending = 0, 0
  st:read(function(txn)
    for _, j in records.each_item(txn, agent) do
      n = n + 1
      if records.is_pending(j) then pending = pending + 1 end
    end
  end)
  return n, pending
end

local function port_of(url) return url:match(":(%d+)$") end

-- Starts the import in the background (stdin from the file stdin, else /dev/null): returns its
-- pid, and a function that waits for it to end and returns {code=, stdout=, stderr=}.
local function spawn_import(url, store, args, out, env, stdin)
  local parts = {}
  for _, a in ipairs(per_passage(args)) do parts[#parts + 1] = support.quote(a) end
  local prefix = support.lua_path and "LETTASH_LUA_PATH=" .. support.quote(support.lua_path) .. " " or ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. support.quote(v) .. " " end
  os.execute(string.format("(%sLETTA_BASE_URL=%s LETTA_STORE=%s sh -c 'echo $$ >%s.pid; exec \"$@\"' sh %s %s %s "
                           .. "<%s >%s.out 2>%s.err; echo $? >%s.rc) >/dev/null 2>&1 &",
                           prefix, support.quote(url), support.quote(store), out, support.quote(support.bin),
                           support.quote(script_runner.path("import")), table.concat(parts, " "),
                           support.quote(stdin or "/dev/null"), out, out, out))
  local deadline = loop.now() + 10
  local pid
  repeat
    pid = tonumber(support.read_file(out .. ".pid") or "")
    if not pid then letta.sleep(0.01) end
  until pid or loop.now() > deadline
  assert(pid, "the import did not start")
  return pid, function()
    local stop = loop.now() + 60
    while not support.read_file(out .. ".rc") and loop.now() < stop do letta.sleep(0.02) end
    return { code = tonumber(support.read_file(out .. ".rc")), stdout = support.read_file(out .. ".out"),
             stderr = support.read_file(out .. ".err") }
  end
end

-- Waits until the agent holds n passages (the import running in pid meanwhile).
local function wait_passages(emu, agent, n, pid, out)
  local deadline = loop.now() + 30
  while #(emu:state().passages[agent] or {}) < n do
    assert(loop.now() < deadline, "the import did not get to " .. n .. " passages")
    assert(emulator.alive(pid), "the import ended early: " .. tostring(support.read_file(out .. ".err")))
    letta.sleep(0.01)
  end
end

-- ---------------------------------------------------------------------------------------------
describe("import: a failure no item can get past", function()
  local dir
  before_each(function() dir = support.tmpdir() end)
  after_each(function() support.rmdir(dir) end)

  it("an untrusted certificate stops it before the first item; after the fix each item is sent once, none looked for", function()
    local cert, key = support.self_signed_cert(dir)
    local state = dir .. "/state.json"
    local tls = emulator.start{ "--tls-cert", cert, "--tls-key", key, "--state-file", state }
    local plain
    finally(function()
      tls:stop()
      if plain then plain:stop() end
    end)
    local c = tls:client{ ca_file = cert }
    local agent = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
    c:close()
    local path, texts = support.jsonl_file(dir .. "/in.jsonl", 40)
    local t0 = loop.now()
    local r = run(tls.url, dir .. "/store", { agent, path })
    local msg = stopped(r)
    assert.matches("^tls: ", msg)
    assert.is_true(loop.now() - t0 < 10, string.format("took %.1f s", loop.now() - t0))
    assert.equal(0, journal(dir .. "/store", agent)) -- nothing journalled: nothing to recover
    tls:stop() -- (saves the state) the fix: the same server, now trusted (here: over plain HTTP)
    plain = emulator.start{ "--state-file", state }
    local s = run_json(plain.url, dir .. "/store", { agent, path })
    assert.same({ 40, 40, 0, 0, 0 }, { s.items, s.sent, s.skipped, s.recovered, s.failed })
    local reqs = plain:requests()
    assert.equal(40, count(reqs, is_post))
    assert.equal(0, count(reqs, is_search))
    assert_exactly(plain, agent, texts)
  end)

  describe("on one server", function()
    local emu
    local PASSWORD = "import-spec-password"
    lazy_setup(function() emu = emulator.start{ "--password", PASSWORD } end)
    lazy_teardown(function() if emu then emu:stop() end end)
    before_each(function()
      emu:reset()
      emu:config{ password = PASSWORD, latency_ms = 0 }
    end)

    local function new_agent()
      local c = emu:client{ token = PASSWORD }
      local id = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
      c:close()
      emu:clear_requests()
      return id
    end

    it("a wrong password stops it after one request; with the right one each item is sent once, none looked for", function()
      local agent = new_agent()
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 60)
      local msg = stopped(run(emu.url, dir .. "/store", { agent, path }, { env = { LETTA_PASSWORD = "wrong" } }))
      assert.matches("401", msg)
      local reqs = emu:requests()
      assert.equal(1, #reqs, "requests: " .. #reqs)
      assert.equal("GET", reqs[1].method)
      assert.equal(0, journal(dir .. "/store", agent))
      emu:clear_requests()
      local s = run_json(emu.url, dir .. "/store", { agent, path }, { env = { LETTA_PASSWORD = PASSWORD } })
      assert.same({ 60, 60, 0, 0 }, { s.items, s.sent, s.recovered, s.failed })
      assert.equal(0, count(emu:requests(), is_search))
      assert.equal(60, count(emu:requests(), is_post))
      assert_exactly(emu, agent, texts)
    end)

    it("a missing agent stops it after one request, naming the agent", function()
      local path = support.jsonl_file(dir .. "/in.jsonl", 60)
      emu:clear_requests()
      local msg = stopped(run(emu.url, dir .. "/store", { MISSING_AGENT, path }, { env = { LETTA_PASSWORD = PASSWORD } }))
      assert.matches("404", msg)
      assert.is_truthy(msg:find(MISSING_AGENT, 1, true))
      assert.equal(1, #emu:requests())
    end)

    it("a password changed mid-run stops it after the requests in flight; the rerun sends the rest once, none looked for", function()
      local agent = new_agent()
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 400)
      emu:config{ latency_ms = 20 } -- 400 items at 4 in flight: about 2 s
      local out = dir .. "/child"
      local pid, result = spawn_import(emu.url, dir .. "/store", { agent, path, "--concurrency", "4" }, out,
                                       { LETTA_PASSWORD = PASSWORD })
      wait_passages(emu, agent, 100, pid, out)
      local _, seq = emu:requests()
      emu:config{ password = "changed" }
      local msg = stopped(result())
      assert.matches("401", msg)
      local refused = count(emu:requests(seq), function(q) return q.status == 401 end)
      assert(refused >= 1 and refused <= 5, refused .. " requests refused before it stopped")
      local landed = #(emu:state().passages[agent] or {})
      local _, pending = journal(dir .. "/store", agent)
      assert.equal(0, pending) -- the refused ones were forgotten: they never landed
      emu:config{ latency_ms = 0 }
      emu:clear_requests()
      local s = run_json(emu.url, dir .. "/store", { agent, path, "--concurrency", "4" }, { env = { LETTA_PASSWORD = "changed" } })
      assert.same({ 400, landed, 0, 0 }, { s.items, s.skipped, s.recovered, s.failed })
      assert.equal(400 - landed, s.sent)
      assert.equal(0, count(emu:requests(), is_search))
      assert.equal(400 - landed, count(emu:requests(), is_post))
      assert_exactly(emu, agent, texts)
    end)
  end)

  it("a server that is down stops it in one line; the rerun once it is up sends each item once, none looked for", function()
    local state = dir .. "/state.json"
    local emu = emulator.start{ "--state-file", state }
    local c = emu:client()
    local agent = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
    c:close()
    local url, port = emu.url, port_of(emu.url)
    emu:stop()
    local path, texts = support.jsonl_file(dir .. "/in.jsonl", 50)
    local t0 = loop.now()
    local msg = stopped(run(url, dir .. "/store", { agent, path }))
    assert.matches("^connect: ", msg)
    assert.is_true(loop.now() - t0 < 15, string.format("took %.1f s", loop.now() - t0))
    assert.equal(0, journal(dir .. "/store", agent))
    emu = emulator.start{ "--state-file", state, "--port", port }
    finally(function() emu:stop() end)
    local s = run_json(emu.url, dir .. "/store", { agent, path })
    assert.same({ 50, 50, 0, 0 }, { s.items, s.sent, s.recovered, s.failed })
    assert.equal(0, count(emu:requests(), is_search))
    assert_exactly(emu, agent, texts)
  end)

  it("a server that goes away mid-run stops it; the rerun looks only for what was in flight", function()
    local state = dir .. "/state.json"
    local emu = emulator.start{ "--state-file", state, "--latency-ms", "20" }
    local c = emu:client()
    local agent = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
    c:close()
    local port = port_of(emu.url)
    local path, texts = support.jsonl_file(dir .. "/in.jsonl", 600)
    local out = dir .. "/child"
    local pid, result = spawn_import(emu.url, dir .. "/store", { agent, path, "--concurrency", "8" }, out)
    wait_passages(emu, agent, 100, pid, out)
    emu:stop()
    local msg = stopped(result())
    assert.matches("stopped", msg)
    local _, pending = journal(dir .. "/store", agent)
    assert(pending <= 8, pending .. " items left pending")
    emu = emulator.start{ "--state-file", state, "--port", port }
    finally(function() emu:stop() end)
    local s = run_json(emu.url, dir .. "/store", { agent, path })
    assert.same({ 600, 0 }, { s.items, s.failed })
    assert(count(emu:requests(), is_search) <= 8 * 2, "looked for more than what was in flight")
    assert_exactly(emu, agent, texts)
  end)
end)

-- ---------------------------------------------------------------------------------------------
describe("import: plain text at scale", function()
  local text = import.readers.text

  -- The cut as it was done on the whole paragraph (before the reader streamed): the reference
  -- the streamed reader must match, piece for piece.
  local function reference(paragraph, limit)
    local out = {}
    while #paragraph > limit do
      local cut = paragraph:sub(1, limit):match("^.*()%s") or (limit + 1)
      if cut <= 1 then cut = limit + 1 end
      while cut > 1 and cut <= #paragraph and paragraph:byte(cut) >= 0x80 and paragraph:byte(cut) < 0xC0 do cut = cut - 1 end
      local piece = paragraph:sub(1, cut - 1):match("^(.-)%s*$")
      if piece ~= "" then out[#out + 1] = piece end
      paragraph = paragraph:sub(cut):match("^%s*(.*)$")
    end
    if paragraph ~= "" then out[#out + 1] = paragraph end
    return out
  end

  -- Live Lua memory (KB, after a full collection) above base, sampled every 16th item.
  local function sampler()
    collectgarbage("collect")
    local base, peak, n = collectgarbage("count"), 0, 0
    return function()
      n = n + 1
      if n % 16 == 1 then
        collectgarbage("collect")
        peak = math.max(peak, collectgarbage("count") - base)
      end
      return peak
    end
  end

  local function read_all(path, limit, block, each)
    local fh <close> = assert(io.open(path, "rb"))
    local out, n = {}, 0
    for it in text(fh, limit, block) do
      n = n + 1
      if each then each(it) else out[n] = it end
    end
    return out, n
  end

  it("cuts a paragraph as a cut of the whole paragraph would, across every block boundary", function()
    local dir = support.tmpdir()
    finally(function() support.rmdir(dir) end)
    math.randomseed(7)
    local bits = { "a", "word", " ", "  ", "\t", "\r\n", "\n", "\u{E9}", "\u{65E5}\u{672C}", "\u{1F600}",
                   "long" .. string.rep("x", 40), "\n\n", "\n \n", " \r " }
    for trial = 1, 150 do
      local t = {}
      for i = 1, math.random(1, 120) do t[#t + 1] = bits[math.random(#bits)] end
      local input = table.concat(t)
      local path = support.write_file(dir .. "/in.txt", input)
      -- the reference: paragraphs of whole lines, blank lines between, each cut whole
      local want, para, first, n = {}, {}, nil, 0
      local function flush()
        if first then
          for _, piece in ipairs(reference(table.concat(para, "\n"), 9)) do want[#want + 1] = first .. ":" .. piece end
        end
        para, first = {}, nil
      end
      for l in (input .. (input:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
        n = n + 1
        l = l:gsub("\r$", "")
        if l:match("^%s*$") then flush() else first = first or n; para[#para + 1] = l end
      end
      flush()
      for _, block in ipairs({ 1, 2, 3, 5, 64 }) do
        local got = {}
        for _, it in ipairs(read_all(path, 9, block)) do got[#got + 1] = it.line .. ":" .. it.text end
        assert.same(want, got, string.format("trial %d, block %d, input %q", trial, block, input))
      end
    end
  end)

  it("reads a 4 MB paragraph with no blank line in flat memory: every word once, in order, in full chunks", function()
    local dir = support.tmpdir()
    finally(function() support.rmdir(dir) end)
    local path = dir .. "/big.txt"
    local f = assert(io.open(path, "wb"))
    local words = 0
    while f:seek("cur") < 4 * 1024 * 1024 do
      local line = {}
      for i = 1, 12 do
        words = words + 1
        line[i] = "w" .. words
      end
      f:write(table.concat(line, " "), "\n")
    end
    f:close()
    local sample, peak = sampler(), 0
    local next_word, chunks, short = 1, 0, 0
    read_all(path, 8000, nil, function(it)
      chunks = chunks + 1
      assert.equal(1, it.line)
      assert.is_true(#it.text <= 8000)
      if #it.text < 7900 then short = short + 1 end
      for w in it.text:gmatch("%S+") do
        assert.equal("w" .. next_word, w)
        next_word = next_word + 1
      end
      peak = sample()
    end)
    assert.equal(words + 1, next_word)
    assert.is_true(short <= 1, short .. " chunks not full") -- only the last one
    assert.is_true(chunks >= 4 * 1024 * 1024 / 8000)
    -- the whole paragraph held once would be 4 MB: the reader holds a block and a chunk or so
    assert(peak < 512, string.format("live Lua memory grew by %.0f KB while reading", peak))
  end)

  it("reads a 2 MB line with no line break in flat memory", function()
    local dir = support.tmpdir()
    finally(function() support.rmdir(dir) end)
    local path = support.write_file(dir .. "/line.txt", string.rep("abcdefg ", 256 * 1024))
    local sample, peak, words = sampler(), 0, 0
    local _, n = read_all(path, 8000, nil, function(it)
      for _ in it.text:gmatch("abcdefg") do words = words + 1 end
      peak = sample()
    end)
    assert.equal(256 * 1024, words)
    assert.equal(math.ceil(2 * 1024 * 1024 / 8000), n)
    assert(peak < 512, string.format("live Lua memory grew by %.0f KB while reading", peak))
  end)
end)

-- ---------------------------------------------------------------------------------------------
describe("import:", function()
  local emu, dir

  emulator.suite(_ENV, function(e) emu = e end, { each = function() dir = support.tmpdir() end })
  after_each(function() support.rmdir(dir) end)

  local function new_agent()
    local c = emu:client()
    local id = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
    c:close()
    return id
  end
  local function store() return dir .. "/store" end

  describe("--dedupe content", function()
    it("sends only the line added at the top of a file imported before, and says how many were already present", function()
      local agent = new_agent()
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 50)
      local s = run_json(emu.url, store(), { agent, path, "--dedupe", "content" })
      assert.same({ 50, 50, 0, "content" }, { s.items, s.sent, s.already_present, s.dedupe })
      local old = support.read_file(path)
      support.write_file(path, json.encode({ text = "a new first line", tags = { "new" } }) .. "\n" .. old)
      emu:clear_requests()
      s = run_json(emu.url, store(), { agent, path, "--dedupe", "content" })
      assert.same({ 51, 1, 50, 50, 0 }, { s.items, s.sent, s.already_present, s.skipped, s.failed })
      local reqs = emu:requests()
      assert.equal(1, count(reqs, is_post))
      assert.equal("a new first line", reqs[#reqs].body.text)
      table.insert(texts, 1, "a new first line")
      for _, p in ipairs(assert_exactly(emu, agent, texts)) do
        assert.matches("^lettash%-import:%x+$", p.tags[1]) -- the bookkeeping tag stays
      end
      -- the text summary says it too
      local r = run(emu.url, store(), { agent, path, "--dedupe", "content" })
      assert.equal(0, r.code, r.stderr)
      assert.matches("import: 51 items: 0 sent, 51 already present,", r.stdout)
    end)

    it("sends an item repeated in the input once (text, tags and created_at make the item)", function()
      local agent = new_agent()
      local lines = {
        '{"text": "same", "tags": ["a", "b"]}',
        '{"text": "same", "tags": ["b", "a"]}',   -- tags are a set: the same item
        '{"text": "same", "tags": ["a", "b"]}',
        '{"text": "same", "tags": ["a"]}',        -- other tags: another item
        '{"text": "same", "tags": ["a", "b"], "created_at": "2024-01-02T03:04:05Z"}', -- another date: another item
      }
      local path = support.write_file(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
      local s = run_json(emu.url, store(), { agent, path, "--dedupe", "content", "--concurrency", "4" })
      assert.same({ 5, 3, 2, 0 }, { s.items, s.sent, s.already_present, s.failed })
      assert.equal(3, count(emu:requests(), is_post))
      assert.equal(3, #emu:state().passages[agent])
      -- by position (the default) each line is its own item
      local other = new_agent()
      s = run_json(emu.url, store(), { other, path })
      assert.same({ 5, 5, "position" }, { s.items, s.sent, s.dedupe })
      assert.equal("--dedupe must be position or content",
                   run(emu.url, store(), { agent, path, "--dedupe", "text" }).stderr:match("^import: ([^\n]+)"))
    end)
  end)

  describe("what the server would refuse", function()
    it("is caught by --dry-run: created_at that is not a date is a bad line, every form Letta reads is fine", function()
      local agent = new_agent()
      local good = { "2024-01-02", "2024-01-02T03:04", "2024-01-02 03:04:05", "2024-01-02T03:04:05.5Z",
                     "2024-01-02T03:04:05-0530", "2024-02-29",
                     -- pydantic reads these too (speedate's forms, and a Unix time in s or ms)
                     "2024-01-02t03:04:05.123456789", "2024-01-02_03:04:05,5+02:00", "1704164645", "1704164645123" }
      local bad = { "yesterday", "2024-02-30", "2023-02-29", "2024-13-01", "2024-01-02T25:00", "2024-01-02T03:04:61",
                    "2024-1-2", "02/01/2024", "2024-01-02T03", "2024-01-02 ", "" } -- (pydantic: "" is no date either)
      local lines = {}
      for i, d in ipairs(good) do lines[#lines + 1] = json.encode({ text = "good " .. i, created_at = d }) end
      for i, d in ipairs(bad) do lines[#lines + 1] = json.encode({ text = "bad " .. i, created_at = d }) end
      local path = support.write_file(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
      emu:clear_requests()
      local s = run_json(emu.url, store(), { agent, path, "--dry-run" })
      assert.same({ #good, #bad }, { s.items, s.bad })
      for i, b in ipairs(s.bad_lines) do
        assert.equal(#good + i, b.line)
        assert.matches("created_at is not a date", b.error)
      end
      assert.equal(0, #emu:requests())
      -- and a real run never sends them (the good ones land, through either route)
      local some = {}
      for i = 1, #good + 1 do some[#some + 1] = lines[i] end
      support.write_file(path, table.concat(some, "\n") .. "\n")
      for _, batch in ipairs({ "1", "4" }) do
        emu:clear_requests()
        s = run_json(emu.url, store(), { new_agent(), path, "--batch", batch }, nil)
        assert.same({ #good, #good, 1, 0 }, { s.items, s.sent, s.bad, s.failed })
      end
      assert.equal(1, count(emu:requests(), is_post)) -- the first creates the agent's archive, the rest go in batches
    end)

    it("checks created_at in CSV too", function()
      local path = support.write_file(dir .. "/in.csv", "text,created_at\nfine,2024-01-02\nnot fine,next tuesday\n")
      local s = run_json(emu.url, store(), { new_agent(), path, "--dry-run" })
      assert.same({ 1, 1, 3 }, { s.items, s.bad, s.bad_lines[1].line })
    end)

    it("sends a tag given twice once (Letta keeps tags as a set)", function()
      local agent = new_agent()
      local path = support.write_file(dir .. "/in.jsonl", '{"text": "tagged", "tags": ["a", "b", "a", "x"]}\n')
      emu:clear_requests()
      local s = run_json(emu.url, store(), { agent, path, "--tags", "x,y,x" })
      assert.same({ 1, 0 }, { s.sent, s.failed })
      local body = emu:requests()[#emu:requests()].body
      assert.matches("^lettash%-import:", body.tags[1])
      assert.same({ "x", "y", "a", "b" }, { table.unpack(body.tags, 2) })
    end)
  end)

  describe("progress", function()
    it("with --json, a line on stderr every 5 s and the JSON alone on stdout", function()
      local agent = new_agent()
      local path = support.jsonl_file(dir .. "/in.jsonl", 70)
      emu:config{ latency_ms = 100 } -- 70 items one at a time: about 7 s
      finally(function() emu:config{ latency_ms = 0 } end)
      local s, r = run_json(emu.url, store(), { agent, path, "--concurrency", "1" })
      assert.same({ 70, 70 }, { s.items, s.sent })
      assert.equal(1, select(2, r.stdout:gsub("\n", "")))
      assert.matches("^import: %d+ items %(%d+ sent, 0 already done, 0 bad, 0 failed%) %d+/s ETA %d+s\n$", r.stderr)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("interrupted runs (import.interrupted, for doctor)", function()
    local function interrupted()
      local st <close> = letta.store.open(store())
      return import.interrupted(st)
    end

    it("lists a run killed mid-way with what was in flight and the command that continues it, until that command finishes", function()
      local agent = new_agent()
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 600)
      emu:config{ latency_ms = 30 }
      finally(function() emu:config{ latency_ms = 0 } end)
      local out = dir .. "/child"
      local args = { agent, path, "--concurrency", "8", "--dedupe", "content", "--tags", "k" }
      local pid = spawn_import(emu.url, store(), args, out)
      wait_passages(emu, agent, 100, pid, out)
      assert.same({}, interrupted()) -- still running: not interrupted
      os.execute("kill -9 " .. pid)
      while emulator.alive(pid) do letta.sleep(0.01) end
      local list = interrupted()
      assert.equal(1, #list)
      local run1 = list[1]
      assert.equal(agent, run1.agent_id)
      assert.equal(path, run1.source) -- absolute already (a tmpdir)
      assert(run1.pending >= 1 and run1.pending <= 8, "pending " .. run1.pending)
      assert.equal("bin/lettash scripts/import.lua " .. agent .. " " .. path .. " --tags k --concurrency 8 --batch 1 --dedupe content",
                   run1.command)
      assert.is_nil(run1.error)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT", run1.started)
      -- the command continues it; then it is no longer listed
      emu:config{ latency_ms = 0 }
      local cmd = run1.command:gsub("^bin/lettash scripts/import.lua ", "")
      local cargs = {}
      for a in cmd:gmatch("%S+") do cargs[#cargs + 1] = a end
      local s = run_json(emu.url, store(), cargs)
      assert.same({ 600, 0 }, { s.items, s.failed })
      assert_exactly(emu, agent, texts)
      assert.same({}, interrupted())
    end)

    it("lists a run a failure stopped, with why; a finished run is not listed; stdin says stdin", function()
      local agent = new_agent()
      local path = support.jsonl_file(dir .. "/in.jsonl", 300)
      emu:config{ latency_ms = 20 }
      finally(function() emu:config{ latency_ms = 0, password = letta.json.null } end)
      local r = run(emu.url, store(), { agent, "-", "--concurrency", "2" }, { stdin = support.read_file(path) })
      assert.equal(0, r.code, r.stderr)
      assert.same({}, interrupted()) -- finished
      -- stopped by a failure mid-run: listed, with the failure
      local other = new_agent()
      local out = dir .. "/child"
      local pid, result = spawn_import(emu.url, store(), { other, "-", "--concurrency", "2" }, out, nil, path)
      wait_passages(emu, other, 50, pid, out)
      emu:config{ password = "now-secure" }
      assert.matches("401", stopped(result()))
      local list = interrupted()
      assert.equal(1, #list)
      assert.equal(other, list[1].agent_id)
      assert.equal("stdin", list[1].source)
      assert.equal(0, list[1].pending) -- refused by the server: nothing left in doubt
      assert.matches("401", list[1].error)
      assert.equal("bin/lettash scripts/import.lua " .. other .. " - --concurrency 2 --batch 1", list[1].command)
    end)
  end)
end)

-- ---------------------------------------------------------------------------------------------
describe("import: waiting without polling (a semaphore, issue 14)", function()
  it("a repeated item waits for its first copy, and each worker for a slot, without one loop.sleep", function()
    local emu = emulator.start{ "--latency-ms", "100" }
    local dir = support.tmpdir()
    local st = letta.store.open(dir .. "/store")
    local c = emu:client()
    local real_sleep = loop.sleep
    finally(function()
      loop.sleep = real_sleep
      st:close()
      c:close()
      emu:stop()
    end)
    local lines = {}
    for i = 1, 12 do lines[#lines + 1] = json.encode({ text = "the same item" }) end
    for i = 1, 12 do lines[#lines + 1] = json.encode({ text = "item " .. i }) end
    support.write_file(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
    for _, batch in ipairs({ 1, 4 }) do -- one per request; in batches (a batch never holds a key twice)
      local agent = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
      local sleeps = 0
      loop.sleep = function(s) sleeps = sleeps + 1 return real_sleep(s) end
      local summary = import.run{ client = c, store = st, agent_id = agent, source = dir .. "/in.jsonl",
                                  concurrency = 4, batch = batch, dedupe = "content", progress = false }
      loop.sleep = real_sleep
      assert.equal(13, summary.sent)
      assert.equal(11, summary.skipped)
      assert.equal(0, summary.failed)
      assert.equal(0, sleeps) -- nothing failed: nothing to back off from, and no waiting by polling
      assert.equal(batch == 1 and 13 or 1, emu:count("POST", "/v1/agents/" .. agent .. "/archival-memory"))
    end
  end)
end)

describe("import: an answer lost after the write (issue 14)", function()
  for _, kind in ipairs{ "commit-500", "commit-reset", "bad-json" } do
    it(kind .. ": the item found on the server is journalled with that passage's id", function()
      local emu = emulator.start{}
      local dir = support.tmpdir()
      local c = emu:client()
      finally(function() c:close() emu:stop() end)
      local agent = emulator.new_agent(c, { name = "bot", memory_blocks = json.array() }).id
      support.write_file(dir .. "/in.jsonl", '{"text": "first item"}\n{"text": "second item"}\n')
      emu:faults("kind=" .. kind .. ",times=1,route=POST /v1/agents/*/archival-memory")
      local summary = run_json(emu.url, dir .. "/store", { agent, dir .. "/in.jsonl" })
      assert.equal(2, summary.sent)
      assert_exactly(emu, agent, { "first item", "second item" })
      local on_server = {}
      for _, p in ipairs(emu:state().passages[agent]) do on_server[p.id] = true end
      local st <close> = letta.store.open(dir .. "/store")
      local n = 0
      st:read(function(txn)
        for _, j in records.each_item(txn) do
          n = n + 1
          assert.is_true(records.is_done(j))
          assert.is_true(on_server[j.id], "journalled with no passage: " .. tostring(j.id))
        end
      end)
      assert.equal(2, n)
    end)
  end
end)
