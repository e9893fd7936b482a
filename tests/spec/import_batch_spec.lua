-- Bulk import in batches (issue 15): scripts/import.lua through the agent's archive,
-- POST /v1/archives/{id}/passages/batch, run as a child against the emulator over real HTTP with
-- the embedding cost model on (--embed-ms: one embedding request per batch). Exactly once through
-- commit-then-fail faults, kill -9 at random points and resume, a server without the route, and a
-- batch holding one text the embedding provider refuses.
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local checks = require "import_checks"
local letta = require "letta"
local loop = require "letta.loop"
local json = letta.json

local BATCH_ROUTE = "POST /v1/archives/*/passages/batch"

describe("import in batches", function()
  local emu, dir

  local function run(args, e)
    return script_runner.run("import", args, { url = (e or emu).url, store = dir .. "/store" })
  end

  local function run_json(args, e, code)
    local a = { "--json" }
    for _, x in ipairs(args) do a[#a + 1] = x end
    local r = run(a, e)
    assert(r.code == (code or 0), string.format("import exited %d: %s", r.code, r.stderr))
    return json.decode(r.stdout), r
  end

  local function new_agent(e)
    return emulator.new_agent((e or emu):client(), { name = "bot", memory_blocks = json.array() }).id
  end

  emulator.suite(_ENV, function(e) emu = e end, { args = { "--seed", "15", "--embed-ms", "5" }, each = function()
    dir = support.tmpdir()
  end })
  after_each(function() support.rmdir(dir) end)

  it("lands every line once, one embedding request per batch, with its tags and created_at as the agent route keeps them", function()
    -- created_at in every form the reader lets through: the batch route reads it with
    -- datetime.fromisoformat, so the importer rewrites what that does not read
    local forms = { "2024-01-02", "2024-01-02T03:04", "2024-01-02 03:04:05", "2024-01-02T03:04:05.5Z",
                    "2024-01-02T03:04:05-0530", "2024-01-02t03:04:05.123456789", "2024-01-02_03:04:05,5+02:00",
                    "1704164645", "1704164645123", "1704164645.25", "2024-01-02T03:04:05+05" }
    local lines, texts = {}, {}
    for i = 1, 480 do
      texts[i] = "batched passage " .. i
      local item = { text = texts[i], tags = { "t" .. i % 3, "shared" } }
      if i % 2 == 0 then item.created_at = forms[i // 2 % #forms + 1] end
      lines[i] = json.encode(item)
    end
    local path = support.write_file(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
    local batched, per_passage = new_agent(), new_agent()
    emu:clear_requests()
    local calls = emu:stats().embedding.calls
    local r = run_json({ batched, path, "--batch", "40", "--tags", "import" })
    assert.same({ 480, 480, 0, 0, "batch", 40 }, { r.items, r.sent, r.failed, r.bad, r.route, r.batch })
    local ps = checks.exactly(emu, batched, texts)
    -- the first line made the agent's archive through the agent route; the other 479 went in 12 batches
    local reqs = emu:requests()
    assert.equal(1, checks.count(reqs, "POST", checks.AGENT_ROUTE))
    assert.equal(12, checks.count(reqs, "POST", checks.BATCH))
    assert.equal(13, emu:stats().embedding.calls - calls)
    -- the same file through the agent route, one per request: the same tags and created_at
    run_json({ per_passage, path, "--batch", "1", "--tags", "import" })
    local want = {}
    for _, p in ipairs(checks.exactly(emu, per_passage, texts)) do want[p.text] = p end
    for _, p in ipairs(ps) do
      local i = tonumber(p.text:match("%d+$"))
      assert.same({ table.unpack(want[p.text].tags, 2) }, { table.unpack(p.tags, 2) }) -- the marker hashes the agent too
      if i % 2 == 0 then assert.equal(want[p.text].created_at, p.created_at) end -- (else: now)
      assert.same({ "import", "t" .. i % 3, "shared" }, { p.tags[2], p.tags[3], p.tags[4] })
      assert.matches("^lettash%-import:%x+$", p.tags[1])
    end
    -- a second run sends nothing
    emu:clear_requests()
    r = run_json({ batched, path, "--batch", "40", "--tags", "import" })
    assert.same({ 0, 480 }, { r.sent, r.already_present })
    assert.equal(0, checks.count(emu:requests(), "POST", "."))
  end)

  it("a batch written and then answered 500, or whose answer was lost, is found by its tags and never sent again", function()
    local agent = new_agent()
    local path, texts = support.jsonl_file(dir .. "/in.jsonl", 600)
    emu:faults("kind=commit-500,times=2,route=" .. BATCH_ROUTE .. ";kind=commit-reset,times=2,route=" .. BATCH_ROUTE
               .. ";kind=reset,times=2,route=" .. BATCH_ROUTE)
    local r = run_json({ agent, path, "--batch", "50", "--concurrency", "2" })
    assert.same({ 600, 600, 0, 0 }, { r.items, r.sent, r.failed, r.duplicates_removed })
    checks.exactly(emu, agent, texts)
    local fired, posts = {}, 0
    for _, q in ipairs(emu:requests()) do
      if q.fault then fired[q.fault] = (fired[q.fault] or 0) + 1 end
      if q.method == "POST" and q.path:match(checks.BATCH) then posts = posts + 1 end
    end
    assert.same({ 2, 2, 2 }, { fired["commit-500"], fired["commit-reset"], fired["reset"] })
    -- 12 batches (the first line went alone); a 500 cuts the batch in halves (the halves find
    -- their items landed and send nothing); only what a reset stopped before the write is sent again
    assert.equal(12 + 2, posts)
    assert.is_true(emu:count("GET", "/v1/agents/[^/]+/archival%-memory") >= 4 * 50)
    assert.equal(0, checks.count(emu:requests(), "DELETE", "."))
  end)

  it("kill -9 at 10 random points, each run resumed with another --batch: every line exactly once", function()
    local agent = new_agent()
    local path, texts = support.jsonl_file(dir .. "/in.jsonl", 3000)
    emu:config{ latency_ms = 10, embed_ms = 40, embed_concurrency = 4 }
    finally(function() emu:config{ latency_ms = 0, embed_ms = 5, embed_concurrency = 0 } end)
    local seed = os.time()
    math.randomseed(seed)
    local batches, kills = { "50", "20", "80", "35" }, {}
    for round = 1, 10 do
      local out = dir .. "/child" .. round
      local pid = support.spawn({ support.bin, script_runner.path("import"), agent, path,
                                  "--batch", batches[round % #batches + 1], "--concurrency", "4" },
                                { env = script_runner.env{ url = emu.url, store = dir .. "/store" }, out = out })
      local before = #checks.passages(emu, agent)
      -- a random point: after 0 to 150 more passages landed, or at once (before the first batch)
      local target = before + math.random(0, 150)
      local deadline = loop.now() + 30
      while #checks.passages(emu, agent) < target and loop.now() < deadline and emulator.alive(pid) do letta.sleep(0.005) end
      assert(emulator.alive(pid), "round " .. round .. ": the import ended before it was killed (seed " .. seed .. ")")
      os.execute("kill -9 " .. pid)
      while emulator.alive(pid) do letta.sleep(0.01) end
      kills[round] = #checks.passages(emu, agent)
    end
    letta.sleep(0.3) -- the batches in flight at the last kill land (to nobody)
    emu:config{ latency_ms = 0, embed_ms = 0 }
    local r = run_json({ agent, path })
    assert.same({ 3000, 0 }, { r.items, r.failed })
    checks.exactly(emu, agent, texts)
    assert.equal(0, checks.count(emu:requests(), "DELETE", ".")) -- no duplicate was ever made (and removed)
    print(string.format("\n    seed %d; passages at the kills: %s; last run: %d already done, %d recovered, %d sent",
                        seed, table.concat(kills, " "), r.already_present, r.recovered, r.sent))
  end)

  it("a server without the batch route (Letta before 0.16.4): one passage per request, said once, every line once", function()
    local old = emulator.start{ "--compat", "no-archive-batch" }
    finally(function() old:stop() end)
    local agent = new_agent(old)
    local path, texts = support.jsonl_file(dir .. "/in.jsonl", 300)
    local r, res = run_json({ agent, path, "--concurrency", "4" }, old)
    assert.same({ 300, 300, 0, "passage" }, { r.items, r.sent, r.failed, r.route })
    assert.equal(1, #r.notes)
    assert.matches("no batch route", r.notes[1])
    local _, said = res.stderr:gsub("no batch route", "")
    assert.equal(1, said)
    checks.exactly(old, agent, texts)
    -- the batches in flight when it showed (405) went one by one; nothing was sent twice
    local reqs = old:requests()
    local batch_posts = checks.count(reqs, "POST", checks.BATCH)
    assert.is_true(batch_posts >= 1 and batch_posts <= 4, batch_posts .. " batch requests")
    assert.equal(300, checks.count(reqs, "POST", checks.AGENT_ROUTE))
  end)

  it("a batch holding one text the embedding provider refuses: nothing of it is written (500), its halves land, that line is reported", function()
    local agent = new_agent()
    local lines, texts = {}, {}
    for i = 1, 200 do
      local text = "passage " .. i .. (i == 77 and (" long" .. string.rep(" word", 200)) or "")
      if i ~= 77 then texts[#texts + 1] = text end
      lines[i] = json.encode({ text = text })
    end
    local path = support.write_file(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
    emu:config{ embed_max_tokens = 100 } -- a provider with a short context: 400 bytes at most
    finally(function() emu:config{ embed_max_tokens = 8192 } end)
    local failed_calls = emu:stats().embedding.failed_calls
    local r = run_json({ agent, path, "--batch", "50" }, nil, 2)
    assert.same({ 200, 199, 1 }, { r.items, r.sent, r.failed })
    assert.equal(77, r.failures[1].line)
    assert.matches("500 Internal Server Error: An unknown error occurred", r.failures[1].error, 1, true)
    checks.exactly(emu, agent, texts)
    -- the batch, then the half holding the line down to 2 or 3 items (how many halvings depends
    -- on where the line sits: 4 to 6), then the line alone, tried 6 times
    local n = emu:stats().embedding.failed_calls - failed_calls
    assert(n >= 1 + 4 + 6 and n <= 1 + 6 + 6, n .. " failed embedding calls")
  end)

  it("--dedupe content: the same item in batches in flight at once is sent once", function()
    local agent = new_agent()
    local lines, texts = {}, {}
    for i = 1, 400 do
      local n = (i - 1) % 100 + 1 -- each of 100 items four times, in four batches of 100
      lines[i] = json.encode({ text = "item " .. n })
      texts[n] = "item " .. n
    end
    local path = support.write_file(dir .. "/in.jsonl", table.concat(lines, "\n") .. "\n")
    local r = run_json({ agent, path, "--batch", "100", "--concurrency", "4", "--dedupe", "content" })
    assert.same({ 400, 100, 300, 0 }, { r.items, r.sent, r.already_present, r.failed })
    checks.exactly(emu, agent, texts)
  end)
end)
