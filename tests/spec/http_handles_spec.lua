-- letta.http's handles, kept as liolib keeps files: a closed request or session raises on every
-- use, closing stays idempotent (<close>, __gc, keep), and the table forms name the field at fault.
-- (Leaks of set-ups that fail half way: tests/c/test_http.c.)
local emulator = require "emulator"
local http = require "letta.http"

local REQUEST_METHODS = { "wait", "done", "result", "headers", "events", "notify", "streaming", "keep" }

local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("letta.http handles", function()
  local emu, s
  lazy_setup(function()
    emu = emulator.start{ "--latency-ms", "100" }
    s = http.session{}
  end)
  lazy_teardown(function()
    if s then s:close() end
    if emu then emu:stop() end
  end)

  local function finished(opts)
    local req = s:request(opts or { url = emu.url .. "/v1/health/" })
    while not req:wait(100) do end
    return req
  end

  it("every method of a closed request raises 'attempt to use a closed HTTP request'", function()
    local req = finished()
    assert.equal(200, (req:result()))
    req:close()
    for _, m in ipairs(REQUEST_METHODS) do
      assert.equal("attempt to use a closed HTTP request", err_of(req[m], req), m)
    end
    assert.equal("letta.http.Request (closed)", tostring(req))
  end)

  it("a request closed while running raises too, and its transfer is aborted", function()
    local req = s:request{ url = emu.url .. "/v1/health/" }
    assert.equal(1, http.inflight())
    req:close()
    assert.equal(0, http.inflight())
    assert.equal("attempt to use a closed HTTP request", err_of(req.result, req))
  end)

  it("close, __close and __gc of a closed request do nothing more", function()
    local req = finished()
    req:close()
    req:close()
    do local again <close> = req end
    req = nil
    collectgarbage()
    collectgarbage()
  end)

  it("a kept request outlives one <close> scope, then closes for good", function()
    local function open()
      local req <close> = s:request{ url = emu.url .. "/v1/health/" }
      return req:keep()
    end
    local req = open()
    while not req:wait(100) do end
    assert.equal(200, (req:result()))
    req:close()
    assert.equal("attempt to use a closed HTTP request", err_of(req.done, req))
  end)

  it("every method of a closed session raises 'attempt to use a closed HTTP session'", function()
    local other = http.session{}
    local req = other:request{ url = emu.url .. "/v1/health/" }
    other:close()
    other:close()
    assert.equal("attempt to use a closed HTTP session", err_of(other.request, other, { url = emu.url }))
    -- its request stays readable: it was aborted, not closed
    assert.is_true(req:done())
    assert.equal("aborted", select(3, req:result()))
    req:close()
  end)

  it("errors of session:request{...} name the field", function()
    local url = emu.url .. "/v1/health/"
    assert.equal("bad field 'timeout' to 'request' (number expected, got string)",
                 err_of(s.request, s, { url = url, timeout = "x" }))
    assert.equal("bad field 'url' to 'request' (string expected, got nil)", err_of(s.request, s, {}))
    assert.equal("bad field 'method' to 'request' (string expected, got number)",
                 err_of(s.request, s, { url = url, method = 1 }))
    assert.equal("bad field 'timeout_ms' to 'request' (number expected, got table)",
                 err_of(s.request, s, { url = url, timeout_ms = {} }))
    assert.equal("bad field 'timeout_ms' to 'request' (number has no integer representation)",
                 err_of(s.request, s, { url = url, timeout_ms = 1.5 }))
    assert.equal("bad field 'headers[2]' to 'request' (string expected, got number)",
                 err_of(s.request, s, { url = url, headers = { "X-A: b", 7 } }))
    assert.equal(0, http.inflight()) -- nothing was started
  end)

  it("errors of http.session{...} name the field, and nothing is created", function()
    assert.equal("bad field 'max_body' to 'session' (number expected, got string)",
                 err_of(http.session, { max_body = "x" }))
    assert.equal("bad field 'ca_path' to 'session' (string expected, got table)",
                 err_of(http.session, { ca_file = "/tmp/x.pem", ca_path = {} }))
    assert.equal("bad field 'user_agent' to 'session' (string expected, got boolean)",
                 err_of(http.session, { user_agent = true }))
    assert.equal("bad field 'headers[1]' to 'session' (string expected, got table)",
                 err_of(http.session, { headers = { {} } }))
  end)

  it("timeout (seconds) in the table form times the request out", function()
    local req = finished{ url = emu.url .. "/v1/health/", timeout = 0.02 }
    local status, body, kind = req:result()
    req:close()
    assert.equal(0, status)
    assert.is_nil(body)
    assert.equal("timeout", kind)
  end)
end)
