-- doctor: the server, the credentials and the store; every cached identity and block checked by
-- id (never by listing); attachments left by killed chats; stale leases; interrupted onboardings,
-- offboardings and imports. With fix, heals what it can.
local errors = require "letta.errors"
local core = require "letta.core"
local base = require "letta.users.base"
local records = require "letta.users.records"

local type, error, pcall, ipairs, tostring, string, setmetatable =
  type, error, pcall, ipairs, tostring, string, setmetatable

local Users, unless_missing = base.Users, base.unless_missing

-- What to check when the server, or its answer to our credentials, failed: --fix cannot help.
local function setup_hint(c, err)
  local code, status = errors.is(err) and err.code, errors.is(err) and err.status or 0
  if status == 401 or status == 403 then
    return c.authenticated and "check LETTA_PASSWORD (or LETTA_API_KEY): the server refused it"
      or "set LETTA_PASSWORD (or LETTA_API_KEY): the server wants one"
  elseif code == "tls" then
    return "the TLS connection failed: for a self-signed server, point LETTA_CA_FILE (or the ca_file setting) at its certificate"
  elseif code == "resolve" then
    return "check the host name in LETTA_BASE_URL (or the base_url setting)"
  elseif code == "connect" or code == "timeout" then
    return "is the Letta server running at " .. c.base_url .. "? check LETTA_BASE_URL (or the base_url setting) and its port"
  end
  return "check the Letta server at " .. c.base_url
end

-- Interrupted imports, as letta.import reports them ({agent_id=, source=, pending=, command=}),
-- or {} when this letta.import cannot say.
local function interrupted_imports(store)
  local ok, list = pcall(function() return require("letta.import").interrupted(store) end)
  if not ok and errors.is(list, "interrupted") then error(list, 0) end
  return ok and type(list) == "table" and list or {}
end

-- A report being written: report:check(name, fn) runs one check; report:problem(...) notes one
-- problem (and fixes it when asked to).
local Report = {}
Report.__index = Report

local function new_report(c, fix)
  return setmetatable({ c = c, fix = fix, checks = {}, problems = {},
    counts = { users = 0, identities = 0, blocks = 0, attachments = 0, leases = 0, imports = 0 } }, Report)
end

