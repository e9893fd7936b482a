-- Crash points: kill -9 at random moments (a seeded RNG, fixed seeds) during onboard (several
-- users in one process), chat and import; after each kill the store must open and read whole
-- (and pass mdb_stat/mdb_dump when lmdb-utils is installed); then the recovery runs (a rerun of
-- the same command; doctor --fix for chat, then another user's chat) and the server state and the
-- store must be exactly right.
--
--   bin/lettash tests/reliability/crash_points.lua [--full] [--seeds=N] [--only=WORKFLOW] [--verbose]
--
-- The emulator answers every API request --latency-ms late (it applies the request, then waits),
-- so most kills land with a request in flight. The moment of each kill: a uniform draw in
-- [0, the workflow's measured duration] (so some land before the first request and a few after
-- the end, when a run is quicker than measured), from math.randomseed(seed). For each kill the number of server writes that had
-- landed is recorded: the spread over the workflow's steps is printed at the end.
-- Fast: 6 seeds per workflow; --full: 30. The last line is "N passed, N failed" (one per kill).
local lib = dofile((os.getenv("PWD") or ".") .. "/tests/reliability/lib.lua")
local json = lib.json

local opts = lib.parse_args(arg)
local FULL = opts.full and true or false
local SEEDS = tonumber(opts.seeds) or (FULL and 30 or 6)
local VERBOSE = opts.verbose and true or false
local LATENCY = 40 -- ms
local CHILD = lib.support.root .. "/tests/spec/helpers/users_child.lua"
local ONBOARD_USERS = { "u1", "u2", "u3", "u4" }
local IMPORT_ITEMS = 300

local emu = lib.emulator.start{ "--latency-ms", tostring(LATENCY), "--seed", "8" }

local function agent_of()
  return lib.emulator.new_agent(emu:client(), { name = "bot", memory_blocks = { { label = "human", value = "?" },
                                                                      { label = "persona", value = "p" } } }).id
end

local function writes_since(seq0)
  local n = 0
  for _, q in ipairs(emu:requests()) do
    if q.seq > seq0 and q.method ~= "GET" then n = n + 1 end
  end
  return n
end

local function must(r, what)
  if r.code ~= 0 then error(what .. " exited " .. tostring(r.code) .. ": " .. tostring(r.stderr):gsub("\n", " | "), 0) end
  return r
end

-- ---------------------------------------------------------------------------------------------
-- Workflows: setup(c), argv(c) of the run to kill, recover(c), check(c) -> nil | reason.

-- The import killed mid-run (in batches of `batch`, or one passage per request); recovered by a
-- rerun (with the default batch), then a third run sends nothing.
local function import_workflow(id, how, batch)
  return {
    id = id,
    what = "scripts/import.lua, " .. IMPORT_ITEMS .. " passages, " .. how,
    recovery = "rerun, then a third run sends nothing",
    setup = function(c)
      c.agent = agent_of()
      c.file, c.texts = lib.jsonl(c.dir .. "/items.jsonl", IMPORT_ITEMS)
    end,
    argv = function(c) return { lib.support.root .. "/scripts/import.lua", c.agent, c.file, "--batch", batch } end,
    recover = function(c)
      must(lib.cli(c, "import", c.agent, c.file), "the import rerun")
    end,
    check = function(c)
      local bad = lib.check_import(c, c.agent, c.texts)
      if bad then return bad end
      local r = must(lib.cli(c, "import", c.agent, c.file, "--json"), "the third run")
      local s = json.decode(r.stdout)
      if s.sent ~= 0 or s.skipped ~= IMPORT_ITEMS then return string.format("the third run sent %d, skipped %d", s.sent, s.skipped) end
      return lib.check_import(c, c.agent, c.texts)
    end,
  }
end

local WORKFLOWS = {
  {
    id = "onboard",
    what = "onboard u1..u4 in one process",
    recovery = "rerun: scripts/onboard.lua per user",
    setup = function(c) lib.cli_ok(c, "onboard", "bob") end,
    argv = function(c)
      local a = { CHILD, emu.url, c.store, "onboard" }
      for _, u in ipairs(ONBOARD_USERS) do a[#a + 1] = u end
      return a
    end,
    recover = function(c)
      for _, u in ipairs(ONBOARD_USERS) do must(lib.cli(c, "onboard", u), "onboard " .. u) end
    end,
    check = function(c)
      local names = { "bob" }
      for _, u in ipairs(ONBOARD_USERS) do names[#names + 1] = u end
      local bad = lib.check_users(c, names)
      if bad then return bad end
      -- a second rerun changes nothing
      for _, u in ipairs(ONBOARD_USERS) do
        local r = must(lib.cli(c, "onboard", u), "onboard " .. u)
        if not r.stdout:match("already onboarded, nothing changed") then return "a second rerun changed something: " .. r.stdout end
      end
      return lib.check_users(c, names)
    end,
  },
  {
    id = "chat",
    what = "scripts/chat.lua alice AGENT hello there",
    recovery = "doctor --fix, then bob chats",
    setup = function(c)
      c.agent = agent_of()
      lib.cli_ok(c, "onboard", "alice")
      lib.cli_ok(c, "onboard", "bob")
    end,
    argv = function(c) return { lib.support.root .. "/scripts/chat.lua", "alice", c.agent, "hello there" } end,
    recover = function(c)
      local d = lib.cli(c, "doctor", "--fix")
      if d.code ~= 0 then error("doctor --fix exited " .. d.code .. ": " .. d.stdout:gsub("\n", " | "), 0) end
      c.bob = must(lib.cli(c, "chat", "bob", c.agent, "hi"), "bob's chat")
    end,
    check = function(c)
      local state = emu:state()
      local bad = lib.check_users(c, { "alice", "bob" }, state)
      if bad then return bad end
      if not c.bob.stdout:match("^%[blocks: human,persona,Persona_bob%] %[sender: identity%-[%x%-]+%] you said: hi\n$") then
        return "bob's chat saw another persona: " .. c.bob.stdout
      end
      local sent = lib.user_messages(state, c.agent, "hello there")
      if sent > 1 then return sent .. " copies of alice's message on the server" end
      local h = lib.persona(state, "alice").conversation_history
      if #h > sent then return "alice's history holds " .. #h .. " exchanges for " .. sent .. " messages" end
      if #h == 1 and h[1].user ~= "hello there" then return "alice's history holds the wrong exchange" end
      if #lib.persona(state, "bob").conversation_history ~= 1 then return "bob's history does not hold his exchange" end
      local d = lib.cli(c, "doctor")
      if d.code ~= 0 then return "doctor after the recovery is not healthy: " .. d.stdout:gsub("\n", " | ") end
      return nil
    end,
  },
  import_workflow("import", "batches of 20, 4 in flight", "20"),
  import_workflow("import-passage", "one per request (--batch 1), 16 in flight", "1"),
}

-- ---------------------------------------------------------------------------------------------

-- How long an uninterrupted run takes (from spawn to exit), once per workflow.
local function calibrate(w)
  emu:reset()
  local c = lib.new_case(emu)
  w.setup(c)
  local t = {}
  for i = 1, 2 do
    if i == 2 then -- a second time on a fresh state
      emu:reset()
      lib.end_case(c)
      c = lib.new_case(emu)
      w.setup(c)
    end
    local p = lib.spawn(c, w.argv(c))
    local code, _, err = p:wait(120)
    if code ~= 0 then error("calibration of " .. w.id .. " failed: " .. tostring(err), 0) end
    t[#t + 1] = p.seconds
  end
  lib.end_case(c)
  return math.max(t[1], t[2])
end

-- One crash point -> "ok", detail | "fail", reason
local function crash_point(w, seed, duration)
  emu:reset()
  local c = lib.new_case(emu)
  local ok, outcome, detail = pcall(function()
    w.setup(c)
    local _, seq0 = emu:requests()
    math.randomseed(seed)
    local delay = math.random() * duration
    local p = lib.spawn(c, w.argv(c))
    while lib.now() - p.started < delay and not p:done() do lib.sleep(0.001) end
    local code = p:kill9()
    lib.sleep(LATENCY / 1000 + 0.05) -- the killed request's answer is held that long; then it is logged
    local landed = writes_since(seq0 or 0)
    local bad = lib.check_store(c.store)
    if bad then return "fail", "after the kill: " .. bad end
    w.recover(c)
    bad = lib.check_store(c.store)
    if bad then return "fail", "after the recovery: " .. bad end
    bad = w.check(c)
    if bad then return "fail", bad end
    return "ok", { delay = delay, killed = code == 137, writes = landed }
  end)
  lib.end_case(c)
  lib.kill_all()
  if not ok then return "fail", "harness or recovery: " .. tostring(outcome) end
  return outcome, detail
end

local started = lib.now()
local passed, failed = 0, 0
local lines = {}
lib.say("crash points (%s): %d seeds per workflow, emulator latency %d ms, mdb_stat/mdb_dump %s", FULL and "full" or "fast",
        SEEDS, LATENCY, lib.have_mdb_utils and "used" or "not installed")
local ok_run, err_run = pcall(function()
  for _, w in ipairs(WORKFLOWS) do
    if not opts.only or opts.only == w.id then
      local duration = calibrate(w)
      local killed, before_end, spread, fails = 0, 0, {}, 0
      local t0 = lib.now()
      for seed = 1, SEEDS do
        local outcome, d = crash_point(w, seed, duration)
        if outcome == "ok" then
          passed = passed + 1
          if d.killed then killed = killed + 1 else before_end = before_end + 1 end
          spread[d.writes] = (spread[d.writes] or 0) + 1
          if VERBOSE then lib.say("  %-8s seed %2d: kill at %4.0f ms, %s, %d writes had landed: ok", w.id, seed, d.delay * 1000,
                                  d.killed and "killed" or "had finished", d.writes) end
        else
          failed = failed + 1
          fails = fails + 1
          lib.say("FAIL %s seed %d: %s", w.id, seed, tostring(d))
        end
      end
      local keys = {}
      for k in pairs(spread) do keys[#keys + 1] = k end
      table.sort(keys)
      local sp = {}
      for _, k in ipairs(keys) do sp[#sp + 1] = k .. ":" .. spread[k] end
      lines[#lines + 1] = { w.id, w.what, string.format("%.2f s", duration), "1-" .. SEEDS, killed, before_end, fails,
                            table.concat(sp, " "), w.recovery, string.format("%.1f s", lib.now() - t0) }
    end
  end
end)
lib.kill_all()
emu:stop()
if not ok_run then
  io.stderr:write("crash_points: ", tostring(err_run), "\n")
  failed = failed + 1
end
lib.say("")
lib.print_table({ "workflow", "run killed", "run time", "seeds", "killed", "finished first", "failed",
                  "server writes landed before the kill (writes:kills)", "recovery", "time" }, lines)
lib.say("")
lib.say("crash points: %d kills in %.1f s", passed + failed, lib.now() - started)
lib.say("%d passed, %d failed", passed, failed)
os.exit(failed == 0 and 0 or 1)
