-- What the reliability suites share (fault_matrix.lua, crash_points.lua): the emulator, the CLI
-- scripts run as child processes on a store of their own, the checks of the exact final state
-- (server through /_emulator/state, store through letta.store) and of the store's integrity.
-- Run from the repository root by bin/lettash; every check returns nil when it holds, else a
-- one-line reason (no luassert: these are plain lettash scripts).
local ROOT = os.getenv("PWD") or "."
package.path = ROOT .. "/tests/spec/helpers/?.lua;" .. ROOT .. "/tests/reliability/?.lua;" .. package.path

local support = require "support"
local emulator = require "emulator"
local letta = require "letta"
local store_mod = require "letta.store"
local records = require "letta.users.records"
local content_text = require("letta.users.chat").content_text
local json = letta.json

local _M = { support = support, emulator = emulator, letta = letta, json = json }

_M.CLIENT_TIMEOUT = 1 -- seconds: the store's `timeout` setting in every case (a `slow` answer outlasts it)
_M.SLOW_MS = 1600     -- ms a `slow` answer is held (before it is applied)

function _M.now() return require("letta.http").now() end
function _M.sleep(s) letta.sleep(s) end

-- ---------------------------------------------------------------------------------------------
-- A case: a store of its own in a temporary directory.

function _M.new_case(emu)
  local dir = support.tmpdir()
  local c = { emu = emu, dir = dir, store = dir .. "/store" }
  local s = store_mod.open(c.store)
  s:set_setting("timeout", _M.CLIENT_TIMEOUT)
  s:close()
  return c
end

function _M.end_case(c) support.rmdir(c.dir) end

function _M.env(c)
  return { LETTA_BASE_URL = c.emu.url, LETTA_STORE = c.store, LETTA_API_KEY = false, LETTA_PASSWORD = false,
           LETTASH_LUA_PATH = support.lua_path, LETTASH_INIT = false }
end

-- cli(c, "onboard", args...) -> {code=, stdout=, stderr=}: bin/lettash scripts/<name>.lua args...
function _M.cli(c, name, ...)
  local argv = { support.root .. "/scripts/" .. name .. ".lua" }
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  return support.lettash(argv, { env = _M.env(c) })
end

-- Same, must exit 0 (else raises with its stderr).
function _M.cli_ok(c, name, ...)
  local r = _M.cli(c, name, ...)
  if r.code ~= 0 then error(string.format("setup: %s exited %d: %s", name, r.code, r.stderr), 0) end
  return r
end

-- Runs fn(store) on the case's store, opened for the call only.
function _M.with_store(c, fn)
  local s = store_mod.open(c.store)
  local ok, res = pcall(fn, s)
  s:close()
  if not ok then error(res, 0) end
  return res
end

function _M.count_ns(s, ns) return s:count(ns) end

-- A pid that is certainly not running (a process that has exited).
function _M.dead_pid()
  local p = io.popen("sh -c 'echo $$'")
  local pid = tonumber(p:read("l"))
  p:close()
  return pid
end

-- Puts persona block_id on agent_id (admin client) and records it in the store as left there by a
-- chat whose process is gone: what a chat killed between attach and detach leaves.
function _M.leave_attached(c, client, username, agent_id, block_id)
  client.agents.blocks:attach(agent_id, block_id)
  _M.with_store(c, function(s)
    s:update(function(txn)
      records.put_attachment(txn, agent_id, block_id, username, _M.dead_pid())
    end)
  end)
end

-- ---------------------------------------------------------------------------------------------
-- The error contract of the scripts: a failure is ONE line "<script>: <message>" on stderr, no
-- traceback, no Lua source position (that would be a bug surfacing). Returns nil or the reason.
function _M.one_line_error(name, r)
  local err = r.stderr or ""
  if err:find("traceback", 1, true) then return "traceback on stderr" end
  local msg = err:match("^" .. name .. ": ([^\n]+)\n$")
  if not msg then return "stderr is not one line '" .. name .. ": ...': " .. err:sub(1, 300):gsub("\n", "\\n") end
  if msg:match("%.lua:%d+:") then return "a Lua error position in the message (a bug): " .. msg end
  if #msg > 400 then return "error line too long (" .. #msg .. " chars)" end
  return nil
end

-- ---------------------------------------------------------------------------------------------
-- Server state checks

