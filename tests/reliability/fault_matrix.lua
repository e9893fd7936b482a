-- The fault matrix: every workflow (onboard, chat, chat streamed, import in batches and one per
-- request, offboard, doctor) under
-- every emulator fault, each run through its CLI script (bin/lettash scripts/<name>.lua) against
-- the emulator, with a store of its own.
--
--   bin/lettash tests/reliability/fault_matrix.lua [--full] [--only=WORKFLOW] [--verbose]
--
-- A cell is a (workflow, fault) pair; it holds one case per route the workflow uses (the full
-- run; the fast run takes the workflow's main write route, and the cases that once failed). A case: fresh emulator state and
-- store, the workflow's setup (no faults), one fault rule `kind=K,times=1,route=R`, the workflow
-- through its script, then (after any `slow` request has landed) one of two outcomes must hold:
--   (a) exit 0, and the server state (/_emulator/state) and the store are exactly right;
--   (b) a non-zero exit with ONE clear line on stderr (the report of import/doctor, for their exit
--       2), and the same command run again without the fault exits 0 with the state exactly right.
-- Cells print "ok" (every case (a)), "ok after rerun" (some case needed (b)) or "FAIL".
-- The last line is "N passed, N failed" (one per case).
local lib = dofile((os.getenv("PWD") or ".") .. "/tests/reliability/lib.lua")
local json = lib.json
local records = require "letta.users.records"

local opts = lib.parse_args(arg)
local FULL = opts.full and true or false
local VERBOSE = opts.verbose and true or false
local ONLY = opts.only

local FAULTS = {
  { id = "500", kind = "500" },
  { id = "502", kind = "502" },
  { id = "503", kind = "503" },
  { id = "429", kind = "429", extra = ",retry_after=1" },
  { id = "slow", kind = "slow", extra = ",ms=" .. lib.SLOW_MS },
  { id = "reset", kind = "reset" },
  { id = "reset-body", kind = "reset-body" },
  { id = "truncate", kind = "truncate" },
  { id = "bad-json", kind = "bad-json" },
  { id = "commit-500", kind = "commit-500" },
  { id = "commit-reset", kind = "commit-reset" },
  { id = "stream-error", kind = "stream-error", only = { ["chat-stream"] = true }, first_route = true }, -- SSE only
}

local ATTACH = "PATCH /v1/agents/*/core-memory/blocks/attach/*"
local BATCH = "POST /v1/archives/*/passages/batch"
local PASSAGE = "POST /v1/agents/*/archival-memory"
local DETACH = "PATCH /v1/agents/*/core-memory/blocks/detach/*"

local function agent_of(emu)
  return lib.emulator.new_agent(emu:client(), { name = "bot", memory_blocks = { { label = "human", value = "?" },
                                                                      { label = "persona", value = "p" } } }).id
end

-- ---------------------------------------------------------------------------------------------
-- Workflows. setup(c) prepares the case (no faults); run(c) runs the script; check(c, r, runs)
-- returns nil when the final state is exactly right. routes: the first is the fast run's.

local REPLY = "^%[blocks: human,persona,Persona_alice%] %[sender: identity%-[%x%-]+%] you said: hello there\n?$"

-- The chat's exact end: alice and bob intact, no persona attached, no attachment or lease; the
-- server holds one user message per send that was applied (never one sent twice by lettash);
-- alice's history holds the exchange once; the last run printed the reply.
local function check_chat(c, r)
  local state = c.emu:state()
  local bad = lib.check_users(c, { "alice", "bob" }, state)
  if bad then return bad end
  local applied = 0
  -- The stream-error send (logged as a plain 200: the fault is the handler's) stores nothing: on
  -- Letta 0.16.8 a failed step persists none of its messages, so the rerun sends it again.
  local failed_stream = c.fault == "stream-error" and 1 or 0
  for _, q in ipairs(c.emu:requests()) do
    if q.method == "POST" and q.path:match("^/v1/agents/[^/]+/messages") and q.seq > c.seq0 then
      local f = q.fault
      if failed_stream > 0 and q.path:match("/stream$") then
        failed_stream = failed_stream - 1
      elseif (q.status == 200 and (f == nil or f == json.null or f == "slow")) or f == "commit-500"
             or f == "commit-reset" or f == "reset-body" or f == "truncate" or f == "bad-json" then
        applied = applied + 1
      end
    end
  end
  local n = lib.user_messages(state, c.agent, "hello there")
  if n ~= applied then return string.format("%d user messages on the server, %d sends applied", n, applied) end
  local h = lib.persona(state, "alice").conversation_history
  if #h ~= 1 or h[1].user ~= "hello there" then return string.format("alice's history holds %d exchanges, want 1", #h) end
  if not h[1].agent:match("you said: hello there") then return "the history holds the wrong reply" end
  if #lib.persona(state, "bob").conversation_history ~= 0 then return "bob's history changed" end
  if not (r.stdout or ""):match(REPLY) then return "the reply printed is wrong: " .. tostring(r.stdout) end
  return nil
end

local function chat_setup(c)
  c.agent = agent_of(c.emu)
  lib.cli_ok(c, "onboard", "alice", "--name", "Alice")
  lib.cli_ok(c, "onboard", "bob")
end

-- The import of 40 items with --batch `batch`, under a fault on each of `routes`.
local function import_workflow(id, batch, routes)
  return {
    id = id,
    setup = function(c)
      c.agent = agent_of(c.emu)
      c.file, c.texts = lib.jsonl(c.dir .. "/items.jsonl", 40)
    end,
    run = function(c) return lib.cli(c, "import", c.agent, c.file, "--batch", batch) end,
    check = function(c) return lib.check_import(c, c.agent, c.texts) end,
    routes = routes,
    report_exit = 2, -- failed items: exit 2, listed by line on stdout
  }
end

local WORKFLOWS = {
  {
    id = "onboard",
    setup = function(c) lib.cli_ok(c, "onboard", "bob") end,
    run = function(c) return lib.cli(c, "onboard", "alice", "--name", "Alice", "--preferences", '{"tea":"green"}') end,
    check = function(c, r)
      local state = c.emu:state()
      local bad = lib.check_users(c, { "alice", "bob" }, state)
      if bad then return bad end
      local p = lib.persona(state, "alice")
      if p.name ~= "Alice" or type(p.preferences) ~= "table" or p.preferences.tea ~= "green" then
        return "alice's persona does not hold her name and preferences"
      end
      local i = lib.identities_of(state, "alice")[1]
      if i.name ~= "Alice" then return "alice's identity is not named Alice" end
      return nil
    end,
    routes = { { "POST /v1/blocks/" }, { "POST /v1/identities/" }, { "PATCH /v1/blocks/*/identities/attach/*" } },
  },
  {
    id = "chat",
    setup = chat_setup,
    run = function(c) return lib.cli(c, "chat", "alice", c.agent, "hello there") end,
    check = check_chat,
    -- fast: also the cases that once failed (a late attach left the persona on; a history write lost)
    routes = { { "POST /v1/agents/*/messages" }, { ATTACH, fast = { slow = true } }, { DETACH, fast = { ["bad-json"] = true } },
               { "GET /v1/blocks/*", fast = { ["bad-json"] = true } }, { "PATCH /v1/blocks/*" } },
  },
  {
    id = "chat-stream",
    setup = chat_setup,
    run = function(c) return lib.cli(c, "chat", "alice", c.agent, "hello there", "--stream") end,
    check = check_chat,
    routes = { { "POST /v1/agents/*/messages/stream" }, { ATTACH }, { DETACH }, { "GET /v1/blocks/*" },
               { "PATCH /v1/blocks/*" } },
  },
  -- in batches of 10 (the first item alone, through the agent route: it makes the archive). The
  -- look-up (a listing by text) runs only after an ambiguous send: its rule is paired with a send fault.
  import_workflow("import", "10", { { BATCH }, { BATCH, times = 4 }, { "GET /v1/archives/" }, { PASSAGE },
                                    { "GET /v1/agents/*/archival-memory", with = "kind=commit-500,times=2,route=" .. BATCH } }),
  import_workflow("import-passage", "1", { { PASSAGE }, { PASSAGE, times = 4 },
                                           { "GET /v1/agents/*/archival-memory", with = "kind=commit-500,times=2,route=" .. PASSAGE } }),
  {
    id = "offboard",
    setup = function(c)
      c.agent = agent_of(c.emu)
      lib.cli_ok(c, "onboard", "alice")
      lib.cli_ok(c, "onboard", "bob")
      local rec = lib.with_store(c, function(s) return s:user("alice") end)
      lib.leave_attached(c, c.emu:client(), "alice", c.agent, rec.block_id)
    end,
    run = function(c) return lib.cli(c, "offboard", "alice") end,
    check = function(c) return lib.check_users(c, { "bob" }) end,
    routes = { { "DELETE /v1/blocks/*" }, { "DELETE /v1/identities/*" }, { DETACH } },
  },
  {
    id = "doctor",
    -- problems to heal: alice's persona left attached by a killed chat, carol's onboarding
    -- interrupted before her block was created, a lease held by a process that is gone
    setup = function(c)
      c.agent = agent_of(c.emu)
      lib.cli_ok(c, "onboard", "alice")
      lib.cli_ok(c, "onboard", "bob")
      local rec = lib.with_store(c, function(s) return s:user("alice") end)
      lib.leave_attached(c, c.emu:client(), "alice", c.agent, rec.block_id)
      c.emu:faults("kind=503,times=1,route=POST /v1/blocks/")
      local r = lib.cli(c, "onboard", "carol")
      c.emu:clear_faults()
      if r.code ~= 1 then error("setup: carol's onboarding was to be interrupted: " .. r.stderr, 0) end
      lib.with_store(c, function(s)
        s:update(function(txn) records.put_lease(txn, c.agent, "x", 600, lib.dead_pid()) end)
      end)
    end,
    run = function(c) return lib.cli(c, "doctor", "--fix") end,
    check = function(c, r)
      local bad = lib.check_users(c, { "alice", "bob", "carol" })
      if bad then return bad end
      if not (r.stdout or ""):match("doctor: healthy") then return "doctor did not say healthy: " .. tostring(r.stdout) end
      return nil
    end,
    routes = { { DETACH }, { "POST /v1/blocks/" }, { "GET /v1/health/" }, { "GET /v1/identities/" },
               { "GET /v1/identities/*" }, { "PATCH /v1/blocks/*/identities/attach/*" } },
    report_exit = 2, -- problems remain: exit 2, the report on stdout
  },
}

-- ---------------------------------------------------------------------------------------------
-- One case

local emu = lib.emulator.start{ "--seed", "8" }

-- Waits until every `slow` request has been answered (so applied): no straggler lands later.
local function settle(kind)
  if kind == "slow" then lib.sleep(lib.SLOW_MS / 1000 + 0.3) end
end

-- (b): a clear failure. For scripts whose report is their output (import, doctor), exit 2 with
-- no traceback anywhere; else one line on stderr.
local function clear_failure(w, r)
  local all = (r.stdout or "") .. (r.stderr or "")
  if all:find("traceback", 1, true) then return "traceback in the output" end
  if w.report_exit and r.code == w.report_exit then
    for line in (r.stderr or ""):gmatch("[^\n]+") do
      if not line:match("^" .. w.id .. ": ") then return "unexpected stderr line: " .. line end
    end
    return nil
  end
  if r.code ~= 1 then return "exit status " .. tostring(r.code) end
  return lib.one_line_error(w.id:gsub("%-stream$", ""), r)
end

-- run_case(w, f, route) -> "ok" | "rerun", nil | "fail", reason
local function run_case(w, f, route)
  emu:reset()
  emu:config{ latency_ms = 0 }
  local c = lib.new_case(emu)
  local ok, outcome, reason = pcall(function()
    w.setup(c)
    local _, last = emu:requests()
    c.seq0 = last or 0
    if route.with then emu:faults(route.with) end
    emu:faults(string.format("kind=%s,times=%d,route=%s%s", f.kind, route.times or 1, route[1], f.extra or ""))
    c.fault = f.kind
    local r = w.run(c)
    local left = emu:faults()
    local fired = true
    for _, rule in ipairs(left) do
      if rule.kind == f.kind and rule.hits == 0 then fired = false end
    end
    emu:clear_faults()
    settle(f.kind)
    if not fired then return "fail", "the fault never fired (route not used?)" end
    if r.code == 0 then
      local bad = w.check(c, r)
      if bad then return "fail", "exit 0 but " .. bad end
      return "ok"
    end
    local unclear = clear_failure(w, r)
    if unclear then return "fail", "exit " .. r.code .. ", unclear error: " .. unclear end
    c.first_error = (r.stderr or ""):match("[^\n]*")
    local r2 = w.run(c)
    settle(f.kind)
    if r2.code ~= 0 then
      return "fail", "the rerun exited " .. r2.code .. ": " .. (r2.stderr or ""):gsub("\n", " | ")
    end
    local bad = w.check(c, r2)
    if bad then return "fail", "after the rerun: " .. bad end
    return "rerun", c.first_error
  end)
  local store_bad = lib.check_store(c.store)
  lib.end_case(c)
  if not ok then return "fail", "harness: " .. tostring(outcome) end
  if store_bad and outcome ~= "fail" then return "fail", store_bad end
  return outcome, reason
end

-- ---------------------------------------------------------------------------------------------
-- The matrix

local started = lib.now()
local passed, failed = 0, 0
local cells = {} -- cells[w.id][f.id] = "ok" | "ok after rerun" | "FAIL" | "n/a"
local by_route = {} -- by_route[i] = {label=, [f.id] = "ok" | "rerun" | "FAIL"} (the per-route table)
local failures = {}
local cases = 0
lib.say("fault matrix (%s): client timeout %gs, slow answers held %d ms, emulator %s", FULL and "full" or "fast",
        lib.CLIENT_TIMEOUT, lib.SLOW_MS, emu.url)

-- The fast run: each workflow's main route, under a subset of the faults that covers every kind
-- of outcome (refused, throttled, timed out, reset, applied-then-failed, undecodable).
local FAST = { ["500"] = true, ["429"] = true, slow = true, reset = true, ["bad-json"] = true,
               ["commit-500"] = true, ["commit-reset"] = true, ["stream-error"] = true }

local ok_run, err_run = pcall(function()
  for _, w in ipairs(WORKFLOWS) do
    if not ONLY or ONLY == w.id then
      cells[w.id] = {}
      for _, f in ipairs(FAULTS) do
        if f.only and not f.only[w.id] then
          cells[w.id][f.id] = "n/a"
        elseif not FULL and not FAST[f.id] then
          cells[w.id][f.id] = "-"
        else
          local cell = "ok"
          for ri, route in ipairs(w.routes) do
            if (FULL and not f.first_route) or ri == 1 or (not FULL and route.fast and route.fast[f.id]) then
              cases = cases + 1
              local t0 = lib.now()
              local outcome, reason = run_case(w, f, route)
              local label = route[1] .. (route.times and (" x" .. route.times) or "") .. (route.with and " (+create fault)" or "")
              local key = w.id .. " " .. label
              local rrow = by_route[key]
              if not rrow then
                rrow = { label = key }
                by_route[#by_route + 1] = rrow
                by_route[key] = rrow
              end
              rrow[f.id] = outcome == "fail" and "FAIL" or outcome
              if outcome == "fail" then
                failed = failed + 1
                cell = "FAIL"
                failures[#failures + 1] = string.format("%s x %s on %s: %s", w.id, f.id, label, reason)
              else
                passed = passed + 1
                if outcome == "rerun" and cell == "ok" then cell = "ok after rerun" end
              end
              if VERBOSE or outcome == "fail" then
                lib.say("  %-11s %-12s %-52s %-6s %.1fs %s", w.id, f.id, label, outcome, lib.now() - t0,
                        outcome ~= "ok" and (reason or "") or "")
              end
            end
          end
          cells[w.id][f.id] = cell
        end
      end
    end
  end
end)
emu:stop()
if not ok_run then
  io.stderr:write("fault_matrix: ", tostring(err_run), "\n")
  failed = failed + 1
end

-- The table
local cols = {}
for _, f in ipairs(FAULTS) do cols[#cols + 1] = f.id end
local widths = {}
for i, col in ipairs(cols) do
  widths[i] = #col
  for _, w in ipairs(WORKFLOWS) do
    local v = cells[w.id] and cells[w.id][col] or ""
    widths[i] = math.max(widths[i], #v)
  end
end
local function row(first, values)
  local t = { string.format("%-12s", first) }
  for i, v in ipairs(values) do t[#t + 1] = string.format("%-" .. widths[i] .. "s", v) end
  return "| " .. table.concat(t, " | ") .. " |"
end
lib.say("")
lib.say(row("workflow", cols))
local sep = { string.rep("-", 12) }
for i in ipairs(cols) do sep[#sep + 1] = string.rep("-", widths[i]) end
lib.say("|-" .. table.concat(sep, "-|-") .. "-|")
for _, w in ipairs(WORKFLOWS) do
  if cells[w.id] then
    local vals = {}
    for _, col in ipairs(cols) do vals[#vals + 1] = cells[w.id][col] or "" end
    lib.say(row(w.id, vals))
  end
end
if FULL then -- each case: the route the fault was put on
  lib.say("")
  local lw = 12
  for _, r in ipairs(by_route) do lw = math.max(lw, #r.label) end
  local head = { string.format("%-" .. lw .. "s", "workflow route") }
  for _, f in ipairs(FAULTS) do head[#head + 1] = string.format("%-" .. math.max(#f.id, 5) .. "s", f.id) end
  lib.say("| %s |", table.concat(head, " | "))
  local sepr = { string.rep("-", lw) }
  for _, f in ipairs(FAULTS) do sepr[#sepr + 1] = string.rep("-", math.max(#f.id, 5)) end
  lib.say("|-%s-|", table.concat(sepr, "-|-"))
  for _, r in ipairs(by_route) do
    local t = { string.format("%-" .. lw .. "s", r.label) }
    for _, f in ipairs(FAULTS) do t[#t + 1] = string.format("%-" .. math.max(#f.id, 5) .. "s", r[f.id] or "") end
    lib.say("| %s |", table.concat(t, " | "))
  end
end
lib.say("")
for _, f in ipairs(failures) do lib.say("FAIL %s", f) end
lib.say("fault matrix: %d cases in %.1f s", cases, lib.now() - started)
lib.say("%d passed, %d failed", passed, failed)
os.exit(failed == 0 and 0 or 1)
