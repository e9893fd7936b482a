-- Bulk passage import (scripts/import.lua over letta.import), run as a child `bin/lettash
-- scripts/import.lua ...` against the emulator over real HTTP, each test with a store of its own:
-- exactly once under commit-then-fail faults and resets, resume after kill -9, bad lines, the
-- formats, stdin, --dry-run, --json, exit statuses, 429/503, and flat memory.
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local letta = require "letta"
local loop = require "letta.loop"
local json = letta.json

local POST_PASSAGE = "POST /v1/agents/*/archival-memory"

local function sleep(s) letta.sleep(s) end

-- These specs pin the per-passage route (--batch 1, one passage per request through the agent),
-- whose faults and request counts they assert; import_batch_spec.lua covers the batch route.
local checks = require "import_checks"
local per_passage = checks.per_passage

describe("scripts/import.lua", function()
  local emu, admin, dir

  -- run(args, opts) -> {code=, stdout=, stderr=}: the script as a child, on this test's store.
  local function run(args, opts)
    opts = opts or {}
    return script_runner.run("import", per_passage(args), { url = (opts.emu or emu).url, store = dir .. "/store",
                                               stdin = opts.stdin })
  end

  -- The summary of a --json run that must exit with `code` (0 by default).
  local function run_json(args, opts, code)
    local a = { "--json" }
    for _, x in ipairs(args) do a[#a + 1] = x end
    local r = run(a, opts)
    assert(r.code == (code or 0), string.format("import exited %d: %s", r.code, r.stderr))
    return json.decode(r.stdout), r
  end

  -- The run must fail with exactly one line "import: ..." on stderr and exit 1; returns it.
  local function fails(args)
    local r = run(args)
    assert.equal(1, r.code)
    assert.equal("", r.stdout)
    local msg = r.stderr:match("^import: ([^\n]+)\n$")
    assert(msg, "expected one line 'import: ...' on stderr, got: " .. r.stderr)
    return msg
  end

  local function new_agent(e)
    return emulator.new_agent((e or emu):client(), { name = "bot", memory_blocks = json.array() }).id
  end

  -- The agent's passages on the server (from the admin state).
  local function passages_of(agent_id, e) return checks.passages(e or emu, agent_id) end

  -- Every text of `texts` is on the server exactly once, and nothing else is.
  local function assert_exactly(texts, agent_id, e) return checks.exactly(e or emu, agent_id, texts) end

  -- Starts the import of `path` into `agent` in the background (stdout/stderr in out.out/out.err);
  -- returns its pid.
  local function spawn_import(agent, path, out)
    os.execute(string.format("(LETTA_BASE_URL=%s LETTA_STORE=%s exec %s %s %s %s --batch 1) </dev/null >%s.out 2>%s.err & echo $! >%s.pid",
                             support.quote(emu.url), support.quote(dir .. "/store"), support.quote(support.bin),
                             support.quote(script_runner.path("import")), support.quote(agent), support.quote(path),
                             out, out, out))
    return assert(tonumber(support.read_file(out .. ".pid")))
  end

  local function posts(reqs)
    local n = {}
    for _, r in ipairs(reqs) do
      if r.method == "POST" and r.path:match("/archival%-memory$") then n[#n + 1] = r end
    end
    return n
  end

  emulator.suite(_ENV, function(e, c) emu, admin = e, c end, { args = { "--seed", "11" }, each = function()
    dir = support.tmpdir()
  end })
  after_each(function() support.rmdir(dir) end)

  -- -------------------------------------------------------------------------------------------
  describe("exactly once", function()
    local femu
    lazy_setup(function()
      femu = emulator.start{ "--seed", "42", "--faults",
        "kind=commit-500,p=0.05,route=" .. POST_PASSAGE .. ";kind=commit-reset,p=0.025,route=" .. POST_PASSAGE
          .. ";kind=reset,p=0.025,route=" .. POST_PASSAGE }
    end)
    lazy_teardown(function() if femu then femu:stop() end end)

    it("lands 2,000 items exactly once through 5% commit-then-500 and 5% resets", function()
      local agent = new_agent(femu)
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 2000)
      local r = run_json({ agent, path }, { emu = femu })
      assert.same({ 2000, 2000, 0, 0, 0, 0, 0 },
                  { r.items, r.sent, r.skipped, r.recovered, r.bad, r.failed, r.duplicates_removed })
      local ps = assert_exactly(texts, agent, femu)
      -- every passage carries its line's tag and the item's unique marker
      for _, p in ipairs(ps) do
        local i = tonumber(p.text:match("passage (%d+)"))
        assert.equal("t" .. i % 5, p.tags[2])
        assert.matches("^lettash%-import:%x+$", p.tags[1])
      end
      -- the faults did fire, and the committed-then-failed ones were found, not sent again
      local fired = {}
      for _, q in ipairs(femu:requests()) do
        if q.fault then fired[q.fault] = (fired[q.fault] or 0) + 1 end
      end
      assert.is_true((fired["commit-500"] or 0) >= 50, "commit-500 fired " .. tostring(fired["commit-500"]))
      assert.is_true((fired["commit-reset"] or 0) >= 20 and (fired["reset"] or 0) >= 20)
      -- a POST is repeated only when the first one did not land (reset before it was applied)
      assert.equal(2000 + fired["reset"], #posts(femu:requests()))
    end)

    it("never sends an item again while it cannot tell whether the first send landed", function()
      local agent = new_agent()
      emu:faults("kind=commit-500,times=1,route=" .. POST_PASSAGE
                 .. ";kind=reset,times=3,route=GET /v1/agents/*/archival-memory")
      local path, texts = support.jsonl_file(dir .. "/one.jsonl", 1)
      local r = run_json({ agent, path })
      assert.equal(1, r.sent)
      assert_exactly(texts, agent)
      assert.equal(1, #posts(emu:requests()))
      assert.is_true(emu:count("GET", "/v1/agents/[^/]+/archival%-memory") >= 4) -- looked for by listing
      assert.equal(0, emu:count("GET", "/v1/agents/[^/]+/archival%-memory/search"))
    end)

    it("continues after kill -9 with no gaps and no duplicates, and a third run sends nothing", function()
      local agent = new_agent()
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 2000)
      emu:config{ latency_ms = 16 } -- 2,000 items at 16 in flight: about 2 s
      finally(function() emu:config{ latency_ms = 0 } end)
      local out = dir .. "/child"
      local pid = spawn_import(agent, path, out)
      local n, deadline = 0, loop.now() + 30
      while loop.now() < deadline do
        n = #passages_of(agent)
        if n >= 400 then break end
        assert(emulator.alive(pid), "the import ended before it could be killed: " .. tostring(support.read_file(out .. ".err")))
        sleep(0.01)
      end
      os.execute("kill -9 " .. pid)
      while emulator.alive(pid) do sleep(0.01) end
      sleep(0.1) -- the requests the child had in flight are answered (to nobody)
      local at_kill = #passages_of(agent)
      assert(n >= 400 and at_kill <= 1600, string.format("killed at %d passages (%d after)", n, at_kill))

      emu:config{ latency_ms = 0 }
      local r2 = run_json({ agent, path })
      assert.equal(2000, r2.items)
      assert.equal(0, r2.failed)
      assert.equal(2000, r2.sent + r2.skipped + r2.recovered)
      assert.equal(at_kill, r2.skipped + r2.recovered) -- what landed before the kill is never sent again
      assert_exactly(texts, agent)
      print(string.format("\n    killed at %d passages; rerun: %d already done, %d recovered, %d sent",
                          at_kill, r2.skipped, r2.recovered, r2.sent))

      emu:clear_requests()
      local r3 = run_json({ agent, path })
      assert.same({ 2000, 0, 2000, 0, 0 }, { r3.items, r3.sent, r3.skipped, r3.recovered, r3.failed })
      assert.equal(0, #posts(emu:requests()))
      assert_exactly(texts, agent)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("recovery on Letta 0.16.8's search semantics", function()
    -- 500 lines of one long sentence that differ in one word near the end: a search for an item
    -- (the tag filter applied after the top_k nearest) cannot tell them apart, a listing by text can.
    local function near_identical(path, n)
      local base = "The quarterly inventory report for the northern warehouse lists every pallet, crate and "
        .. "loose item that arrived during the period, checked twice by the night shift and signed off by the "
        .. "supervisor on duty, with the usual notes on damaged goods and late deliveries; code word "
      local f = assert(io.open(path, "wb"))
      local texts = {}
      for i = 1, n do
        texts[i] = base .. string.format("w%04dx", i * 7919 % 10007) .. "."
        f:write(json.encode({ text = texts[i] }), "\n")
      end
      f:close()
      assert(#base > 250)
      return texts
    end

    it("500 near-identical lines killed mid-run (kill -9) and resumed: every line exactly once", function()
      local agent = new_agent()
      local path = dir .. "/near.jsonl"
      local texts = near_identical(path, 500)
      emu:config{ latency_ms = 40 } -- 500 items at 16 in flight: about 1.3 s
      finally(function() emu:config{ latency_ms = 0 } end)
      local out = dir .. "/child"
      local pid = spawn_import(agent, path, out)
      local deadline = loop.now() + 30
      while #passages_of(agent) < 150 and loop.now() < deadline do
        assert(emulator.alive(pid), "the import ended before it could be killed: " .. tostring(support.read_file(out .. ".err")))
        sleep(0.01)
      end
      os.execute("kill -9 " .. pid)
      while emulator.alive(pid) do sleep(0.01) end
      sleep(0.3) -- the sends the child had in flight land (they are the newest passages)
      local at_kill = #passages_of(agent)
      assert(at_kill >= 150 and at_kill < 500, "killed at " .. at_kill .. " passages")

      emu:config{ latency_ms = 0 }
      emu:clear_requests()
      local r = run_json({ agent, path })
      assert.same({ 500, 0 }, { r.items, r.failed })
      assert.equal(at_kill, r.skipped + r.recovered) -- what landed before the kill is never sent again
      assert.is_true(r.recovered >= 1, "no send was in flight at the kill")
      assert.equal(500 - at_kill, #posts(emu:requests()))
      assert.equal(0, emu:count("GET", "/v1/agents/[^/]+/archival%-memory/search"))
      assert_exactly(texts, agent) -- checked on the server's own state (/_emulator/state)
      print(string.format("\n    near-identical: killed at %d passages; rerun: %d already done, %d recovered, %d sent",
                          at_kill, r.skipped, r.recovered, r.sent))
    end)

    it("looks for an item with the longest backslash-free piece of its text, at most 512 bytes", function()
      local needle = require("letta.import").needle
      assert.equal("plain text", needle("plain text"))
      assert.equal(" the longer part", needle([[C:\ the longer part\x]]))
      assert.equal("the longer part", needle("a\0the longer part")) -- Letta stores text without NULs
      local long = string.rep("\u{E9}", 400) -- 800 bytes of 2-byte characters
      assert.equal(string.rep("\u{E9}", 256), needle(long))
      assert.equal(511, #needle("x" .. long)) -- never cut inside a character
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("input", function()
    it("reports bad lines by number, counts them and never sends them", function()
      local agent = new_agent()
      local lines = {
        '{"text": "good one"}',                        -- 1
        '{not json',                                   -- 2
        '{"tags": ["a"]}',                             -- 3 missing text
        '{"text": "caf\255 au lait"}',                 -- 4 not UTF-8
        '{"text": "' .. string.rep("x", 60) .. '"}',   -- 5 over --chunk-size 50
        '{"text": "numbers", "tags": [1, 2]}',         -- 6
        '{"text": "a string", "tags": "a,b"}',         -- 7
        '{"text": "an object", "tags": {"a": "b"}}',   -- 8
        '[1, 2]',                                      -- 9 not an object
        '',                                            -- 10 blank: nothing
        '{"text": "good two", "tags": ["k"]}',         -- 11
      }
      local path = support.write_file(dir .. "/bad.jsonl", table.concat(lines, "\n") .. "\n")
      local r = run({ agent, path, "--chunk-size", "50" })
      assert.equal(0, r.code)
      local want = { [2] = "invalid JSON", [3] = "missing text", [4] = "not valid UTF%-8", [5] = "over the size limit",
                     [6] = "tags must be an array of strings", [7] = "tags must be an array of strings",
                     [8] = "tags must be an array of strings", [9] = "not a JSON object" }
      for line, what in pairs(want) do
        assert.matches("\nline " .. line .. ": [^\n]*" .. what .. "[^\n]*%(skipped%)\n", "\n" .. r.stdout)
      end
      assert.matches("2 items: 2 sent, 0 already done, 0 recovered, 0 duplicates removed, 8 bad lines, 0 failed", r.stdout)
      assert_exactly({ "good one", "good two" }, agent)
      local s = run_json({ agent, path, "--chunk-size", "50" })
      local got = {}
      for _, b in ipairs(s.bad_lines) do got[#got + 1] = b.line end
      assert.same({ 2, 3, 4, 5, 6, 7, 8, 9 }, got)
      assert.same({ 8, 2, 2, 0 }, { s.bad, s.items, s.skipped, s.sent })
      for _, q in ipairs(posts(emu:requests())) do
        assert.is_true(q.body.text == "good one" or q.body.text == "good two")
      end
    end)

    it("reads CSV with a header, quoted commas, quotes and line breaks, tags and created_at", function()
      local agent = new_agent()
      local csv = table.concat({
        'id,text,tags,created_at',
        '1,"Hello, world",a;b,2024-01-02T03:04:05Z',
        '2,"She said ""hi""",,',
        '3,"multi',
        'line, with comma',
        'text",c,',
        '4,,x,', -- line 7: no text
        '5,plain,,',
      }, "\r\n") .. "\r\n"
      local path = support.write_file(dir .. "/in.csv", csv)
      local r = run_json({ agent, path }) -- csv from the extension
      assert.equal("csv", r.format)
      assert.same({ 4, 4, 1 }, { r.items, r.sent, r.bad })
      assert.same({ line = 7, error = "missing text" }, r.bad_lines[1])
      local ps = assert_exactly({ "Hello, world", 'She said "hi"', "multi\nline, with comma\ntext", "plain" }, agent)
      for _, p in ipairs(ps) do
        if p.text == "Hello, world" then
          assert.same({ "a", "b" }, { p.tags[2], p.tags[3] })
          assert.matches("^2024%-01%-02T03:04:05", p.created_at)
        elseif p.text:match("^multi") then
          assert.equal("c", p.tags[2])
        end
      end
    end)

    it("splits plain text into paragraphs and cuts long ones at --chunk-size, on spaces", function()
      local agent = new_agent()
      local words = {}
      for i = 1, 40 do words[i] = string.format("word%02d", i) end
      local long = table.concat(words, " ") -- 279 bytes
      local text = "First paragraph,\non two lines.\n\n\n" .. long .. "\n\nLast one.\n"
      local path = support.write_file(dir .. "/notes.txt", text)
      local r = run_json({ agent, path, "--chunk-size", "100" })
      assert.equal("text", r.format)
      assert.equal(0, r.bad)
      local ps = passages_of(agent)
      assert.equal(r.sent, #ps)
      table.sort(ps, function(a, b) return a.created_at < b.created_at or (a.created_at == b.created_at and a.id < b.id) end)
      local texts, pieces = {}, {}
      for _, p in ipairs(ps) do
        texts[p.text] = true
        assert.is_true(#p.text <= 100, #p.text .. " bytes")
        if p.text:match("^word") then pieces[#pieces + 1] = p.text end
      end
      assert.is_true(texts["First paragraph,\non two lines."] and texts["Last one."])
      assert.equal(3, #pieces)
      local rejoined = {}
      for _, w in ipairs(pieces) do for x in w:gmatch("%S+") do rejoined[#rejoined + 1] = x end end
      table.sort(rejoined)
      assert.same(words, rejoined)
      assert.equal(5, r.items)
    end)

    it("reads stdin with '-', and prints progress lines on stderr", function()
      local agent = new_agent()
      local input = '{"text": "from stdin 1"}\n{"text": "from stdin 2", "tags": ["s"]}\n'
      local r = run({ agent, "-" }, { stdin = input })
      assert.equal(0, r.code, r.stderr)
      assert.matches("import: 2 items: 2 sent", r.stdout)
      assert.matches("import: 2 items %(2 sent, 0 already done, 0 bad, 0 failed%)", r.stderr)
      assert_exactly({ "from stdin 1", "from stdin 2" }, agent)
      local csv = run_json({ agent, "-", "--format", "csv", "--tags", "x,y" }, { stdin = "text\nfrom csv stdin\n" })
      assert.same({ 1, 1 }, { csv.items, csv.sent })
      local tagged
      for _, p in ipairs(passages_of(agent)) do if p.text == "from csv stdin" then tagged = p.tags end end
      assert.same({ "x", "y" }, { tagged[2], tagged[3] })
    end)

    it("sends nothing with --dry-run, and says what it would import", function()
      local agent = new_agent()
      local path = support.jsonl_file(dir .. "/in.jsonl", 50)
      local f = assert(io.open(path, "ab"))
      f:write("{oops\n")
      f:close()
      emu:clear_requests()
      local r = run({ agent, path, "--dry-run" })
      assert.equal(0, r.code)
      assert.matches("line 51: invalid JSON", r.stdout)
      assert.matches("dry run: 50 items to import, 1 bad lines", r.stdout)
      local s = run_json({ agent, path, "--dry-run" })
      assert.same({ true, 50, 0, 1 }, { s.dry_run, s.items, s.sent, s.bad })
      assert.equal(0, #emu:requests())
      assert.equal(0, #passages_of(agent))
    end)

    it("prints the summary as JSON with --json", function()
      local agent = new_agent()
      local path = support.jsonl_file(dir .. "/in.jsonl", 10)
      local s, r = run_json({ agent, path })
      assert.equal("", r.stderr) -- no progress with --json
      for _, k in ipairs({ "items", "sent", "skipped", "recovered", "duplicates_removed", "bad", "failed" }) do
        assert.equal("integer", math.type(s[k]), k)
      end
      assert.same({ 10, 10, 0 }, { s.items, s.sent, s.skipped })
      assert.equal("number", type(s.seconds))
      assert.equal("number", type(s.rate))
      assert.equal("jsonl", s.format)
      assert.is_false(s.dry_run)
      assert.matches('"bad_lines":%[%]', r.stdout)
      assert.matches('"failures":%[%]', r.stdout)
      assert.equal(1, select(2, r.stdout:gsub("\n", "")))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("exit status", function()
    it("is 2 when the server refused items, which are reported by line and not retried", function()
      local agent = new_agent()
      local huge = string.rep("long ", 7000) .. "end" -- 35,003 bytes: over the server's token limit (400)
      local path = support.write_file(dir .. "/in.jsonl", '{"text": "fine"}\n' .. json.encode({ text = huge }) .. '\n{"text": "also fine"}\n')
      local s = run_json({ agent, path, "--chunk-size", "40000" }, nil, 2)
      assert.same({ 3, 2, 1 }, { s.items, s.sent, s.failed })
      assert.equal(2, s.failures[1].line)
      assert.matches("400", s.failures[1].error)
      assert_exactly({ "fine", "also fine" }, agent)
      local huge_posts = 0
      for _, q in ipairs(posts(emu:requests())) do if #q.body.text > 1000 then huge_posts = huge_posts + 1 end end
      assert.equal(1, huge_posts)
      local r = run({ agent, path, "--chunk-size", "40000" })
      assert.equal(2, r.code)
      assert.matches("line 2: failed: [^\n]*400", r.stdout)
    end)

    it("is 1 with one clear line on bad arguments, before anything is sent", function()
      local agent = new_agent()
      emu:clear_requests()
      assert.matches("/nonexistent/in%.jsonl", fails({ agent, "/nonexistent/in.jsonl" }))
      local path = support.jsonl_file(dir .. "/in.jsonl", 3)
      assert.equal("--format must be jsonl, csv or text", fails({ agent, path, "--format", "xml" }))
      assert.equal("--concurrency must be a whole number above 0", fails({ agent, path, "--concurrency", "0" }))
      assert.equal("--concurrency must be a whole number above 0", fails({ agent, path, "--concurrency", "lots" }))
      assert.equal("--chunk-size must be a whole number above 0", fails({ agent, path, "--chunk-size", "-5" }))
      assert.matches("^missing arguments", fails({ agent }))
      assert.equal("agent id expected: agent-<uuid>, got 'agent-typo'", fails({ "agent-typo", path }))
      assert.equal(0, #posts(emu:requests()))
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("a busy server", function()
    it("honours Retry-After on 429 and still lands every item once", function()
      local agent = new_agent()
      emu:faults("kind=429,retry_after=1,times=3,route=" .. POST_PASSAGE)
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 40)
      local s = run_json({ agent, path, "--concurrency", "4" })
      assert.same({ 40, 0 }, { s.sent, s.failed })
      assert_exactly(texts, agent)
      local reqs = posts(emu:requests())
      local limited = 0
      for i, q in ipairs(reqs) do
        if q.status == 429 then
          limited = limited + 1
          local again
          for j = i + 1, #reqs do
            if reqs[j].body.text == q.body.text then again = reqs[j] break end
          end
          assert(again, "the item was not sent again")
          local wait = again.time - (q.time + q.duration_ms / 1000)
          assert(wait >= 0.9, string.format("sent again %.3f s after a 429 with Retry-After: 1", wait))
        end
      end
      assert.equal(3, limited)
    end)

    it("backs off after 503 before sending an item again, and lands every item once", function()
      local agent = new_agent()
      emu:faults("kind=503,times=8,route=" .. POST_PASSAGE)
      local path, texts = support.jsonl_file(dir .. "/in.jsonl", 60)
      local s = run_json({ agent, path, "--concurrency", "8" })
      assert.same({ 60, 0 }, { s.sent, s.failed })
      assert_exactly(texts, agent)
      local reqs = posts(emu:requests())
      local unavailable = 0
      for i, q in ipairs(reqs) do
        if q.status == 503 then
          unavailable = unavailable + 1
          local again
          for j = i + 1, #reqs do
            if reqs[j].body.text == q.body.text then again = reqs[j] break end
          end
          local wait = again.time - (q.time + q.duration_ms / 1000)
          assert(wait >= 0.15, string.format("sent again %.3f s after a 503", wait))
        end
      end
      assert.equal(8, unavailable)
    end)
  end)

  -- -------------------------------------------------------------------------------------------
  describe("memory", function()
    -- Imports n short lines (latency 0, 16 in flight); returns the child's peak RSS in KB.
    local function peak_rss(n)
      local agent = new_agent()
      local path = dir .. "/short" .. n .. ".jsonl"
      local f = assert(io.open(path, "wb"))
      for i = 1, n do f:write('{"text":"line ', i, '"}\n') end
      f:close()
      local r = support.sh(string.format("LETTA_BASE_URL=%s LETTA_STORE=%s /usr/bin/time -f 'maxrss=%%M' %s %s %s %s --json",
                                         support.quote(emu.url), support.quote(dir .. "/store" .. n), support.quote(support.bin),
                                         support.quote(script_runner.path("import")), support.quote(agent),
                                         support.quote(path)))
      assert(r.code == 0, r.stderr)
      local s = json.decode(r.stdout)
      assert.same({ n, n, 0 }, { s.items, s.sent, s.failed })
      -- on the server (the admin state of 100k passages is too big for a client: count with python)
      local c = support.sh("curl -s " .. support.quote(emu.url .. "/_emulator/state") .. " | python3 -c "
                           .. support.quote("import json,sys; print(len(json.load(sys.stdin)['passages'].get(sys.argv[1], [])))")
                           .. " " .. support.quote(agent))
      assert.equal(tostring(n), (c.stdout or ""):match("%d+"))
      emu:reset() -- the next run starts from an empty server
      return assert(tonumber(r.stderr:match("maxrss=(%d+)")))
    end

    it("stays flat: 100k lines peak within a few MB of 20k, both under 30 MB", function()
      if os.getenv("LETTASH_ASAN") then pending("AddressSanitizer's shadow memory is no measure of ours") return end
      local small, big = peak_rss(20000), peak_rss(100000)
      print(string.format("\n    import peak RSS: 20k lines %.1f MB, 100k lines %.1f MB", small / 1024, big / 1024))
      assert(big < 30 * 1024 and small < 30 * 1024, "peak RSS " .. small .. " / " .. big .. " KB")
      assert(big - small < 3 * 1024, string.format("100k lines took %d KB more than 20k", big - small))
    end)
  end)
end)
