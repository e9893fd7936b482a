-- The event loop (letta.loop): it refuses reentry as luv's luv_run does, and its counting
-- semaphore. Each case runs in a child lettash under `timeout 10`, so that a loop that hangs (what
-- letta.run() inside a task did before) fails the spec instead of hanging it.
local support = require "support"

-- Runs code in a child lettash; returns what it printed (stdout) and the result.
local function child(code)
  local r = support.sh("timeout -k 2 10 " .. support.quote(support.bin) .. " -", { stdin = code })
  assert(r.code ~= 124 and r.code ~= 137, "the child hung (killed after 10 s); stderr: " .. r.stderr)
  assert.equal(0, r.code, r.stderr)
  return r.stdout
end

describe("letta.loop", function()
  describe("refuses reentry", function()
    it("letta.run() and letta.step() inside a task raise 'loop already running' instead of hanging", function()
      local out = child([[
        local letta = require "letta"
        local first = letta.spawn(function() return pcall(letta.run) end) -- before its first wait
        local later = letta.spawn(function() letta.sleep(0.01); return pcall(letta.run) end) -- resumed by step
        local step = letta.spawn(function() letta.sleep(0.01); return pcall(letta.step, 0) end)
        letta.run()
        for _, t in ipairs{ first, later, step } do print(t:wait()) end
      ]])
      assert.equal(string.rep("false\tloop already running\n", 3), out)
    end)

    it("a blocking wait from code a task runs outside it (a coroutine of its own) raises too", function()
      local out = child([[
        local letta = require "letta"
        local t = letta.spawn(function()
          local co = coroutine.wrap(function() return pcall(letta.sleep, 0.01) end)
          local ok, e = co()
          local other = letta.spawn(function() return 1 end)
          local ok2, e2 = coroutine.wrap(function() return pcall(other.wait, other) end)()
          local ok3, e3 = coroutine.wrap(function() return pcall(letta.gather, { function() letta.sleep(0.01) end }) end)()
          return ok, e:match("loop already running"), ok2, ok3, e3:match("loop already running")
        end)
        print(t:wait())
      ]])
      -- (other was done at once: waiting on a finished task never blocks)
      assert.equal("false\tloop already running\ttrue\tfalse\tloop already running\n", out)
    end)

    it("still drives the loop from the top level, also after a refusal and after an error in a step", function()
      local out = child([[
        local letta = require "letta"
        local t = letta.spawn(function() pcall(letta.run); letta.sleep(0.01); return "done" end)
        print(t:wait(), letta.run())
        letta.sleep(0.01)
        local u = letta.spawn(function() error("boom") end)
        print(pcall(u.wait, u))
        print(letta.gather{ function() letta.sleep(0.01); return 1 end, function() return 2 end }[2])
        letta.run()
        print("ok")
      ]])
      assert.matches("^done\n", out)
      assert.matches("\nfalse\t[^\n]*boom\n2\nok\n$", out)
    end)
  end)

  describe("semaphore", function()
    it("admits at most limit holders, first come first served, and hands slots on at release", function()
      local out = child([[
        local letta, loop = require "letta", require "letta.loop"
        local sem = loop.semaphore(2)
        local cur, max, order = 0, 0, {}
        for i = 1, 6 do
          letta.spawn(function()
            sem:acquire()
            cur = cur + 1; max = math.max(max, cur); order[#order + 1] = i
            letta.sleep(0.02)
            cur = cur - 1
            sem:release()
          end)
        end
        letta.run()
        print(max, table.concat(order, ","), sem.used, sem.limit)
      ]])
      assert.equal("2\t1,2,3,4,5,6\t0\t2\n", out)
    end)

    it("waits without polling, grows with resize, and drives the loop when acquired outside a task", function()
      local out = child([[
        local letta, loop = require "letta", require "letta.loop"
        local sem = loop.semaphore(1)
        sem:acquire() -- (outside a task, free: at once)
        local got, cur, max = {}, 0, 0
        for i = 1, 50 do
          letta.spawn(function()
            sem:acquire()
            got[#got + 1], cur = i, cur + 1
            max = math.max(max, cur)
            letta.sleep(0.01)
            cur = cur - 1
            sem:release()
          end)
        end
        local cpu = os.clock()
        letta.sleep(0.3) -- 50 waiters for 0.3 s: no busy wait
        print(#got, os.clock() - cpu < 0.1)
        sem:resize(5) -- room for 4 more while this holds one
        letta.step(0)
        print(#got, sem.used)
        sem:release()
        letta.run()
        print(#got, max, sem.used)
        local holder = letta.spawn(function() sem:acquire(); letta.sleep(0.05); sem:release(); return "released" end)
        sem:resize(1)
        sem:acquire() -- outside a task: drives the loop until the holder releases
        print(holder.done, sem.used)
        print(pcall(loop.semaphore, -1))
      ]])
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal("0\ttrue", lines[1])
      assert.equal("4\t5", lines[2])
      assert.equal("50\t5\t0", lines[3])
      assert.equal("true\t1", lines[4])
      assert.matches("non%-negative integer expected", lines[5])
    end)
  end)
end)
