-- The event loop under the client: many requests at once from one Lua thread. A request awaited
-- inside a task (a coroutine started by letta.spawn) yields until its transfer has news, so other
-- tasks run meanwhile; the same call outside a task drives the loop itself until it is done.
-- Hosts with a frame tick call step(0) once per frame (see the embedding API).
local http = require "letta.http"

local coroutine, setmetatable, table, select, error, math = coroutine, setmetatable, table, select, error, math
local unpack = table.unpack

local _M = {}

local AWAIT = {} -- what a task yields while it waits

local tasks = setmetatable({}, { __mode = "k" }) -- coroutine -> task
local ready = {} -- tasks to resume on the next step (after a plain yield or a join)
local sleepers = {} -- {task, wake}: tasks sleeping until a time
local live = 0 -- tasks not finished

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

resume = function(task, ...)
  return after(task, coroutine.resume(task.co, ...))
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

-- One turn of the loop: runs ready tasks, advances every transfer (waiting at most timeout_ms
-- when nothing is ready), resumes the tasks whose requests have news. Returns the number of
-- unfinished tasks.
function _M.step(timeout_ms)
  timeout_ms = timeout_ms or 0
  if #ready > 0 then
    local batch = ready
    ready = {}
    for _, task in ipairs(batch) do
      if not task.done then resume(task) end
    end
    timeout_ms = 0
  end
  local now = http.now()
  if #sleepers > 0 then
    local next_wake = math.huge
    for _, s in ipairs(sleepers) do next_wake = math.min(next_wake, s.wake) end
    timeout_ms = math.max(0, math.min(timeout_ms, math.ceil((next_wake - now) * 1000)))
  end
  for _, task in ipairs(http.step(timeout_ms)) do -- tasks whose requests have news
    if not task.done then resume(task) end
  end
  if #sleepers > 0 then
    now = http.now()
    local still = {}
    for _, s in ipairs(sleepers) do
      if s.wake <= now then resume(s.task) else still[#still + 1] = s end
    end
    sleepers = still
  end
  return live
end

-- Blocks (driving the loop) until cond() is true.
local function drive_until(cond)
  while not cond() do _M.step(100) end
end

-- await(req): waits until the request is done or, for a stream, has events.
function _M.await(req)
  local task = current_task()
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
  local task = current_task()
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
    local task = current_task()
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
  for i, t in ipairs(list) do ts[i] = type(t) == "function" and _M.spawn(t) or t end
  for _, t in ipairs(ts) do
    if not t.done then
      local task = current_task()
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
  while _M.step(100) > 0 do end
end

_M.Task = Task
_M.now = http.now

return _M
