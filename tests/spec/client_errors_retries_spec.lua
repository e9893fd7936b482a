-- Failures and retries, counted through the emulator's request log: requests that are safe to
-- repeat are retried on 503, 429 (honouring Retry-After) and connection resets; a POST that
-- creates something is never repeated after the server may have run it; max_retries = 0 turns
-- retries off; transport failures raise the same letta.Error type.
local emulator = require "emulator"
local letta = require "letta"
local http = require "letta.http"
local fails, missing_id = emulator.fails, emulator.missing_id

local function timed(fn, ...)
  local t0 = http.now()
  local r = table.pack(pcall(fn, ...))
  return http.now() - t0, table.unpack(r, 1, r.n)
end

describe("client retries", function()
  local emu, client
  emulator.suite(_ENV, function(e, c) emu, client = e, c end)

  it("retries a GET on 503 with backoff, and succeeds", function()
    local b = client.blocks:create{ label = "x", value = "y" }
    emu:clear_requests()
    emu:faults("kind=503,times=2,route=GET /v1/blocks/*")
    local took, ok, r = timed(client.blocks.retrieve, client.blocks, b.id)
    assert.is_true(ok, tostring(r))
    assert.equal(b.id, r.id)
    local reqs = emu:requests()
    assert.equal(3, #reqs)
    assert.same({ 503, 503, 200 }, { reqs[1].status, reqs[2].status, reqs[3].status })
    assert.equal("503", reqs[1].fault)
    -- backoff 0.5 s * 2^n with up to 25 % jitter: at least 0.375 + 0.75
    assert.truthy(took >= 1.1 and took < 3, took)
  end)

  it("gives up after max_retries (2 retries: 3 attempts) and raises the last error", function()
    emu:faults("kind=503,times=5,route=GET /v1/health/")
    local took, ok, err = timed(client.health.check, client.health)
    assert.is_false(ok)
    assert.equal(503, err.status)
    assert.equal("server_error", err.code)
    assert.equal(true, err.retryable)
    assert.equal(3, err.attempts)
    assert.matches("^503 Service Unavailable: .* %(GET /v1/health/%)$", tostring(err))
    assert.equal(3, emu:count("GET", "/v1/health/"))
    assert.truthy(took >= 1.1, took)
  end)

  it("retries on 429 after the server's Retry-After, even a POST (it was refused unrun)", function()
    emu:faults("kind=429,times=1,retry_after=1,route=POST /v1/blocks/")
    local took, ok, b = timed(client.blocks.create, client.blocks, { label = "x", value = "y" })
    assert.is_true(ok, tostring(b))
    assert.equal(2, emu:count("POST", "/v1/blocks/"))
    assert.equal(429, emu:requests()[1].status)
    assert.truthy(took >= 0.95 and took < 2.5, took) -- Retry-After: 1, not the 0.5 s backoff
    assert.equal(1, #emu:state().blocks)
  end)

  it("does not repeat a POST after a 500", function()
    emu:faults("kind=500,times=1,route=POST /v1/blocks/")
    local err = fails(client.blocks.create, client.blocks, { label = "x", value = "y" })
    assert.equal(500, err.status)
    assert.equal(true, err.retryable) -- retrying may help, but it is the caller's decision
    assert.equal(1, err.attempts)
    assert.equal(1, emu:count("POST", "/v1/blocks/"))
    assert.equal(0, #emu:state().blocks)
    emu:faults("kind=503,times=1,route=POST /v1/agents/*/messages")
    local a = emulator.new_agent(client, { name = "bot" })
    err = fails(client.agents.messages.create, client.agents.messages, a.id, "hi")
    assert.equal(503, err.status)
    assert.equal(1, emu:count("POST", "/v1/agents/" .. a.id .. "/messages"))
  end)

  it("does not repeat a POST whose effect was committed before the 500: exactly one block exists", function()
    emu:faults("kind=commit-500,times=1,route=POST /v1/blocks/")
    local err = fails(client.blocks.create, client.blocks, { label = "once", value = "only once" })
    assert.equal(500, err.status)
    assert.equal("An unknown error occurred", err.message)
    assert.equal(1, emu:count("POST", "/v1/blocks/"))
    local blocks = emu:state().blocks
    assert.equal(1, #blocks)
    assert.equal("once", blocks[1].label)
    assert.equal(1, #client.blocks:list{ label = "once" })
  end)

  it("does not repeat a POST after the connection was reset (on a new connection)", function()
    emu:faults("kind=commit-reset,times=1,route=POST /v1/blocks/")
    local c = emu:client() -- no kept-alive connection yet
    local err = fails(c.blocks.create, c.blocks, { label = "r", value = "v" })
    c:close()
    assert.truthy(letta.is_error(err))
    assert.equal(0, err.status)
    assert.equal("reset", err.code)
    assert.equal("POST", err.method)
    assert.equal("/v1/blocks/", err.path)
    assert.equal(false, err.retryable == nil)
    assert.equal(1, emu:count("POST", "/v1/blocks/"))
    assert.equal(1, #emu:state().blocks)
  end)

  it("does not repeat a POST after a reset on a kept-alive connection", function()
    -- libcurl by itself resends a request that got no answer on a reused connection (its stale
    -- keep-alive retry); the transport refuses that second send for requests unsafe to repeat.
    local c = emu:client()
    assert.equal("ok", c.health:check().status) -- the connection is now kept alive
    emu:faults("kind=commit-reset,times=1,route=POST /v1/blocks/")
    local err = fails(c.blocks.create, c.blocks, { label = "kept", value = "v" })
    assert.equal(0, err.status)
    assert.equal("reset", err.code)
    assert.matches("may have been applied", err.message, 1, true)
    assert.equal(1, emu:count("POST", "/v1/blocks/"))
    assert.equal(1, #emu:state().blocks)
    -- and the connection is usable again afterwards
    assert.equal("kept", c.blocks:list{ label = "kept" }[1].label)
    c:close()
  end)

  it("retries a GET after a connection reset", function()
    emu:faults("kind=reset,times=1,route=GET /v1/health/")
    local r = client.health:check()
    assert.equal("ok", r.status)
    local reqs = emu:requests()
    assert.equal(2, #reqs)
    assert.equal("reset", reqs[1].fault)
    assert.equal(letta.json.null, reqs[1].status)
    assert.equal(200, reqs[2].status)
  end)

  it("retries PATCH and DELETE (safe to repeat) on 503", function()
    local b = client.blocks:create{ label = "x", value = "y" }
    emu:faults("kind=503,times=1,route=PATCH /v1/blocks/*;kind=503,times=1,route=DELETE /v1/blocks/*")
    local c = emu:client{ max_retries = 1 }
    assert.equal("z", c.blocks:modify(b.id, { value = "z" }).value)
    assert.is_nil(c.blocks:delete(b.id))
    assert.equal(2, emu:count("PATCH"))
    assert.equal(2, emu:count("DELETE"))
    c:close()
  end)

  it("max_retries = 0 disables retries", function()
    local c = emu:client{ max_retries = 0 }
    emu:faults("kind=503,times=1,route=GET /v1/health/")
    local err = fails(c.health.check, c.health)
    assert.equal(503, err.status)
    assert.equal(1, err.attempts)
    assert.equal(1, emu:count("GET", "/v1/health/"))
    emu:faults("kind=429,times=1,route=GET /v1/health/")
    err = fails(c.health.check, c.health)
    assert.equal(429, err.status)
    assert.equal("rate_limited", err.code)
    assert.equal(true, err.retryable)
    assert.equal(2, emu:count("GET", "/v1/health/"))
    assert.equal("ok", c.health:check().status)
    c:close()
  end)

  it("does not retry 4xx answers other than 408, 409 and 429", function()
    local err = fails(client.blocks.retrieve, client.blocks, missing_id("block"))
    assert.equal(404, err.status)
    err = fails(client.blocks.list, client.blocks, { limit = "lots" })
    assert.equal(422, err.status)
    assert.equal(2, #emu:requests())
  end)
end)

describe("client transport failures", function()
  local emu, client
  lazy_setup(function()
    emu = emulator.start()
    client = emu:client{ max_retries = 0 }
  end)
  lazy_teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)
  before_each(function() emu:reset() end)

  it("a refused connection raises code 'connect' with status 0", function()
    -- a port nothing listens on: a server started and stopped
    local gone = emulator.start()
    local url = gone.url
    gone:stop()
    local c = letta.client{ base_url = url, token = "", max_retries = 0 }
    local err = fails(c.health.check, c.health)
    assert.truthy(letta.is_error(err, "connect"))
    assert.equal(0, err.status)
    assert.equal("GET", err.method)
    assert.equal("/v1/health/", err.path)
    assert.equal(true, err.retryable)
    assert.matches("^connect: .+ %(GET /v1/health/%): is a Letta server running at " .. url:gsub("%p", "%%%0") .. "%?$",
                   tostring(err))
    c:close()
  end)

  it("a slow answer past the timeout raises code 'timeout'", function()
    emu:faults("kind=slow,ms=1500,times=1,route=GET /v1/health/")
    local c = emu:client{ timeout = 0.3, max_retries = 0 }
    local took, ok, err = timed(c.health.check, c.health)
    assert.is_false(ok)
    assert.truthy(letta.is_error(err, "timeout"))
    assert.equal(0, err.status)
    assert.truthy(took < 1.2, took)
    assert.matches("^timeout: .+ %(GET /v1/health/%)$", tostring(err))
    c:close()
  end)

  it("invalid JSON in a 200 answer raises code 'invalid_json'", function()
    emu:faults("kind=bad-json,times=1,route=GET /v1/health/")
    local err = fails(client.health.check, client.health)
    assert.truthy(letta.is_error(err, "invalid_json"))
    assert.matches("^<html>", err.body)
    assert.equal(false, err.retryable)
  end)

  it("a truncated answer raises a transport error", function()
    emu:faults("kind=truncate,times=1,route=GET /v1/health/")
    local err = fails(client.health.check, client.health)
    assert.truthy(letta.is_error(err))
    assert.equal(0, err.status)
    assert.equal("reset", err.code)
  end)

  it("errors are letta.Error values that is_error tells apart", function()
    local err = fails(client.blocks.retrieve, client.blocks, missing_id("block"))
    assert.equal(letta.Error, getmetatable(err))
    assert.is_true(letta.is_error(err))
    assert.is_true(letta.is_error(err, "not_found"))
    assert.is_false(letta.is_error(err, "conflict"))
    assert.is_false(letta.is_error("bad argument"))
    assert.is_false(letta.is_error({ status = 404 }))
  end)
end)