function _M.identities_of(state, username)
  local t = {}
  for _, i in ipairs(state.identities) do if i.identifier_key == username then t[#t + 1] = i end end
  return t
end

function _M.blocks_labelled(state, label)
  local t = {}
  for _, b in ipairs(state.blocks) do if b.label == label then t[#t + 1] = b end end
  return t
end

function _M.agent_in(state, agent_id)
  for _, a in ipairs(state.agents) do if a.id == agent_id then return a end end
end

function _M.personas_attached(state)
  local t = {}
  for _, a in ipairs(state.agents) do
    for _, label in ipairs(a.block_labels or {}) do
      if label:match("^Persona_") then t[#t + 1] = a.id .. ":" .. label end
    end
  end
  return t
end

-- Exactly the users `names` are onboarded, on the server (one identity, one persona block each,
-- linked, no other identity or persona block) and in the store (records with both ids and the
-- reverse lookups, nothing pending, no attachment, no lease), and no persona is attached to any
-- agent. Returns nil, or the first thing that is wrong.
function _M.check_users(c, names, state)
  state = state or c.emu:state()
  local want = {}
  for _, n in ipairs(names) do want[n] = true end
  local personas = 0
  for _, b in ipairs(state.blocks) do if b.label:match("^Persona_") then personas = personas + 1 end end
  if #state.identities ~= #names then return string.format("%d identities on the server, want %d", #state.identities, #names) end
  if personas ~= #names then return string.format("%d persona blocks on the server, want %d", personas, #names) end
  local att = _M.personas_attached(state)
  if #att > 0 then return "persona left attached: " .. table.concat(att, " ") end
  return _M.with_store(c, function(s)
    local recs = s:users()
    if #recs ~= #names then return string.format("%d user records in the store, want %d", #recs, #names) end
    for _, n in ipairs(names) do
      local ids, blocks = _M.identities_of(state, n), _M.blocks_labelled(state, "Persona_" .. n)
      if #ids ~= 1 then return string.format("%d identities for %s", #ids, n) end
      if #blocks ~= 1 then return string.format("%d persona blocks for %s", #blocks, n) end
      if ids[1].identity_type ~= "user" then return "identity of " .. n .. " is not of type user" end
      -- the link as a real server shows it (an Identity's own block_ids is always empty there)
      local linked = c.emu.admin.identities.blocks:list(ids[1].id)
      if #linked ~= 1 or linked[1].id ~= blocks[1].id then return "persona of " .. n .. " not linked to the identity" end
      local rec = s:user(n)
      if not rec then return "no record for " .. n end
      if rec.identity_id ~= ids[1].id then return "record of " .. n .. ": identity id differs from the server's" end
      if rec.block_id ~= blocks[1].id then return "record of " .. n .. ": block id differs from the server's" end
      if not rec.onboarded or rec.pending_block or rec.offboarding then return "record of " .. n .. " is not settled" end
      local bi, bb = s:user_by("identity", rec.identity_id), s:user_by("block", rec.block_id)
      if not (bi and bi.username == n and bb and bb.username == n) then return "reverse lookups of " .. n .. " missing" end
      local ok, v = pcall(json.decode, blocks[1].value)
      if not ok or type(v) ~= "table" or type(v.conversation_history) ~= "table" then
        return "persona value of " .. n .. " is not the persona JSON"
      end
    end
    for _, rec in ipairs(recs) do if not want[rec.username] then return "unexpected record " .. rec.username end end
    if _M.count_ns(s, "attachments") ~= 0 then return "attachments left in the store" end
    if _M.count_ns(s, "leases") ~= 0 then return "leases left in the store" end
    return nil
  end)
end

-- The persona JSON of username on the server (decoded), or nil.
function _M.persona(state, username)
  local b = _M.blocks_labelled(state, "Persona_" .. username)[1]
  if not b then return nil end
  local ok, v = pcall(json.decode, b.value)
  return ok and v or nil
end

-- The user messages with `text` the agent holds.
function _M.user_messages(state, agent_id, text)
  local n = 0
  for _, m in ipairs((state.messages or {})[agent_id] or {}) do
    if m.message_type == "user_message" and content_text(m.content) == text then n = n + 1 end
  end
  return n
end

-- The passages of agent_id are exactly `texts`, once each; the store's import journal holds every
-- item as done, with the id of the passage that holds it. Returns nil or the reason.
function _M.check_import(c, agent_id, texts, state)
  state = state or c.emu:state()
  local want, seen = {}, {}
  for _, t in ipairs(texts) do want[t] = true end
  local ids = {}
  for _, p in ipairs((state.passages or {})[agent_id] or {}) do
    local text = p.text or p.content
    if seen[text] then return "duplicate passage: " .. text end
    if not want[text] then return "unexpected passage: " .. tostring(text) end
    seen[text] = true
    ids[p.id] = true
  end
  for _, t in ipairs(texts) do if not seen[t] then return "lost passage: " .. t end end
  return _M.with_store(c, function(s)
    local n, bad = 0, nil
    s:read(function(txn)
      for key, j in records.each_item(txn) do
        n = n + 1
        if not records.is_done(j) then bad = bad or ("journal entry not done: " .. key) end
        if records.is_done(j) and not ids[j.id] then bad = bad or ("journal entry points to no passage: " .. key) end
      end
    end)
    if bad then return bad end
    if n ~= #texts then return string.format("%d journal entries, want %d", n, #texts) end
    return nil
  end)
end

-- n JSONL items; returns the path and the texts.
function _M.jsonl(path, n, prefix)
  return support.jsonl_file(path, n, { prefix = prefix or "item", topics = 7, tags = 3 })
end

-- ---------------------------------------------------------------------------------------------
-- Store integrity: opens the store and reads (and decodes) every record of every namespace; with
-- lmdb-utils installed, mdb_stat -a and mdb_dump -a must read it too. Returns nil or the reason.
local have_mdb = os.execute("command -v mdb_stat >/dev/null 2>&1 && command -v mdb_dump >/dev/null 2>&1")
_M.have_mdb_utils = have_mdb and true or false

function _M.check_store(path)
  local ok, err = pcall(function()
    local s = store_mod.open(path)
    local n = 0
    s:read(function(txn)
      for _, ns in ipairs(store_mod.NAMESPACES) do
        for k, v in txn:each(ns) do
          assert(type(k) == "string" and v ~= nil, "bad record in " .. ns)
          n = n + 1
        end
      end
    end)
    s:close()
  end)
  if not ok then return "store unreadable: " .. tostring(err) end
  if _M.have_mdb_utils then
    local q = support.quote(path)
    local r = support.sh("mdb_stat -n -a " .. q .. " && mdb_dump -n -a " .. q .. " >/dev/null")
    if r.code ~= 0 then return "mdb_stat/mdb_dump refused the store: " .. (r.stderr or ""):gsub("\n", " ") end
  end
  return nil
end

-- ---------------------------------------------------------------------------------------------
-- Background children (for kill -9): spawn(c, argv) starts bin/lettash argv... with the case's
-- environment; its pid is bin/lettash itself (sh execs it), so kill -9 hits the workflow only.

local Proc = {}
Proc.__index = Proc
local procs = {}

function _M.spawn(c, argv)
  local dir = support.tmpdir()
  local env = ""
  for k, v in pairs(_M.env(c)) do
    env = env .. (v == false and ("unset " .. k .. "; ") or ("export " .. k .. "=" .. support.quote(v) .. "; "))
  end
  local parts = { support.quote(support.bin) }
  for _, a in ipairs(argv) do parts[#parts + 1] = support.quote(a) end
  local inner = env .. "echo $$ >" .. dir .. "/pid; exec " .. table.concat(parts, " ")
  local cmd = string.format("(sh -c %s >%s/out 2>%s/err </dev/null; echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc) "
                              .. "</dev/null >/dev/null 2>&1 &", support.quote(inner), dir, dir, dir, dir, dir)
  assert(os.execute(cmd))
  local self = setmetatable({ dir = dir, started = _M.now() }, Proc)
  local deadline = _M.now() + 5
  while true do
    self.pid = tonumber(support.read_file(dir .. "/pid") or "")
    if self.pid then break end
    if _M.now() > deadline then error("spawn: the child did not start", 2) end
    _M.sleep(0.001)
  end
  procs[#procs + 1] = self
  return self
end

function Proc:done() return support.read_file(self.dir .. "/rc") ~= nil end

-- wait([timeout]) -> exit code, stdout, stderr
function Proc:wait(timeout)
  local deadline = _M.now() + (timeout or 60)
  while not self:done() do
    if _M.now() > deadline then
      self:kill9()
      error("spawn: the child ran longer than " .. (timeout or 60) .. " s", 2)
    end
    _M.sleep(0.003)
  end
  if not self.code then
    self.code = tonumber(support.read_file(self.dir .. "/rc"))
    self.stdout, self.stderr = support.read_file(self.dir .. "/out"), support.read_file(self.dir .. "/err")
    self.seconds = _M.now() - self.started
    support.rmdir(self.dir)
  end
  return self.code, self.stdout, self.stderr
end

-- kill9() -> the exit code (137 when the kill landed, else the code it ended with first)
function Proc:kill9()
  if self.code then return self.code end
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  return (self:wait(10))
end

-- Kills what is still running (on the way out, whatever happened).
function _M.kill_all()
  for _, p in ipairs(procs) do
    if not p.code and p.pid and emulator.alive(p.pid) then pcall(p.kill9, p) end
    if p.dir then support.rmdir(p.dir) end
  end
  procs = {}
end

-- ---------------------------------------------------------------------------------------------
-- Output

function _M.parse_args(argv)
  local o = {}
  for _, a in ipairs(argv or {}) do
    local k, v = a:match("^%-%-([%w%-]+)=(.*)$")
    if k then o[k] = v elseif a:match("^%-%-") then o[a:sub(3)] = true end
  end
  return o
end

-- Prints a Markdown table: headers {"a", "b"}, rows {{"1", "2"}, ...}.
function _M.print_table(headers, rows)
  local w = {}
  for i, h in ipairs(headers) do
    w[i] = #h
    for _, r in ipairs(rows) do w[i] = math.max(w[i], #tostring(r[i] or "")) end
  end
  local function line(cells)
    local t = {}
    for i = 1, #headers do
      local v = tostring(cells[i] or "")
      t[i] = v .. string.rep(" ", w[i] - #v) -- (string.format's widths stop at 99)
    end
    return "| " .. table.concat(t, " | ") .. " |"
  end
  _M.say("%s", line(headers))
  local sep = {}
  for i = 1, #headers do sep[i] = string.rep("-", w[i]) end
  _M.say("|-%s-|", table.concat(sep, "-|-"))
  for _, r in ipairs(rows) do _M.say("%s", line(r)) end
end

function _M.say(fmt, ...) io.stdout:write(string.format(fmt, ...), "\n") io.stdout:flush() end

return _M
