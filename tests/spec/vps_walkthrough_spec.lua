-- Follows the README's section "A Letta server on a VPS" command by command, so that an edit that
-- breaks the walkthrough fails here. The section's ```sh and ```console blocks are read from
-- README.md and run in order in one shell session (exported variables carry over), with the
-- placeholders filled in: https://<vps>:8283 is the emulator started with --password and
-- --tls-cert on 127.0.0.1, <password> its password, `scp` copies the certificate this spec made
-- with openssl, `bin/lettash` is the binary under test, ~ a temporary HOME.
--   ```sh: every command must exit 0 (the spec also checks the key output of each script).
--   ```console: "$ command" lines, each followed by lines of its output ("…" stands for anything)
--   that must appear in what it printed; it must fail when one of them is its error line
--   ("<script>: …" or "FAIL …"), else succeed. A 502 from the proxy is the emulator's proxy-502
--   fault; "is a Letta server running" is run against a port where nothing listens.
local support = require "support"
local emulator = require "emulator"

local PASSWORD = "walkthrough-pw-3c9a71"

-- The section's blocks, in order: {kind = "sh"|"console", lines = {...}}.
local function readme_blocks()
  local text = assert(support.read_file(support.root .. "/README.md"), "no README.md")
  local section = text:match("\n## A Letta server on a VPS\n(.-)\n## ")
  assert(section, "README.md has no section '## A Letta server on a VPS'")
  local blocks = {}
  for kind, body in section:gmatch("\n```(%a+)\n(.-)\n```") do
    if kind == "sh" or kind == "console" then
      local lines = {}
      for l in (body .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
      blocks[#blocks + 1] = { kind = kind, lines = lines }
    end
  end
  return blocks
end

-- The commands of the blocks: {cmd=, expect = {lines} (console) or nil (sh), console = bool}.
local function steps_of(blocks)
  local steps = {}
  for _, b in ipairs(blocks) do
    local pending = ""
    for _, l in ipairs(b.lines) do
      if b.kind == "sh" then
        if l:match("%S") and not l:match("^%s*#") then
          if l:match("\\$") then
            pending = pending .. l:sub(1, -2)
          else
            steps[#steps + 1] = { cmd = pending .. l }
            pending = ""
          end
        end
      elseif l:match("^%$ ") then
        steps[#steps + 1] = { cmd = l:sub(3), expect = {}, console = true }
      elseif l:match("%S") then
        local last = assert(steps[#steps] and steps[#steps].console and steps[#steps], "output before a $ line: " .. l)
        table.insert(last.expect, l)
      end
    end
  end
  return steps
end

-- A line of the README's output as a Lua pattern ("…" is anything).
local function pattern_of(line)
  local parts = {}
  for piece in (line .. "…"):gmatch("(.-)…") do parts[#parts + 1] = (piece:gsub("%p", "%%%0")) end
  return table.concat(parts, ".-")
end

-- What each script must print on the happy path, besides exiting 0.
local function check_output(cmd, r)
  local out = r.stdout .. r.stderr
  if cmd:find("doctor.lua", 1, true) then
    assert.matches("ok   server: https://127%.0%.0%.1:%d+ %(Letta 0%.16%.8", r.stdout)
    assert.matches("\ndoctor: healthy", r.stdout)
  elseif cmd:find("agents.lua create", 1, true) then
    -- captured by $(...): seen through the next command
  elseif cmd:find("onboard.lua alice", 1, true) then
    assert.matches("alice: created identity identity%-", r.stdout)
  elseif cmd:find("chat.lua alice", 1, true) then
    assert.matches("you said: hello, I am Alice", r.stdout)
  elseif cmd:find("users.lua", 1, true) then
    assert.matches("\nalice%s+Alice%s+identity%-", r.stdout)
  elseif cmd:find("config.lua set default_agent", 1, true) then
    assert.matches("^default_agent = agent%-%x+%-", r.stdout)
  elseif cmd:find("config.lua set ca_file", 1, true) then
    assert.matches("^ca_file = /", r.stdout)
  end
  return out
end

describe("the README's walkthrough 'A Letta server on a VPS'", function()
  local emu, dir, cert, home, state

  lazy_setup(function()
    dir = support.tmpdir()
    home = dir .. "/home"
    os.execute("mkdir -p " .. support.quote(home))
    local key
    cert, key = support.self_signed_cert(dir, "server")
    emu = emulator.start{ "--password", PASSWORD, "--tls-cert", cert, "--tls-key", key }
    state = dir .. "/state.sh"
    support.write_file(state, "")
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    support.rmdir(dir)
  end)

  -- Runs one command of the walkthrough in the session: the variables exported so far, then the
  -- command, then the exported variables saved for the next one. down: the server is not there
  -- (LETTA_BASE_URL points at a dead port, for this command only).
  local function run(cmd, down)
    cmd = cmd:gsub("https://<vps>:8283", emu.url):gsub("<vps>", "127.0.0.1"):gsub("<password>", PASSWORD)
             :gsub("bin/lettash", support.quote(support.bin))
    local q = support.quote(state)
    local script = string.format([[
. %s
scp() { for a; do last=$a; done; cp %s "$last"; }
%s
%s
rc=$?
%s
exit $rc]], q, support.quote(cert), down and "export LETTA_BASE_URL=" .. support.quote(down) or "", cmd,
             down and "" or string.format("export -p > %s.new && mv %s.new %s", q, q, q))
    local file = support.write_file(dir .. "/step.sh", script)
    -- nothing from the spec's own environment says where the server is or what to trust
    return support.sh("sh " .. support.quote(file), { cwd = support.root, env = {
      HOME = home, LETTA_STORE = dir .. "/store", LETTASH_LUA_PATH = support.lua_path, LETTASH_INIT = false,
      LETTA_BASE_URL = false, LETTA_PASSWORD = false, LETTA_API_KEY = false, LETTA_CA_FILE = false,
      CURL_CA_BUNDLE = false, SSL_CERT_FILE = false, SSL_CERT_DIR = false, LETTA_MODEL = false,
      LETTA_EMBEDDING = false } })
  end

  it("runs every command of the section as written, with the outputs it shows", function()
    local steps = steps_of(readme_blocks())
    local seen = {}
    local dead = emulator.start()
    local dead_url = dead.url:gsub("^http:", "https:")
    dead:stop() -- a port where nothing listens
    for i, step in ipairs(steps) do
      local label = string.format("step %d: %s", i, step.cmd)
      if not step.console then
        local r = run(step.cmd)
        assert(r.code == 0, label .. " exited " .. r.code .. ":\n" .. r.stdout .. r.stderr)
        check_output(step.cmd, r)
        seen[#seen + 1] = step.cmd
      else
        local all = table.concat(step.expect, "\n")
        local down = all:find("is a Letta server running at", 1, true) and dead_url
        if all:find("from the proxy in front of Letta", 1, true) then emu:faults("kind=proxy-502") end
        local ok, r = pcall(run, step.cmd, down)
        emu:clear_faults()
        assert(ok, r)
        local out = r.stdout .. r.stderr
        local script = step.cmd:match("scripts/([%w_%-]+)%.lua")
        local fails = false
        for _, l in ipairs(step.expect) do
          l = l:gsub("https://<vps>:8283", down or emu.url)
          assert(out:find(pattern_of(l)), label .. ": expected a line\n  " .. l .. "\ngot:\n" .. out)
          if l:match("^FAIL ") or (script and l:sub(1, #script + 2) == script .. ": ") then fails = true end
        end
        if fails then
          assert(r.code ~= 0, label .. " should have failed:\n" .. out)
        else
          assert(r.code == 0, label .. " exited " .. r.code .. ":\n" .. out)
        end
        seen[#seen + 1] = "$ " .. step.cmd .. " -> " .. all
      end
    end
    -- the walkthrough still covers the deployment: URL, password, certificate, doctor, an agent,
    -- the first onboard and chat, and the three common mistakes
    local all = table.concat(seen, "\n")
    for _, needed in ipairs({ "LETTA_BASE_URL=https://", "LETTA_PASSWORD=", "LETTA_CA_FILE=", "scp ",
                              "scripts/doctor.lua", "scripts/agents.lua create", "scripts/onboard.lua",
                              "scripts/chat.lua", "config.lua set ca_file", "LETTA_PASSWORD is set but the server refused it",
                              "set LETTA_CA_FILE to the certificate", "from the proxy in front of Letta",
                              "is a Letta server running at" }) do
      assert(all:find(needed, 1, true), "the walkthrough no longer has: " .. needed)
    end
    -- and the server holds what it made: one agent, alice's identity and block
    local s = emu:state()
    assert.equal(1, #s.agents)
    assert.equal(1, #s.identities)
    assert.equal("alice", s.identities[1].identifier_key)
  end)
end)
