-- letta.retry: the one retry policy (the official SDKs'): delays, what may be repeated, call().
local retry = require "letta.retry"
local errors = require "letta.errors"
local loop = require "letta.loop"

describe("letta.retry", function()
  local sleep, slept
  before_each(function()
    sleep, slept = loop.sleep, {}
    loop.sleep = function(s) slept[#slept + 1] = s end -- records instead of waiting
  end)
  after_each(function() loop.sleep = sleep end)

  it("keeps the official SDKs' policy as the default", function()
    assert.same({ max_retries = 2, base = 0.5, cap = 8, jitter = 0.25 }, retry.POLICY)
  end)

  describe("delay", function()
    it("doubles from base up to cap, less up to 25% jitter", function()
      for n, full in pairs({ [0] = 0.5, [1] = 1, [2] = 2, [3] = 4, [4] = 8, [5] = 8, [10] = 8 }) do
        for _ = 1, 50 do
          local d = retry.delay(n)
          assert.truthy(d <= full and d >= full * 0.75, n .. ": " .. d)
        end
      end
      assert.equal(0.3, retry.delay(1, nil, { base = 0.15, jitter = 0 }))
      assert.equal(1, retry.delay(9, nil, { base = 1, cap = 1, jitter = 0 }))
      assert.equal(0, retry.delay(3, nil, { base = 0 }))
    end)

    it("follows Retry-After-ms, else Retry-After, up to 60 seconds", function()
      assert.equal(0.25, retry.delay(0, { ["retry-after-ms"] = "250", ["retry-after"] = "9" }))
      assert.equal(3, retry.delay(4, { ["retry-after"] = "3" }))
      assert.equal(0, retry.delay(1, { ["retry-after"] = "0" }))
      for _, h in ipairs{ { ["retry-after"] = "61" }, { ["retry-after-ms"] = "90000" }, { ["retry-after"] = "soon" },
                          { ["retry-after"] = "-1" }, {} } do
        local d = retry.delay(0, h)
        assert.truthy(d <= 0.5 and d >= 0.375, "backoff expected, got " .. d)
      end
    end)
  end)

  describe("should", function()
    local function e(status, code) return errors.new{ status = status, code = code, message = "x" } end

    it("repeats what cannot duplicate anything: refusals, and failures of safe requests", function()
      assert.is_true(retry.should(e(429), nil, false))
      assert.is_true(retry.should(e(0, "connect"), nil, false)) -- nothing was sent
      assert.is_true(retry.should(e(0, "resolve"), nil, false))
      assert.is_false(retry.should(e(0, "reset"), nil, false))
      assert.is_true(retry.should(e(0, "reset"), nil, true))
      assert.is_true(retry.should(e(0, "timeout"), nil, true))
      assert.is_false(retry.should(e(0, "tls"), nil, true))
      for _, s in ipairs{ 408, 409, 500, 502, 503, 504 } do
        assert.is_true(retry.should(e(s), nil, true), s)
        assert.is_false(retry.should(e(s), nil, false), s)
      end
      for _, s in ipairs{ 400, 401, 403, 404, 422 } do assert.is_false(retry.should(e(s), nil, true), s) end
    end)

    it("honours x-should-retry and retry_500 = false, and never repeats an interruption", function()
      assert.is_false(retry.should(e(503), { ["x-should-retry"] = "false" }, true))
      assert.is_false(retry.should(e(429), { ["x-should-retry"] = "false" }, true))
      assert.is_true(retry.should(e(400), { ["x-should-retry"] = "true" }, true))
      assert.is_false(retry.should(e(400), { ["x-should-retry"] = "true" }, false))
      assert.is_false(retry.should(e(500), nil, true, false))
      assert.is_true(retry.should(e(502), nil, true, false))
      assert.is_false(retry.should(errors.interrupted(), nil, true))
    end)
  end)

  describe("call", function()
    local function failing(times, err)
      local calls = 0
      return function()
        calls = calls + 1
        if calls <= times then error(err, 0) end
        return "done", calls
      end
    end

    it("tries again after a retryable letta.Error, sleeping the policy's delays between tries", function()
      local a, b = retry.call(failing(2, errors.new{ status = 503 }))
      assert.equal("done", a)
      assert.equal(3, b)
      assert.equal(2, #slept)
      assert.truthy(slept[1] <= 0.5 and slept[1] >= 0.375)
      assert.truthy(slept[2] <= 1 and slept[2] >= 0.75)
    end)

    it("raises the last error when attempts run out, and at once what is not retryable", function()
      local e503 = errors.new{ status = 503 }
      local ok, err = pcall(retry.call, failing(5, e503), { attempts = 3 })
      assert.is_false(ok)
      assert.equal(e503, err)
      assert.equal(2, #slept)
      slept = {}
      ok, err = pcall(retry.call, failing(5, errors.new{ status = 404 }))
      assert.equal(404, err.status)
      ok, err = pcall(retry.call, failing(5, "a bug"))
      assert.equal("a bug", err)
      assert.equal(0, #slept)
    end)

    it("never tries again after Ctrl-C, whatever when says", function()
      local ok, err = pcall(retry.call, failing(1, errors.interrupted()), { when = function() return true end })
      assert.is_false(ok)
      assert.is_true(errors.is(err, "interrupted"))
      assert.equal("interrupted", tostring(err))
      assert.equal(0, #slept)
    end)

    it("asks when, calls before_retry(e, n) first, and does not sleep with base = 0", function()
      local seen = {}
      local a = retry.call(failing(3, "full"), {
        attempts = 5, base = 0, when = function(e) return e == "full" end,
        before_retry = function(e, n) seen[#seen + 1] = e .. n end,
      })
      assert.equal("done", a)
      assert.same({ "full0", "full1", "full2" }, seen)
      assert.equal(0, #slept)
    end)

    it("really waits with small bases, and lets other tasks run meanwhile", function()
      loop.sleep = sleep
      local letta = require "letta"
      local ticks = 0
      local ticker = letta.spawn(function() for _ = 1, 5 do ticks = ticks + 1; letta.sleep(0.005) end end)
      local t0 = loop.now()
      local t = letta.spawn(function()
        return retry.call(failing(2, errors.new{ status = 502 }), { base = 0.02, jitter = 0 })
      end)
      assert.equal("done", t:wait())
      local took = loop.now() - t0
      assert.truthy(took >= 0.06 and took < 1, took) -- 0.02 + 0.04
      ticker:wait()
      assert.equal(5, ticks)
    end)
  end)
end)
