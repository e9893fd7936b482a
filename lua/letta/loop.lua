-- The event loop under the client: many requests at once from one Lua thread. A request awaited
-- inside a task (a coroutine started by letta.spawn) yields until its transfer has news, so other
-- tasks run meanwhile; the same call outside a task drives the loop itself until it is done.
-- Hosts with a frame tick call step(0) once per frame (see the embedding API).
-- As luv's luv_run, the loop refuses reentry: run, step or a wait that would drive the loop,
-- called while a task is running (from its body, or code it calls), raises "loop already
-- running" instead of hanging (the task that called it could never be resumed).
local http = require "letta.http"

local coroutine, setmetatable, table, select, error, math = coroutine, setmetatable, table, select, error, math
local string, tostring = string, tostring
local unpack = table.unpack

local _M = {}

local AWAIT = {} -- what a task yields while it waits

local tasks = setmetatable({}, { __mode = "k" }) -- coroutine -> task
local ready = {} -- tasks to resume on the next step (after a plain yield or a join)
local sleepers = {} -- {task, wake}: tasks sleeping until a time
local live = 0 -- tasks not finished
local running = 0 -- task resumes on the stack: > 0 while the loop runs a task
local barrier = nil -- while code that must not wait runs (see unyielding): the message to raise
local blocking = nil -- set by refuse_blocking: waits outside a task raise it

local Task = { __name = "letta.Task" }
Task.__index = Task

function Task:__tostring()
  return string.format("letta.Task (%s)", self.done and (self.ok and "done" or "failed") or "running")
end

local function current_task()
  local co, is_main = coroutine.running()
  if is_main then return nil end
  return tasks[co]
end

-- Every wait starts here: returns the task the wait suspends, or nil when the caller is outside
-- every task and drives the loop itself. Raises when the caller may not wait at all: inside code
-- that must not wait (barrier: a store transaction; checked first, before a wait leaves any trace
-- such as a sleeper or a queued waiter), or, outside a task, when blocking is refused (the
-- sandbox) or the loop is already running (reentry). level 3: the waiting function's caller.
local function waiter()
  if barrier then error(barrier, 3) end
  local task = current_task()
  if task then return task end
  if blocking then error(blocking, 3) end
  if running > 0 then error("loop already running", 3) end
  return nil
end

local resume

