-- Limits (issue 8): a response body over the client's cap (max_body, default 64 MiB, counted after
-- decompression) is refused cleanly; a very large passage, binary input and 10,000-level nested
-- JSON give clear errors, never a crash, and the client stays usable after each.
local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local json = letta.json

local MiB = 1024 * 1024

-- A tiny HTTP server for what the emulator does not send: GET /string/N -> a JSON string of
-- exactly N bytes; /gzip/N -> the same gzip-compressed (Content-Encoding: gzip); /deep/N -> N nested
-- arrays; /deepobj/N -> N nested objects.
local SERVER = [[
import gzip, http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        kind, _, n = self.path.strip("/").partition("/")
        n = int(n or 0)
        headers = {"Content-Type": "application/json"}
        if kind in ("string", "gzip"):
            body = b'"' + b"a" * (n - 2) + b'"'
            if kind == "gzip":
                body = gzip.compress(body, 9)
                headers["Content-Encoding"] = "gzip"
        elif kind == "deep":
            body = b"[" * n + b"]" * n
        elif kind == "deepobj":
            body = b'{"a":' * n + b"1" + b"}" * n
        else:
            body = b'{"detail":"Not Found"}'
        self.send_response(200 if kind != "other" else 404)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print("URL=http://127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
]]

local function self_pid()
  local f = io.open("/proc/self/stat", "r")
  local pid = f:read("n")
  f:close()
  return pid
end

-- Starts SERVER; returns url, stop(). A watchdog stops it if the spec runner dies.
local function start_tiny(dir)
  local script = support.write_file(dir .. "/tiny.py", SERVER)
  os.execute(string.format("(exec python3 %s) </dev/null >%s/out 2>%s/err & s=$!; echo $s >%s/pid; "
                             .. "(while kill -0 %d 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done; "
                             .. "kill $s 2>/dev/null) </dev/null >/dev/null 2>&1 &",
                           support.quote(script), dir, dir, dir, self_pid()))
  local pid = tonumber(support.read_file(dir .. "/pid") or "")
  local url
  for _ = 1, 500 do
    url = (support.read_file(dir .. "/out") or ""):match("URL=(%S+)")
    if url then break end
    letta.sleep(0.02)
  end
  assert(url, "tiny server did not start: " .. tostring(support.read_file(dir .. "/err")))
  return url, function()
    os.execute("kill " .. pid .. " 2>/dev/null")
    for _ = 1, 250 do
      if not emulator.alive(pid) then break end
      letta.sleep(0.02)
    end
    if emulator.alive(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  end
end

describe("limits", function()
  local emu, client, dir, tiny_url, stop_tiny

  lazy_setup(function()
    emu = emulator.start()
    client = emu:client{ max_retries = 0 }
    dir = support.tmpdir()
    tiny_url, stop_tiny = start_tiny(dir)
  end)
  lazy_teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
    if stop_tiny then stop_tiny() end
    support.rmdir(dir)
  end)
  before_each(function() emu:reset() end)

  describe("the response body cap (max_body)", function()
    it("refuses a body over the cap cleanly (too_large), and the client stays usable", function()
      for i = 1, 20 do client.blocks:create{ label = "b" .. i, value = string.rep("x", 100) } end
      local small = emu:client{ max_body = 1024, max_retries = 2 }
      local err = emulator.fails(small.blocks.list, small.blocks)
      assert.equal("letta.Error", getmetatable(err).__name)
      assert.equal("too_large", err.code)
      assert.equal(0, err.status)
      assert.equal(1, err.attempts) -- never retried: the same answer would come back
      assert.matches("response larger than 1024 bytes", err.message)
      assert.matches("^too_large: response larger than 1024 bytes %(GET /v1/blocks/%)$", tostring(err))
      -- the same client goes on working: small answers pass, the big one is refused again
      assert.equal("ok", small.health:check().status)
      assert.equal(1, #small.blocks:list{ limit = 1 })
      assert.equal("too_large", emulator.fails(small.blocks.list, small.blocks).code)
      assert.equal("ok", small.health:check().status)
      small:close()
    end)

    it("is 64 MiB by default: a body of exactly 64 MiB passes, one byte more is refused", function()
      local c = letta.client{ base_url = tiny_url, token = "", max_retries = 0 }
      local s = c:get("/string/" .. 64 * MiB)
      assert.equal(64 * MiB - 2, #s)
      s = nil -- luacheck: ignore
      collectgarbage()
      local err = emulator.fails(c.get, c, "/string/" .. (64 * MiB + 1))
      assert.equal("too_large", err.code)
      assert.matches("response larger than 67108864 bytes", err.message)
      assert.equal("a", c:get("/string/3"))
      c:close()
      collectgarbage()
    end)

    it("counts the decoded size: a small gzip body that inflates past the cap is refused", function()
      local c = letta.client{ base_url = tiny_url, token = "", max_retries = 0, max_body = MiB }
      assert.equal(MiB - 2, #c:get("/gzip/" .. MiB)) -- about 1 KiB on the wire
      local err = emulator.fails(c.get, c, "/gzip/" .. (MiB + 1))
      assert.equal("too_large", err.code)
      assert.equal("ok", c:get("/string/4") and "ok")
      c:close()
    end)

    it("applies to each event of a stream: one over the cap ends it with too_large", function()
      local agent = emulator.new_agent(client, { name = "bot" })
      local small = emu:client{ max_body = 1024, max_retries = 0 }
      local seen = {}
      local err = emulator.fails(function()
        for ev in small.agents.messages:stream(agent.id, string.rep("word ", 400)) do seen[#seen + 1] = ev.message_type end
      end)
      assert.equal("too_large", err.code)
      assert.same({ "reasoning_message" }, seen) -- the events before the big one came through
      local types = {}
      for ev in small.agents.messages:stream(agent.id, "hi") do types[#types + 1] = ev.message_type end
      assert.same({ "reasoning_message", "assistant_message", "stop_reason", "usage_statistics" }, types)
      small:close()
    end)

    it("rejects a bad max_body", function()
      assert.has_error(function() letta.client{ base_url = emu.url, max_body = -1 } end,
                       "bad argument #1 to 'client' (max_body must be a non-negative number)")
    end)
  end)

  describe("a very large passage", function()
    local agent_id
    before_each(function()
      agent_id = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" } } }).id
    end)

    it("sent directly (5 MB) gets the server's clear error, and the client goes on", function()
      local text = string.rep("lorem ipsum ", 5 * MiB // 12)
      local err = emulator.fails(client.agents.passages.create, client.agents.passages, agent_id, { text = text })
      assert.equal(400, err.status)
      assert.matches("exceeds token limit", err.message)
      assert.is_true(#tostring(err) < 300, "the error message is short")
      assert.equal(1, #client.agents.passages:create(agent_id, { text = "small" }))
    end)

    it("in an import file is a bad line over the size limit, and nothing of it is sent", function()
      local big = string.rep("lorem ipsum ", 5 * MiB // 12)
      local file = support.write_file(dir .. "/big.jsonl", json.encode{ text = big } .. "\n"
                                        .. json.encode{ text = "a fine passage" } .. "\n")
      local r = support.lettash({ support.root .. "/scripts/import.lua", agent_id, file },
                                { env = { LETTA_BASE_URL = emu.url, LETTA_STORE = dir .. "/store-big",
                                          LETTA_API_KEY = false, LETTA_PASSWORD = false } })
      assert.equal(0, r.code, r.stderr)
      assert.matches("line 1: text over the size limit %(" .. #big .. " > 8000 bytes%) %(skipped%)", r.stdout .. r.stderr)
      local passages = client.agents.passages:list(agent_id)
      assert.equal(1, #passages)
      assert.equal("a fine passage", passages[1].text)
      for _, q in ipairs(emu:requests()) do
        assert.is_true(#json.encode(q.body) < 10000, "a big body was sent: " .. q.method .. " " .. q.path)
      end
    end)
  end)

  describe("binary input to import", function()
    it("gives bad lines, reported by number, and sends nothing", function()
      local agent_id = emulator.new_agent(client, { name = "bot", memory_blocks = { { label = "human", value = "?" } } }).id
      math.randomseed(8)
      local bytes = {}
      for i = 1, 64 * 1024 do bytes[i] = string.char(math.random(0, 255)) end
      local file = support.write_file(dir .. "/random.bin", table.concat(bytes))
      for _, format in ipairs({ "jsonl", "csv", "text" }) do
        emu:clear_requests()
        local r = support.lettash({ support.root .. "/scripts/import.lua", agent_id, file, "--format", format, "--json" },
                                  { env = { LETTA_BASE_URL = emu.url, LETTA_STORE = dir .. "/store-bin-" .. format,
                                            LETTA_API_KEY = false, LETTA_PASSWORD = false } })
        assert.is_true(r.code == 0 or r.code == 1 or r.code == 2, format .. ": exit " .. r.code .. " " .. r.stderr)
        if r.code == 1 then
          assert.matches("^import: [^\n]+\n$", r.stderr) -- refused as a whole, with one line
        else
          local summary = json.decode(r.stdout)
          assert.is_true(summary.bad > 0, format .. ": no bad lines reported")
          assert.equal(0, summary.sent, format .. ": something was sent")
          assert.is_number(summary.bad_lines[1].line)
          assert.is_string(summary.bad_lines[1].error)
        end
        for _, q in ipairs(emu:requests()) do
          assert.is_nil(q.path:match("/archival%-memory$") and q.method == "POST" or nil, format .. ": a passage was sent")
        end
      end
      assert.equal(0, #client.agents.passages:list(agent_id))
    end)
  end)

  describe("10,000-level nested JSON", function()
    it("from the server: a clear invalid_json error, no crash, the client goes on", function()
      local c = letta.client{ base_url = tiny_url, token = "", max_retries = 0 }
      for _, kind in ipairs({ "deep", "deepobj" }) do
        local err = emulator.fails(c.get, c, "/" .. kind .. "/10000")
        assert.equal("letta.Error", getmetatable(err).__name)
        assert.equal("invalid_json", err.code)
        assert.matches("the server sent invalid JSON %(nested too deeply at byte %d+%)", err.message)
        assert.is_true(#tostring(err) < 200)
      end
      local v, depth = c:get("/deep/1000"), 1 -- 1,000 levels (the limit) still decode
      while v[1] do v, depth = v[1], depth + 1 end
      assert.equal(1000, depth)
      assert.equal("a", c:get("/string/3"))
      c:close()
    end)

    it("json.decode and json.encode: a clear error, no crash", function()
      for _, text in ipairs({ string.rep("[", 10000) .. string.rep("]", 10000),
                              string.rep('{"a":', 10000) .. "1" .. string.rep("}", 10000),
                              string.rep("[", 10000) }) do
        local ok, err = pcall(json.decode, text)
        assert.is_false(ok)
        assert.matches("^json: nested too deeply at byte %d+$", err)
      end
      local t = {}
      local cur = t
      for _ = 1, 10000 do cur[1] = {}; cur = cur[1] end
      local ok, err = pcall(json.encode, t)
      assert.is_false(ok)
      assert.matches("nested too deeply", err)
      -- one level under the limit works both ways
      local text = string.rep("[", 1000) .. string.rep("]", 1000)
      assert.equal(text, json.encode(json.decode(text)))
    end)
  end)
end)
