-- Child bin/lettash processes running a workflow (users_child.lua), started in the background so
-- that a spec can watch the emulator, kill -9 one at an exact step, or run several at once.
--
--   local procs = require "users_procs"
--   local p = procs.start(emu.url, store_path, "onboard", "alice")
--   procs.wait_until(function() return ... end, 5, "what we wait for")
--   p:kill9()                  -- or: local code, stdout, stderr = p:wait()
--
-- Every process started is remembered; procs.kill_all() (in an after_each) kills the ones still
-- running, so no child outlives a failed spec.
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local http = require "letta.http"

local _M = {}

local CHILD = support.root .. "/tests/spec/helpers/users_child.lua"

local Proc = {}
Proc.__index = Proc

local started = {}

-- start(base_url, store_path, op, args...) -> process. Its pid is the bin/lettash process itself
-- (sh execs it), so kill -9 hits the workflow and nothing else.
function _M.start(url, store_path, ...)
  local dir = support.tmpdir()
  local args = { support.quote(support.bin), support.quote(CHILD), support.quote(url), support.quote(store_path) }
  for _, a in ipairs({ ... }) do args[#args + 1] = support.quote(tostring(a)) end
  local inner = "echo $$ >" .. dir .. "/pid; exec " .. table.concat(args, " ")
  local cmd = string.format("(sh -c %s >%s/out 2>%s/err </dev/null; echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc) "
                              .. "</dev/null >/dev/null 2>&1 &",
                            support.quote(inner), dir, dir, dir, dir, dir)
  assert(os.execute(cmd))
  local self = setmetatable({ dir = dir }, Proc)
  local deadline = http.now() + 5
  while true do
    self.pid = tonumber(support.read_file(dir .. "/pid") or "")
    if self.pid then break end
    assert(http.now() < deadline, "users_procs: the child did not start")
    letta.sleep(0.002)
  end
  started[#started + 1] = self
  return self
end

function Proc:alive() return emulator.alive(self.pid) end

-- wait([timeout]) -> exit code, stdout, stderr (raises when it runs longer than timeout s).
function Proc:wait(timeout)
  local deadline = http.now() + (timeout or 30)
  while not support.read_file(self.dir .. "/rc") do
    if http.now() > deadline then
      self:kill9()
      error("users_procs: the child ran longer than " .. (timeout or 30) .. " s\n" .. (self:stderr() or ""), 2)
    end
    letta.sleep(0.005)
  end
  self.code = tonumber(support.read_file(self.dir .. "/rc"))
  self.stdout, self.stderr_text = support.read_file(self.dir .. "/out"), support.read_file(self.dir .. "/err")
  support.rmdir(self.dir)
  return self.code, self.stdout, self.stderr_text
end

function Proc:stderr() return self.stderr_text or support.read_file(self.dir .. "/err") end

-- The decoded JSON lines the child printed (after wait).
function Proc:results()
  local t = {}
  for line in (self.stdout or ""):gmatch("[^\n]+") do t[#t + 1] = letta.json.decode(line) end
  return t
end

-- kill9(): SIGKILL, then wait until it is gone. Returns the exit code (137).
function Proc:kill9()
  if self.code then return self.code end
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  return (self:wait(5))
end

function _M.kill_all()
  for _, p in ipairs(started) do
    if not p.code and p.pid and emulator.alive(p.pid) then pcall(p.kill9, p) end
    if p.dir then support.rmdir(p.dir) end
  end
  started = {}
end

-- wait_until(cond, timeout, what): polls cond() every 5 ms; raises after timeout seconds.
function _M.wait_until(cond, timeout, what)
  local deadline = http.now() + (timeout or 5)
  while true do
    local v = cond()
    if v then return v end
    if http.now() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    letta.sleep(0.005)
  end
end

return _M