local function finish(task, ok, ...)
  task.done, task.ok = true, ok
  if ok then task.results = table.pack(...) else task.error = ... end
  live = live - 1
  tasks[task.co] = nil
  for _, joiner in ipairs(task.joiners) do ready[#ready + 1] = joiner end
  task.joiners = nil
end

-- (no closure per resume: this runs twice per request in flight)
local function after(task, ok, ...)
  if coroutine.status(task.co) == "dead" then return finish(task, ok, ...) end
  if (...) ~= AWAIT then ready[#ready + 1] = task end -- a plain yield: run again next step
end

-- (coroutine.resume never raises: running always comes back down)
local function resumed(task, ...)
  running = running - 1
  return after(task, ...)
end

resume = function(task, ...)
  running = running + 1
  return resumed(task, coroutine.resume(task.co, ...))
end

-- spawn(fn, ...) -> task: runs fn(...) as a task, at once, until it first waits.
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2) end
  local task = setmetatable({ co = coroutine.create(fn), done = false, joiners = {} }, Task)
  tasks[task.co] = task
  live = live + 1
  resume(task, ...)
  return task
end

-- Milliseconds until the first sleeper wakes (0 if one is due).
local function until_wake()
  local next_wake = math.huge
  for _, s in ipairs(sleepers) do next_wake = math.min(next_wake, s.wake) end
  return math.max(0, math.ceil((next_wake - http.now()) * 1000))
end

-- One turn of the loop: runs ready tasks, advances every transfer (waiting at most timeout_ms
-- when nothing is ready), resumes the tasks whose requests have news. Returns the number of
-- unfinished tasks.
function _M.step(timeout_ms)
  if running > 0 then error("loop already running", 2) end
  timeout_ms = timeout_ms or 0
  if #ready > 0 then
    local batch = ready
    ready = {}
    for _, task in ipairs(batch) do
      if not task.done then resume(task) end
    end
    timeout_ms = 0
  end
  if #sleepers > 0 then timeout_ms = math.min(timeout_ms, until_wake()) end
  for _, task in ipairs(http.step(timeout_ms)) do -- tasks whose requests have news
    if not task.done then resume(task) end
  end
  if #sleepers > 0 then
    local now = http.now()
    local still = {}
    for _, s in ipairs(sleepers) do
      if s.wake <= now then resume(s.task) else still[#still + 1] = s end
    end
    sleepers = still
  end
  -- A host driven by lh_loop_hooks steps only when a socket or its timer says so: tell it when
  -- the tasks only this loop knows of (joined, sleeping) need the next turn.
  if #ready > 0 then http.wake(0) elseif #sleepers > 0 then http.wake(until_wake()) end
  return live
end

-- Blocks (driving the loop) until cond() is true.
local function drive_until(cond)
  while not cond() do _M.step(100) end
end

-- await(req): waits until the request is done or, for a stream, has events.
function _M.await(req)
  local task = waiter()
  if task then
    req:notify(task) -- http.step() hands the task back when the request has news
    coroutine.yield(AWAIT)
  else
    -- Blocks in C in slices of 100 ms, so that Ctrl-C (a Lua hook) can interrupt between them.
    while not req:wait(100) do end
  end
end

-- sleep(seconds): inside a task, lets the others run; outside, drives the loop meanwhile.
function _M.sleep(seconds)
  local wake = http.now() + (seconds or 0)
  local task = waiter()
  if task then
    sleepers[#sleepers + 1] = { task = task, wake = wake }
    coroutine.yield(AWAIT)
  else
    while http.now() < wake do
      _M.step(math.max(1, math.ceil((wake - http.now()) * 1000)))
    end
  end
end

-- task:wait() -> the task's results; raises the task's error.
function Task:wait()
  if not self.done then
    local task = waiter()
    if task then
      self.joiners[#self.joiners + 1] = task
      coroutine.yield(AWAIT)
    else
      drive_until(function() return self.done end)
    end
  end
  if not self.ok then error(self.error, 0) end
  return unpack(self.results, 1, self.results.n)
end

-- gather(t1, t2, ...) or gather{t1, f2, ...} -> results: waits for every task (functions are
-- spawned first) and returns the first result of each, in order. Raises the first error, after all
-- have finished.
function _M.gather(...)
  local list = select("#", ...) == 1 and type((...)) == "table" and getmetatable((...)) ~= Task and (...) or { ... }
  local ts = {}
  for i, t in ipairs(list) do
    if type(t) ~= "function" and getmetatable(t) ~= Task then -- (else: a wait nothing can end)
      error(string.format("bad argument to 'gather' (task or function expected, got %s)", type(t)), 2)
    end
    ts[i] = type(t) == "function" and _M.spawn(t) or t
  end
  for _, t in ipairs(ts) do
    if not t.done then
      local task = waiter()
      if task then
        t.joiners[#t.joiners + 1] = task
        repeat coroutine.yield(AWAIT) until t.done
      else
        drive_until(function() return t.done end)
      end
    end
  end
  local results = {}
  for i, t in ipairs(ts) do
    if not t.ok then error(t.error, 0) end
    results[i] = t.results[1]
  end
  return results
end

-- run(): drives the loop until every task has finished.
function _M.run()
  if running > 0 then error("loop already running", 2) end
  while _M.step(100) > 0 do end
end

-- unyielding(message, fn, ...) -> fn(...)'s results, where every wait (a request awaited, sleep,
-- task:wait, gather, a semaphore) raises message before it leaves any trace. The store runs its
-- transactions so: nothing may hold LMDB's write lock across the network. (A plain
-- coroutine.yield is not a wait of this loop: the store stops it by calling fn from C, txn:call.)
local function settle(saved, ok, ...)
  barrier = saved
  if not ok then error((...), 0) end
  return ...
end

function _M.unyielding(message, fn, ...)
  local saved = barrier
  barrier = message
  return settle(saved, pcall(fn, ...))
end

-- ---------------------------------------------------------------------------------------------
-- A counting semaphore: at most `limit` holders at once. Tasks wait in a queue, without polling,
-- and are served first come, first served; release and resize hand free slots to them.

local Semaphore = { __name = "letta.Semaphore" }
Semaphore.__index = Semaphore

local function check_limit(n, fname)
  if math.type(n) ~= "integer" or n < 0 then
    error("bad argument #1 to '" .. fname .. "' (non-negative integer expected, got " .. tostring(n) .. ")", 3)
  end
  return n
end

-- semaphore(n) -> sem: sem.limit = n, sem.used = slots held.
function _M.semaphore(n)
  return setmetatable({ limit = check_limit(n, "semaphore"), used = 0, queue = {}, head = 1, tail = 0 }, Semaphore)
end

function Semaphore:__tostring()
  return string.format("letta.Semaphore (%d/%d)", self.used, self.limit)
end

-- Gives free slots to the waiting tasks, in order; each is resumed on the next step.
local function hand_out(sem)
  while sem.used < sem.limit and sem.head <= sem.tail do
    local waiter = sem.queue[sem.head]
    sem.queue[sem.head], sem.head = nil, sem.head + 1
    sem.used, waiter.granted = sem.used + 1, true
    ready[#ready + 1] = waiter.task
  end
end

-- sem:acquire(): takes a slot. Inside a task waits in the queue for one; outside a task drives
-- the loop until one is free.
function Semaphore:acquire()
  if self.used < self.limit and self.head > self.tail then
    self.used = self.used + 1
    return
  end
  local task = waiter()
  if task then
    local waiter = { task = task, granted = false }
    self.tail = self.tail + 1
    self.queue[self.tail] = waiter
    repeat coroutine.yield(AWAIT) until waiter.granted -- (news of a request it still holds: wait on)
  else
    drive_until(function() return self.used < self.limit and self.head > self.tail end)
    self.used = self.used + 1
  end
end

-- sem:release(): gives a slot back (to the first waiting task, if any).
function Semaphore:release()
  if self.used <= 0 then error("letta.Semaphore: release without acquire", 2) end
  self.used = self.used - 1
  hand_out(self)
end

-- sem:resize(n): a new limit. Waiting tasks get the room it makes; holders above a smaller limit
-- keep their slots until they release them.
function Semaphore:resize(n)
  self.limit = check_limit(n, "resize")
  hand_out(self)
end

_M.Task = Task
_M.now = http.now

-- refuse_blocking(message): from now on a wait outside a task (a request, sleep, task:wait,
-- gather, a semaphore) raises message instead of blocking. The sandbox sets it: a host call
-- (lh_run_*, lh_call) must not be held for as long as a script likes, which the instruction
-- budget cannot see (waiting spends no instructions). Inside tasks, waits yield as always.
function _M.refuse_blocking(message)
  blocking = message
  http.refuse_blocking(message) -- and request:wait, which a script can reach through its client
end

return _M