function Report:check(name, fn)
  local ok, detail = pcall(fn)
  if not ok and errors.is(detail, "interrupted") then error(detail, 0) end -- Ctrl-C is not a finding
  local ch = { name = name, ok = ok, detail = ok and detail or tostring(detail) }
  if not ok then ch.hint = setup_hint(self.c, detail) end
  self.checks[#self.checks + 1] = ch
  return ok
end

function Report:problem(kind, username, detail, fixer, hint)
  local p = { kind = kind, username = username, detail = detail, fixed = false, fixable = fixer ~= nil, hint = hint }
  if self.fix and fixer then
    local ok, err = pcall(fixer)
    if not ok and errors.is(err, "interrupted") then error(err, 0) end
    p.fixed = ok
    if not ok then p.detail = detail .. " (fix failed: " .. tostring(err) .. ")" end
  end
  self.problems[#self.problems + 1] = p
end

-- The setup: server, configuration, credentials, store. Returns whether the credentials were
-- accepted (the other checks need the server).
local function check_setup(self, r)
  local c = self.client
  -- (whether the server behaves as lettash expects, beyond its version: scripts/check-server.lua)
  local server_ok = r:check("server", function()
    local h = c.health:check()
    return c.base_url .. " (Letta " .. tostring(h.version) .. "; check its behaviour with bin/lettash scripts/check-server.lua)"
  end)
  r:check("configuration", function()
    return string.format("base_url %s, token %s, store %s", c.base_url, c.authenticated and "set" or "not set", self.store.path)
  end)
  local creds_ok = server_ok and r:check("credentials", function()
    c.identities:list{ limit = 1 }
    return "accepted"
  end)
  r:check("store", function()
    local info = self.store:info()
    return string.format("%s (%d users, %d KiB used)", self.store.path, #self:list(), info.used // 1024)
  end)
  return creds_ok
end

-- Whether attachment e ({agent_id=, block_id=, a=}) is a leftover: its chat is gone (an attach
-- that went unanswered is watched a while, and only a leftover once it is seen on the agent).
local function leftover(c, e)
  local stale = not core.alive(e.a.pid or 0) or e.a.pid == core.pid()
  if stale and records.still_watched(e.a) and base.is_agent_id(e.agent_id) then
    stale = false
    for _, b in ipairs(unless_missing(c.agents.blocks.list, c.agents.blocks, e.agent_id) or {}) do
      if b.id == e.block_id then stale = true end
    end
  end
  return stale
end

-- Leftover attachments (a chat killed between attach and detach).
local function check_attachments(self, r)
  for _, e in ipairs(self.store:read(records.attachments)) do
    r.counts.attachments = r.counts.attachments + 1
    if leftover(self.client, e) then
      local agent_id = e.agent_id
      r:problem("leftover_attachment", e.a.username,
                string.format("%s still recorded as attached to %s (chat process %s is gone)", e.block_id, agent_id, tostring(e.a.pid)),
                function()
                  local me = self:acquire(agent_id, 30)
                  local ok, err = pcall(self.repair_agent, self, agent_id, {})
                  self:release(agent_id, me)
                  if not ok then error(err, 0) end
                end)
    end
  end
end

-- Every cached user, checked by id.
local function check_users(self, r)
  local c = self.client
  for _, rec in ipairs(self:list()) do
    local name = rec.username
    local function onboard() self:onboard(name) end
    r.counts.users = r.counts.users + 1
    if rec.offboarding then
      r:problem("interrupted_offboard", name, "offboarding was interrupted", function() self:offboard(name) end)
    elseif rec.pending_block or not rec.onboarded then
      r:problem("interrupted_onboard", name, "onboarding was interrupted", onboard)
    else
      local identity = rec.identity_id and unless_missing(c.identities.retrieve, c.identities, rec.identity_id)
      local block = rec.block_id and unless_missing(c.blocks.retrieve, c.blocks, rec.block_id)
      r.counts.identities, r.counts.blocks = r.counts.identities + 1, r.counts.blocks + 1
      if not identity then
        r:problem("identity_missing", name, "identity " .. tostring(rec.identity_id) .. " is gone from the server", onboard)
      end
      if not block then
        r:problem("block_missing", name, "persona block " .. tostring(rec.block_id) .. " is gone from the server", onboard)
      end
    end
  end
end

-- Stale leases, and interrupted imports (only their own rerun finishes them: doctor does not send
-- passages).
local function check_leases_and_imports(self, r)
  for _, e in ipairs(self.store:read(records.leases)) do
    r.counts.leases = r.counts.leases + 1
    if not core.alive(e.l.pid or 0) then
      r:problem("stale_lease", nil, "lease on " .. e.key .. " held by process " .. tostring(e.l.pid) .. ", which is gone",
                function() self.store:update(function(txn) records.del_lease(txn, e.key) end) end)
    end
  end
  for _, imp in ipairs(interrupted_imports(self.store)) do
    r.counts.imports = r.counts.imports + 1
    r:problem("interrupted_import", nil,
              string.format("import of %s into %s was interrupted (%s pending): resume it with %s",
                            tostring(imp.source), tostring(imp.agent_id), tostring(imp.pending or "?"), tostring(imp.command)),
              nil, imp.command)
  end
end

-- doctor({fix=}) -> {ok=, checks=, problems=, counts=}. A failed check carries a hint (what to set:
-- --fix cannot help there); a problem fix cannot heal carries one too (the command that finishes
-- it). counts: how much was checked.
function Users:doctor(opts)
  local r = new_report(self.client, (opts or {}).fix)
  local report = { checks = r.checks, problems = r.problems }
  if not check_setup(self, r) then
    report.ok = false
    return report
  end
  check_attachments(self, r)
  check_users(self, r)
  check_leases_and_imports(self, r)
  report.counts = r.counts
  report.ok = true
  for _, ch in ipairs(report.checks) do report.ok = report.ok and ch.ok end
  for _, p in ipairs(report.problems) do report.ok = report.ok and p.fixed end
  return report
end
