-- Is this server the Letta that lettash expects? Exercises, on objects of its own named
-- lettash-check-<random>, every server behaviour that lettash's workflows depend on, says for each
-- whether it holds, and deletes everything it made (after a failure, Ctrl-C or SIGTERM too).
--
-- Output, one line each (stable: scripts may parse it):
--   server <url>: Letta <version>
--   ok <check>
--   differs <check>: saw <what the server did>; lettash needs it: <what breaks>
--   differs <check>: saw <what the server did>; lettash does not depend on it: <why>
--   skipped <check>: needs <check>            (only after that check differed)
--   <N> checks: <N> ok, <N> differ[, <N> skipped]
-- With --json, one document instead: {server = {url, version}, ok, checks = [{name, ok, needed,
-- seen, lettash (when it differs), skipped (when true)}], totals = {checks, ok, differ, skipped},
-- left_on_server = [what could not be deleted]}; when it cannot run: {ok = false, error, server}.
-- Exit status: 0 when every behaviour a workflow needs holds, 1 when one differs, 2 when the check
-- could not run (a usage error, no connection, the password refused), 130 on Ctrl-C or SIGTERM.
--
-- Cleanup: what it creates is deleted by id as it goes and at the end; then a sweep deletes every
-- agent, identity, block and archive whose name starts with lettash-check- (what a run killed
-- with SIGKILL left behind; do not run two checks against one server at once).
local cli = require "letta.cli"
local letta = require "letta"
local errors = require "letta.errors"
local core = require "letta.core"
local escape = require("letta.client").escape

local json = letta.json
local type, tostring, ipairs, pairs, pcall, error, setmetatable, getmetatable, string, table, io, os =
  type, tostring, ipairs, pairs, pcall, error, setmetatable, getmetatable, string, table, io, os

local NAME = "check-server"
local PREFIX = "lettash-check-"

-- ---------------------------------------------------------------------------------------------
-- How a check ends, besides returning what it saw: it differs, it cannot run (a check it needs
-- differed), or the whole run cannot go on (no connection, password refused).

local Differ, Skip, Fatal = {}, {}, {}
Fatal.__tostring = function(f) return f.message end

-- differ(seen [, {needed =, why =}]): the behaviour is not Letta 0.16.8's. needed/why override
-- the check's own (a difference that does or does not matter, depending on what was seen).
local function differ(seen, opts)
  opts = opts or {}
  error(setmetatable({ seen = seen, needed = opts.needed, why = opts.why }, Differ), 0)
end

-- requires(value, check) -> value, or the current check is skipped: it needs what check makes.
local function requires(value, check)
  if value == nil then error(setmetatable({ needs = check }, Skip), 0) end
  return value
end

local function fatal(message) error(setmetatable({ message = message }, Fatal), 0) end

-- Ctrl-C or SIGTERM (lettash raises the letta.Error "interrupted"): the run stops, after cleanup.
local function interrupted(err) return errors.is(err, "interrupted") end

-- A URL as shown: without any user:password@ part.
local function shown(url) return (url:gsub("//[^/@]*@", "//")) end

-- The message that ends the run for an error no check can go on after, or nil.
local function fatal_message(err, c)
  if not errors.is(err) then return nil end
  if err.status == 401 then
    return c.authenticated and "the server refused the password (401 Unauthorized): check LETTA_PASSWORD or LETTA_API_KEY"
      or "the server asks for a password (401 Unauthorized): set LETTA_PASSWORD or LETTA_API_KEY"
  end
  if err.status == 0 and (err.code == "connect" or err.code == "resolve") then
    return "cannot connect to " .. shown(c.base_url) .. " (" .. tostring(err.message) .. ")"
  end
end

-- try(fn, ...) -> true, value or false, letta.Error: a call whose failure the check looks at.
-- Ctrl-C, errors that end the run and errors that are not letta.Errors go on up.
local function try(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return true, res end
  if errors.is(res) and not interrupted(res) and res.status ~= 401
     and not (res.status == 0 and (res.code == "connect" or res.code == "resolve")) then
    return false, res
  end
  error(res, 0)
end

local function said(err) return errors.is(err) and tostring(err) or cli.message(err) end

local function show(v)
  if v == nil then return "nothing" end
  local ok, text = pcall(json.encode, v)
  text = ok and text or tostring(v)
  return #text > 120 and text:sub(1, 117) .. "..." or text
end

-- The text of a message's content: a string or Letta's content parts ({type = "text", text}).
local function text_of(content)
  if type(content) == "string" then return content end
  local parts = {}
  for _, p in ipairs(type(content) == "table" and content or {}) do
    if type(p) == "table" and type(p.text) == "string" then parts[#parts + 1] = p.text end
  end
  return table.concat(parts)
end

local function has_id(list, id)
  for _, x in ipairs(type(list) == "table" and list or {}) do
    if type(x) == "table" and x.id == id then return true end
  end
  return false
end

local function has(list, v)
  for _, x in ipairs(type(list) == "table" and list or {}) do if x == v then return true end end
  return false
end

-- ---------------------------------------------------------------------------------------------
-- The run's state: the client, the names it uses, what it made (for the cleanup), and what the
-- checks pass on to later ones.

local Run = {}
Run.__index = Run

function Run.new(c, model)
  local r = core.nonce():sub(1, 8)
  return setmetatable({ c = c, r = r, tag = PREFIX .. r, want_model = model,
                        made = { passages = {}, agents = {}, blocks = {}, identities = {}, archives = {} },
                        gone = {}, left = {} }, Run)
end

-- Notes an object to delete at the end (passages: {agent =, id =}).
function Run:made_one(kind, x)
  if x ~= nil then table.insert(self.made[kind], x) end
end

function Run:messages_path() return "/v1/agents/" .. escape(self.agent.id) .. "/messages" end

-- All messages of the agent, oldest first: the unique ids in order, and the messages.
function Run:history()
  local all = self.c:get(self:messages_path(), { query = { order = "asc", limit = 1000 } })
  local ids, seen = {}, {}
  for _, m in ipairs(type(all) == "table" and all or {}) do
    if type(m) == "table" and m.id and not seen[m.id] then
      seen[m.id] = #ids + 1
      ids[#ids + 1] = m.id
    end
  end
  return ids, seen, all
end

-- One page of messages as positions in the history (#1 = oldest): {3, 4, 5}; unknown ids are 0.
function Run:page(query, index)
  local page = self.c:get(self:messages_path(), { query = query })
  local pos, seen = {}, {}
  for _, m in ipairs(type(page) == "table" and page or {}) do
    if type(m) == "table" and m.id and not seen[m.id] then
      seen[m.id] = true
      pos[#pos + 1] = index[m.id] or 0
    end
  end
  return pos
end

local function positions(pos, n)
  local t = {}
  for i, p in ipairs(pos) do t[i] = p > 0 and ("#" .. p) or "?" end
  return (#t > 0 and table.concat(t, ",") or "none") .. " of " .. n
end

-- Whether pos is first, first+1, ... (in order, no gap).
local function run_from(pos, first)
  if #pos == 0 then return false end
  for i, p in ipairs(pos) do if p ~= first + i - 1 then return false end end
  return true
end

-- Deletes one object (once: self.gone holds the paths deleted already); true when it is gone.
-- What cannot be deleted goes to self.left; a Ctrl-C is kept in self.stop and the cleanup goes on.
function Run:delete(what, id, path)
  local done = self.gone
  if done[path] then return end
  done[path] = true
  local ok, err = pcall(self.c.delete, self.c, path)
  if ok or (errors.is(err) and (err.status == 404 or err.status == 405)) then return true end -- 404: gone already
  if interrupted(err) then self.stop = err end
  self.left[#self.left + 1] = what .. " " .. id .. " (" .. said(err) .. ")"
end

-- An agent: its passages first (all ours, with any whose create a Ctrl-C cut short; they would
-- outlive the agent), then the agent.
function Run:delete_agent(id)
  local path = "/v1/agents/" .. escape(id)
  if self.gone[path] then return end
  local ok, list = pcall(self.c.get, self.c, path .. "/archival-memory", { query = { limit = 1000 } })
  if not ok and interrupted(list) then self.stop = list end
  for _, p in ipairs(ok and type(list) == "table" and list or {}) do
    if type(p) == "table" and p.id then self:delete("passage", p.id, path .. "/archival-memory/" .. escape(p.id)) end
  end
  return self:delete("agent", id, path)
end

-- The objects named PREFIX* that a list shows, added to found as {what, id, path}: listed first,
-- deleted after (deleting while paging would pull the cursor away).
function Run:sweep(found, what, path, query, name_of)
  local c = self.c
  local ok, err = pcall(function()
    for _ = 1, 100 do -- pages; a server that ignores `after` must not keep us here
      local page = c:get(path, { query = query })
      if type(page) ~= "table" or #page == 0 or page[#page].id == query.after then break end
      for _, x in ipairs(page) do
        local name = type(x) == "table" and name_of(x)
        if type(name) == "string" and name:sub(1, #PREFIX) == PREFIX and x.id then
          found[#found + 1] = { what, x.id, path .. escape(x.id) }
        end
      end
      query.after = page[#page].id
    end
  end)
  if not ok and interrupted(err) then self.stop = err end -- a list the server lacks (archives) is fine
end

-- Deletes everything made, then sweeps by name prefix. Idempotent; what cannot be deleted is
-- listed in self.left. Goes on after a Ctrl-C (raised again at the end).
function Run:cleanup()
  if self.cleaned then return end
  self.cleaned = true
  local m = self.made
  for _, p in ipairs(m.passages) do
    self:delete("passage", p.id, "/v1/agents/" .. escape(p.agent) .. "/archival-memory/" .. escape(p.id))
  end
  for _, id in ipairs(m.agents) do self:delete_agent(id) end
  for _, id in ipairs(m.blocks) do self:delete("block", id, "/v1/blocks/" .. escape(id)) end
  for _, id in ipairs(m.identities) do self:delete("identity", id, "/v1/identities/" .. escape(id)) end
  for _, id in ipairs(m.archives) do self:delete("archive", id, "/v1/archives/" .. escape(id)) end
  local found = {}
  if not self.stop then
    self:sweep(found, "agent", "/v1/agents/", { query_text = PREFIX, limit = 100 }, function(x) return x.name end)
    self:sweep(found, "block", "/v1/blocks/", { label_search = PREFIX, limit = 100 }, function(x) return x.label end)
    self:sweep(found, "identity", "/v1/identities/", { limit = 100 }, function(x) return x.identifier_key end)
    self:sweep(found, "archive", "/v1/archives/", { limit = 100 }, function(x) return x.name end)
  end
  local earlier = 0
  for _, f in ipairs(found) do
    if not self.gone[f[3]] and (f[1] == "agent" and self:delete_agent(f[2]) or f[1] ~= "agent" and self:delete(f[1], f[2], f[3])) then
      earlier = earlier + 1
    end
  end
  if earlier > 0 then
    io.stderr:write(NAME, ": also deleted ", earlier, " object", earlier == 1 and "" or "s",
                    " named ", PREFIX, "* (left by an interrupted check)\n")
  end
  if self.stop then error(self.stop, 0) end
end
Run.__close = Run.cleanup

-- ---------------------------------------------------------------------------------------------
-- The checks, in the order they run. check(name, needed, why, fn): needed says whether a lettash
-- workflow depends on the behaviour; why is what lettash does about it; fn(run) returns what it
-- saw, or calls differ(...) / requires(...).

local CHECKS = {}
local function check(name, needed, why, fn)
  CHECKS[#CHECKS + 1] = { name = name, needed = needed, why = why, fn = fn }
end

check("health", true, "needs it: doctor reads the server's state and version from GET /v1/health/", function(run)
  local h = run.health
  if type(h) ~= "table" or h.status ~= "ok" or type(h.version) ~= "string" then differ(show(h)) end
  return "status ok, version " .. h.version
end)

check("auth", false, "does not depend on it: it sends the password anyway, but anyone who reaches this server can use it",
  function(run)
    local c = run.c
    if not c.authenticated then return "no password set, and the server asks for none" end
    local anon <close> = letta.client{ base_url = c.base_url, token = "", max_retries = 0, timeout = c.timeout }
    local ok, res = pcall(anon.get, anon, "/v1/agents/", { query = { limit = 1 } }) -- (a 401 is not fatal here)
    if not ok and (not errors.is(res) or interrupted(res)) then error(res, 0) end
    if ok then differ("200 without the password (the server is not in secure mode)") end
    if res.status ~= 401 then differ(said(res) .. " without the password (Letta answers 401)") end
    return "401 without the password, 200 with it"
  end)

check("trailing-slashes", true, "needs it: it sends these exact spellings and does not follow redirects", function(run)
  for _, path in ipairs({ "/v1/agents/", "/v1/blocks/", "/v1/identities/", "/v1/runs/" }) do
    local ok, res = try(run.c.get, run.c, path, { query = { limit = 1 } })
    if not ok then differ("GET " .. path .. ": " .. said(res)) end
    if type(res) ~= "table" then differ("GET " .. path .. " answered " .. show(res) .. ", not a list") end
  end
  return "GET /v1/{agents,blocks,identities,runs}/ answer directly"
end)

check("models", true, "needs it: agents are created with a provider/name handle from GET /v1/models/", function(run)
  local list = run.c:get("/v1/models/")
  if type(list) ~= "table" or #list == 0 then differ("an empty list of models") end
  local handles = {}
  for _, m in ipairs(list) do
    if type(m) == "table" and type(m.handle) == "string" and m.handle:match("^[^/]+/.") then
      handles[#handles + 1] = m.handle
      handles[m.handle] = true
    end
  end
  if #handles == 0 then differ(#list .. " models, none with a provider/name handle") end
  -- the model as lettash's demo picks it: the one asked for (--model, else LETTA_MODEL), else the first
  local want, from = run.want_model, "--model"
  if not want then want, from = os.getenv("LETTA_MODEL"), "LETTA_MODEL" end
  if want == "" then want = nil end
  if want and not handles[want] then
    fatal(from .. " " .. want .. " is not among the " .. #handles .. " models the server lists (e.g. " .. handles[1] .. ")")
  end
  run.model = want or handles[1]
  -- and an embedding model the same way (LETTA_EMBEDDING, else the first listed), when there is one
  local ok, emb = try(run.c.get, run.c, "/v1/models/embedding")
  local want_emb = os.getenv("LETTA_EMBEDDING")
  if want_emb == "" then want_emb = nil end
  for _, m in ipairs(ok and type(emb) == "table" and emb or {}) do
    if type(m) == "table" and type(m.handle) == "string" and (m.handle == want_emb or not (want_emb or run.embedding)) then
      run.embedding = m.handle
    end
  end
  if want_emb and run.embedding ~= want_emb then
    fatal("LETTA_EMBEDDING " .. want_emb .. " is not among the embedding models the server lists")
  end
  return #list .. " models, using " .. run.model .. (run.embedding and (" with " .. run.embedding) or "")
end)

check("agent-create", true, "needs it: chat and import talk to agents made this way", function(run)
  local model = requires(run.model, "models")
  local a = run.c.agents:create{ name = run.tag, model = model, embedding = run.embedding, memory_blocks = {},
                                 tags = { "lettash-check" },
                                 description = "made by lettash scripts/check-server.lua; safe to delete" }
  run:made_one("agents", type(a) == "table" and a.id or nil)
  if type(a) ~= "table" or type(a.id) ~= "string" or not a.id:match("^agent%-") then differ(show(a)) end
  if a.name ~= run.tag then differ("name " .. show(a.name) .. " for " .. run.tag) end
  run.agent = a
  return a.id
end)

-- identities -----------------------------------------------------------------------------------

check("identity-create", true, "needs it: onboard makes each user's identity this way", function(run)
  local i = run.c.identities:create{ identifier_key = run.tag, name = run.tag, identity_type = "user" }
  run:made_one("identities", type(i) == "table" and i.id or nil)
  if type(i) ~= "table" or type(i.id) ~= "string" or not i.id:match("^identity%-") then differ(show(i)) end
  if i.identifier_key ~= run.tag then differ("identifier_key " .. show(i.identifier_key)) end
  run.identity = i
  return i.id
end)

check("identity-duplicate-key", true,
  "needs it: onboard and identities:create_or_update find an existing identity through this 409; without it they make duplicates",
  function(run)
    requires(run.identity, "identity-create")
    local ok, res = try(run.c.identities.create, run.c.identities,
                        { identifier_key = run.tag, name = run.tag, identity_type = "user" })
    if ok then
      run:made_one("identities", type(res) == "table" and res.id or nil)
      differ("200: a second identity with the same identifier_key (" .. show(type(res) == "table" and res.id) .. ")")
    end
    if res.status ~= 409 then differ(said(res) .. " (Letta answers 409)") end
    return "409"
  end)

check("identity-list-by-key", true, "needs it: onboard and offboard look an identity up by its key", function(run)
  local i = requires(run.identity, "identity-create")
  local list = run.c.identities:list{ identifier_key = run.tag, identity_type = "user" }
  if type(list) ~= "table" or #list ~= 1 or list[1].id ~= i.id then
    local ids = {}
    for _, x in ipairs(type(list) == "table" and list or {}) do ids[#ids + 1] = tostring(x.id) end
    differ(#ids .. " identities (" .. table.concat(ids, ", ") .. ") for identifier_key " .. run.tag)
  end
  return "1 identity"
end)

check("identity-modify", true, "needs it: onboard --name and identities:create_or_update change identities with PATCH",
  function(run)
    local i = requires(run.identity, "identity-create")
    local name = run.tag .. " renamed"
    local r = run.c.identities:modify(i.id, { name = name })
    if type(r) ~= "table" or r.name ~= name then differ("PATCH answered name " .. show(type(r) == "table" and r.name)) end
    local again = run.c.identities:retrieve(i.id)
    if again.name ~= name then differ("GET after PATCH shows name " .. show(again.name)) end
    return "renamed"
  end)

check("identity-upsert-new-key", false,
  "does not depend on it: it creates identities with POST and updates them with PATCH (identities:create_or_update)",
  function(run)
    local key = run.tag .. "-upsert"
    local ok, res = try(run.c.put, run.c, "/v1/identities/", { body = { identifier_key = key, name = key, identity_type = "user" } })
    if ok then
      local id = type(res) == "table" and res.id or nil
      run:made_one("identities", id)
      differ("200: PUT /v1/identities/ created " .. show(id) .. " for a new key (Letta 0.16.8 answers 404)")
    end
    if res.status ~= 404 then differ(said(res) .. " (Letta 0.16.8 answers 404)") end
    return "404"
  end)

-- blocks ---------------------------------------------------------------------------------------

check("block-create", true,
  "needs it: onboard makes each persona block this way, and finds one an interrupted run made by its metadata",
  function(run)
    local b = run.c.blocks:create{ label = run.tag, value = "lettash check: first value",
                                   description = "made by lettash scripts/check-server.lua; safe to delete",
                                   metadata = { lettash_check = run.r } }
    run:made_one("blocks", type(b) == "table" and b.id or nil)
    if type(b) ~= "table" or type(b.id) ~= "string" or not b.id:match("^block%-") then differ(show(b)) end
    if b.label ~= run.tag or b.value ~= "lettash check: first value" then
      differ("label " .. show(b.label) .. ", value " .. show(b.value))
    end
    if type(b.metadata) ~= "table" or b.metadata.lettash_check ~= run.r then differ("metadata " .. show(b.metadata)) end
    run.block = b
    return b.id
  end)

check("block-retrieve", true, "needs it: chat and doctor read blocks by id", function(run)
  local b = requires(run.block, "block-create")
  local got = run.c.blocks:retrieve(b.id)
  if got.id ~= b.id or got.value ~= b.value or got.label ~= b.label then differ(show(got)) end
  return "same block"
end)

check("block-modify", true, "needs it: chat keeps the conversation history in the persona block", function(run)
  local b = requires(run.block, "block-create")
  local value = "lettash check: second value"
  local r = run.c.blocks:modify(b.id, { value = value })
  if type(r) ~= "table" or r.value ~= value then differ("PATCH answered value " .. show(type(r) == "table" and r.value)) end
  local got = run.c.blocks:retrieve(b.id)
  if got.value ~= value then differ("GET after PATCH shows value " .. show(got.value)) end
  return "value changed"
end)

check("block-list-by-label", true, "needs it: onboard's recovery sweep lists blocks by label", function(run)
  local b = requires(run.block, "block-create")
  local list = run.c.blocks:list{ label = run.tag }
  if not has_id(list, b.id) then differ("GET /v1/blocks/?label=" .. run.tag .. " without the block (" .. show(list) .. ")") end
  return "listed"
end)

check("block-identity-attach", true, "needs it: onboard links the persona block to the user's identity", function(run)
  local b, i = requires(run.block, "block-create"), requires(run.identity, "identity-create")
  run.c.blocks.identities:attach(b.id, i.id)
  run.linked = true
  return "linked"
end)

check("identity-blocks", true, "needs it: onboard finds a user's persona block through it when the local store lost it",
  function(run)
    requires(run.linked, "block-identity-attach")
    local list = run.c.identities:blocks(run.identity.id)
    if not has_id(list, run.block.id) then differ("GET /v1/identities/{id}/blocks without the linked block (" .. show(list) .. ")") end
    return "lists the linked block"
  end)

check("identity-block-ids", false, "does not depend on it: it reads links through GET /v1/identities/{id}/blocks only",
  function(run)
    requires(run.linked, "block-identity-attach")
    local i = run.c.identities:retrieve(run.identity.id)
    if type(i.block_ids) ~= "table" or #i.block_ids > 0 then
      differ("block_ids " .. show(i.block_ids) .. " (Letta 0.16.8 always answers [])")
    end
    return "[] (as on Letta 0.16.8)"
  end)

-- blocks on an agent ---------------------------------------------------------------------------

local NOT_AGAIN = { safe = false } -- one request per call: the check looks at each answer

check("block-attach", true, "needs it: chat attaches the user's persona block for each send", function(run)
  local a, b = requires(run.agent, "agent-create"), requires(run.block, "block-create")
  run.c.agents.blocks:attach(a.id, b.id, NOT_AGAIN)
  local got = run.c.agents.blocks:retrieve(a.id, b.label)
  if got.id ~= b.id then differ("core-memory block " .. b.label .. " is " .. show(got.id)) end
  run.attached = true
  return "attached"
end)

check("block-attach-idempotent", true, "needs it: chat attaches again after an answer it did not get", function(run)
  requires(run.attached, "block-attach")
  local a, b = run.agent, run.block
  local ok, res = try(run.c.agents.blocks.attach, run.c.agents.blocks, a.id, b.id, NOT_AGAIN)
  if not ok then differ("the second attach: " .. said(res)) end
  local n = 0
  for _, x in ipairs(run.c.agents.blocks:list(a.id) or {}) do if x.id == b.id then n = n + 1 end end
  if n ~= 1 then differ("the block " .. n .. " times on the agent") end
  return "200, attached once"
end)

check("block-attach-label-clash", false,
  "does not depend on it: chat detaches any other persona block from the agent before it sends",
  function(run)
    requires(run.attached, "block-attach")
    local b2 = run.c.blocks:create{ label = run.tag, value = "lettash check: same label" }
    run:made_one("blocks", b2.id)
    local ok, res = try(run.c.agents.blocks.attach, run.c.agents.blocks, run.agent.id, b2.id, NOT_AGAIN)
    if ok then differ("200: a second block labelled " .. run.tag .. " attached (Letta answers 409)") end
    if res.status ~= 409 then differ(said(res) .. " (Letta answers 409)") end
    return "409"
  end)

check("block-detach", true, "needs it: chat detaches the persona block after every send", function(run)
  requires(run.attached, "block-attach")
  local a, b = run.agent, run.block
  run.c.agents.blocks:detach(a.id, b.id, NOT_AGAIN)
  if has_id(run.c.agents.blocks:list(a.id), b.id) then differ("the block still on the agent after detach") end
  run.detached = true
  return "detached"
end)

check("block-detach-not-attached", false, "does not depend on it: a 404 and a 200 both mean detached to it",
  function(run)
    requires(run.detached, "block-detach")
    local ok, res = try(run.c.agents.blocks.detach, run.c.agents.blocks, run.agent.id, run.block.id, NOT_AGAIN)
    if ok then differ("200 (Letta answers 404)") end
    if res.status ~= 404 then
      differ(said(res) .. " (Letta answers 404)",
             { needed = true, why = "needs a 404 or a 200 here: chat's detach after a send fails otherwise" })
    end
    return "404"
  end)

-- messages -------------------------------------------------------------------------------------

local function say(run, n) return run.tag .. " message " .. n .. ": please answer with one word." end
local function sender(run) return run.identity and run.identity.id or nil end

check("message-send", true, "needs it: chat sends this way", function(run)
  local a = requires(run.agent, "agent-create")
  local r = run.c.agents.messages:create(a.id, { text = say(run, 1), sender_id = sender(run) })
  if type(r) ~= "table" or type(r.messages) ~= "table" then differ("no messages in " .. show(r)) end
  if type(r.stop_reason) ~= "table" or r.stop_reason.message_type ~= "stop_reason" then
    differ("no stop_reason (" .. show(r.stop_reason) .. ")")
  end
  run.sent = true
  return #r.messages .. " messages, stop_reason " .. tostring(r.stop_reason.stop_reason)
end)

check("message-sender-id", true, "needs it: chat sends each message as the user's identity (sender_id)", function(run)
  requires(run.sent, "message-send")
  local i = requires(run.identity, "identity-create")
  local _, _, all = run:history()
  for _, m in ipairs(type(all) == "table" and all or {}) do
    if m.message_type == "user_message" and text_of(m.content):find(say(run, 1), 1, true) then
      if m.sender_id ~= i.id then differ("sender_id " .. show(m.sender_id) .. " on the user message") end
      return "sender_id on the user message"
    end
  end
  differ("no user_message with the text sent in the agent's messages")
end)

check("message-stream", true, "needs it: chat --stream reads replies from POST /v1/agents/{id}/messages/stream", function(run)
  local a = requires(run.agent, "agent-create")
  local n = 0
  local r = run.c.agents.messages:stream(a.id, { text = say(run, 2), sender_id = sender(run) }, function() n = n + 1 end)
  if #r.messages == 0 then differ(n .. " events, none a message") end
  if type(r.stop_reason) ~= "table" then differ(n .. " events, no stop_reason") end
  run.streamed = true
  return n .. " events, stop_reason " .. tostring(r.stop_reason.stop_reason)
end)

check("run-async", true, "needs it: messages:create_async and runs:wait", function(run)
  local a = requires(run.agent, "agent-create")
  local r = run.c.agents.messages:create_async(a.id, { text = say(run, 3), sender_id = sender(run) })
  if type(r) ~= "table" or type(r.id) ~= "string" then differ(show(r)) end
  local first = tostring(r.status)
  local ok, done = try(run.c.runs.wait, run.c.runs, r.id, { timeout = 300, interval = 0.5 })
  if not ok then differ(first .. ", then " .. said(done)) end
  if done.status ~= "completed" then
    differ(first .. " -> " .. tostring(done.status) .. (done.metadata and done.metadata.error and (": " .. show(done.metadata.error)) or ""))
  end
  local msgs = run.c.runs:messages(r.id)
  if type(msgs) ~= "table" or #msgs == 0 then differ(first .. " -> completed, but GET /v1/runs/{id}/messages is empty") end
  run.ran = true
  return first .. " -> completed, " .. #msgs .. " messages"
end)

-- Message paging, seen as positions in the agent's history (#1 = the oldest message).
local function history_in_order(run)
  requires(run.sent, "message-send")
  local ids, index, all = run:history()
  -- our messages must come in the order they were sent: then order=asc is oldest first
  local last = 0
  for n = 1, 3 do
    for _, m in ipairs(all) do
      if m.message_type == "user_message" and text_of(m.content):find(say(run, n), 1, true) then
        if index[m.id] < last then differ("order=asc does not list the oldest first") end
        last = index[m.id]
      end
    end
  end
  requires(#ids >= 4 or nil, "message-stream") -- a history long enough to page through
  return ids, index
end

check("messages-newest-page", true,
  "needs it: messages:list and :each start from the newest page, oldest first, as Letta 0.16.8 sends it",
  function(run)
    local ids, index = history_in_order(run)
    local pos = run:page({ order = "desc", limit = 3 }, index)
    if not (run_from(pos, pos[1] or 0) and pos[#pos] == #ids) then
      differ("order=desc&limit=3 gave " .. positions(pos, #ids) .. " (Letta: the newest, oldest first: e.g. #"
             .. (#ids - 2) .. ",#" .. (#ids - 1) .. ",#" .. #ids .. ")")
    end
    return "order=desc&limit=3 gave " .. positions(pos, #ids)
  end)

check("messages-before", true, "needs it: messages:each walks back through the history with before", function(run)
  local ids, index = history_in_order(run)
  local at = #ids - 1
  local pos = run:page({ before = ids[at], order = "desc", limit = 2 }, index)
  if not (run_from(pos, pos[1] or 0) and pos[#pos] == at - 1) then
    differ("before=#" .. at .. "&order=desc&limit=2 gave " .. positions(pos, #ids)
           .. " (Letta: the 2 just before it, oldest first: #" .. (at - 2) .. ",#" .. (at - 1) .. ")")
  end
  return "before=#" .. at .. " gave " .. positions(pos, #ids)
end)

check("messages-after", true, "needs it: messages:each{after =, order = \"asc\"} reads what came after a message",
  function(run)
    local ids, index = history_in_order(run)
    local pos = run:page({ after = ids[1], order = "asc", limit = 3 }, index)
    if not run_from(pos, 2) then
      differ("after=#1&order=asc&limit=3 gave " .. positions(pos, #ids) .. " (Letta: #2,#3,#4)")
    end
    return "after=#1 gave " .. positions(pos, #ids)
  end)

-- archival memory ------------------------------------------------------------------------------

local function passage_text(run, which) return run.tag .. " passage " .. which .. ": lettash checks archival memory" end

check("passage-create", true, "needs it: import writes each line as a passage with tags", function(run)
  local a = requires(run.agent, "agent-create")
  run.passages = {}
  for _, which in ipairs({ "a", "b" }) do
    local tag = run.tag .. "-" .. which
    local r = run.c.agents.passages:create(a.id, { text = passage_text(run, which), tags = { tag } })
    local p = type(r) == "table" and r[1] or nil
    if type(p) == "table" and p.id then
      run:made_one("passages", { agent = a.id, id = p.id })
      if p.archive_id and p.archive_id ~= json.null and not has(run.made.archives, p.archive_id) then
        run:made_one("archives", p.archive_id)
      end
    end
    if type(r) ~= "table" or #r ~= 1 or type(p) ~= "table" or type(p.id) ~= "string" then
      differ(show(r) .. " (Letta answers an array of one passage)")
    end
    if p.text ~= passage_text(run, which) or not has(p.tags, tag) then differ("text " .. show(p.text) .. ", tags " .. show(p.tags)) end
    run.passages[which] = p
  end
  return "2 passages"
end)

check("passage-batch", false,
      "does not depend on it: import then sends one passage per request (as with --batch 1), each embedded alone",
      function(run)
  local p = requires(run.passages, "passage-create")
  local archive = p.a.archive_id
  if type(archive) ~= "string" then differ("the passage names no archive (archive_id " .. show(archive) .. ")") end
  local ok, list = try(run.c.archives.list, run.c.archives, { agent_id = run.agent.id })
  if not ok then differ("GET /v1/archives/?agent_id=: " .. said(list)) end
  if not has_id(list, archive) then differ("the agent's archive not listed by GET /v1/archives/?agent_id= (" .. show(list) .. ")") end
  local tag = run.tag .. "-batch"
  local made
  ok, made = try(run.c.archives.passages.create_many, run.c.archives.passages, archive,
                 { { text = passage_text(run, "c"), tags = { tag } }, { text = passage_text(run, "d"), tags = { tag } } })
  if not ok then
    differ(said(made) .. (made.status == 405 and " (Letta before 0.16.4 has no batch route)" or ""))
  end
  for _, x in ipairs(type(made) == "table" and made or {}) do
    if type(x) == "table" and x.id then run:made_one("passages", { agent = run.agent.id, id = x.id }) end
  end
  if #made ~= 2 or not (has(made[1].tags, tag) and made[1].archive_id == archive) then
    differ(show(made) .. " (Letta answers the 2 passages, in the archive)")
  end
  return "2 passages in one request to the agent's archive"
end)

check("passage-list", true, "needs it: passages:list and :each", function(run)
  local p = requires(run.passages, "passage-create")
  local list = run.c.agents.passages:list(run.agent.id)
  if not (has_id(list, p.a.id) and has_id(list, p.b.id)) then differ("the list without the passages (" .. show(list) .. ")") end
  return "both listed"
end)

check("passage-search-tags", true,
  "needs it: import finds the passage of a line after an ambiguous failure by searching with its tag",
  function(run)
    local p = requires(run.passages, "passage-create")
    local r = run.c.agents.passages:search(run.agent.id, { query = passage_text(run, "a"), tags = { run.tag .. "-a" } })
    local results = type(r) == "table" and r.results
    if type(results) ~= "table" then differ(show(r)) end
    local found
    for _, x in ipairs(results) do
      if x.id == p.b.id then differ("the passage without the tag among the results") end
      if x.id == p.a.id then found = x end
    end
    if not found then differ(#results .. " results, not the tagged passage") end
    if not has(found.tags, run.tag .. "-a") then differ("the result's tags " .. show(found.tags)) end
    return #results .. " result" .. (#results == 1 and "" or "s") .. ", the tagged passage"
  end)

check("passage-delete", true, "needs it: import deletes a duplicate passage after a retry", function(run)
  local p = requires(run.passages, "passage-create")
  local function delete(x)
    run.c.agents.passages:delete(run.agent.id, x.id)
    run.gone["/v1/agents/" .. escape(run.agent.id) .. "/archival-memory/" .. escape(x.id)] = true
  end
  delete(p.a)
  local list = run.c.agents.passages:list(run.agent.id)
  if has_id(list, p.a.id) then differ("the passage still listed after DELETE") end
  if not has_id(list, p.b.id) then differ("the other passage gone too") end
  delete(p.b) -- (passages outlive their agent on Letta 0.16.8)
  return "deleted"
end)

-- deletes --------------------------------------------------------------------------------------

-- Deletes by id and makes sure it is gone: GET answers 404.
local function delete_check(run, what, resource, id, path)
  resource:delete(id)
  run.gone[path .. escape(id)] = true
  local ok, res = try(resource.retrieve, resource, id)
  if ok then differ("the " .. what .. " still there after DELETE") end
  if res.status ~= 404 then differ("GET after DELETE: " .. said(res)) end
  return "deleted, then 404"
end

check("block-delete", true, "needs it: offboard deletes the persona block", function(run)
  return delete_check(run, "block", run.c.blocks, requires(run.block, "block-create").id, "/v1/blocks/")
end)

check("identity-delete", true, "needs it: offboard deletes the identity", function(run)
  return delete_check(run, "identity", run.c.identities, requires(run.identity, "identity-create").id, "/v1/identities/")
end)

check("agent-delete", true, "needs it: the demo deletes the agent it made", function(run)
  return delete_check(run, "agent", run.c.agents, requires(run.agent, "agent-create").id, "/v1/agents/")
end)

-- ---------------------------------------------------------------------------------------------

-- Runs one check: a result {name=, ok=, needed=, seen=, lettash=, skipped=}.
local function run_check(run, chk)
  local ok, res = pcall(chk.fn, run)
  local r = { name = chk.name, needed = chk.needed }
  if ok then
    r.ok, r.seen = true, type(res) == "string" and res or "as expected"
    return r
  end
  local mt = getmetatable(res)
  r.ok = false
  if mt == Differ then
    r.seen, r.lettash = res.seen, res.why or chk.why
    if res.needed ~= nil then r.needed = res.needed end
  elseif mt == Skip then
    r.skipped, r.seen = true, "not run: needs " .. res.needs
  elseif mt == Fatal or interrupted(res) then
    error(res, 0)
  else
    local message = fatal_message(res, run.c)
    if message then fatal(message) end
    r.seen, r.lettash = said(res), chk.why
  end
  return r
end

local function line(r)
  if r.ok then return "ok " .. r.name end
  if r.skipped then return "skipped " .. r.name .. ": " .. r.seen:gsub("^not run: ", "") end
  return "differs " .. r.name .. ": saw " .. r.seen .. "; lettash " .. r.lettash
end

local SPEC = {
  name = NAME,
  usage = "[--model HANDLE] [--json]",
  summary = "Check that the Letta server (LETTA_BASE_URL) behaves as lettash expects (Letta 0.16.8): auth,\n"
    .. "paths, models, agents, identities, blocks and attachments, messages (sender, stream, async run,\n"
    .. "paging), archival memory. It works on objects of its own named lettash-check-<random> and\n"
    .. "deletes them all at the end (also after a failure, Ctrl-C or SIGTERM). One line per behaviour.",
  notes = "Output: 'ok <check>', or 'differs <check>: saw <what>; lettash needs it: <what breaks>' (or\n"
    .. "'lettash does not depend on it: <why>'), then '<N> checks: <N> ok, <N> differ'.\n"
    .. "The agent it makes gets the model --model, else LETTA_MODEL, else the first GET /v1/models/\n"
    .. "lists (and LETTA_EMBEDDING, else the first embedding model listed). It sends it three\n"
    .. "messages: on a real server, a few LLM calls.\n"
    .. "Exit status: 0 when every behaviour a workflow needs holds, 1 when one differs, 2 when the\n"
    .. "check could not run (usage, no connection, password refused), 130 on Ctrl-C or SIGTERM.",
  options = { { "model", arg = "HANDLE", help = "the model of the agent it makes (default: LETTA_MODEL, else the first listed)" } },
  args = { max = 0 },
  error_status = 2, -- 1 means "a behaviour lettash needs differs"
}

SPEC.run = function(cx)
  local c = cx:client()
  local run <close> = Run.new(c, cx.opts.model)
  local results, url = {}, shown(c.base_url)
  local function out(text)
    if not cx.json then
      io.stdout:write(text, "\n")
      io.stdout:flush()
    end
  end
  local ok, err = pcall(function()
    local hok, h = pcall(c.get, c, "/v1/health/")
    if not hok then
      if interrupted(h) then error(h, 0) end
      fatal(fatal_message(h, c) or ("no Letta server at " .. url .. " (" .. said(h) .. ")"))
    end
    run.health = h
    out("server " .. url .. ": Letta " .. tostring(type(h) == "table" and h.version or "?"))
    -- the password first: a refused one ends the run before anything is made
    local pok, perr = pcall(c.get, c, "/v1/agents/", { query = { limit = 1 } })
    if not pok and interrupted(perr) then error(perr, 0) end
    if not pok and fatal_message(perr, c) then fatal(fatal_message(perr, c)) end
    for _, chk in ipairs(CHECKS) do
      local r = run_check(run, chk)
      results[#results + 1] = r
      out(line(r))
    end
  end)
  local cok, cerr = pcall(run.cleanup, run)
  for _, l in ipairs(run.left) do io.stderr:write(NAME, ": could not delete ", l, "\n") end
  if not ok and interrupted(err) then error(err, 0) end
  if not cok then error(cerr, 0) end -- only Ctrl-C stops the cleanup
  if not ok then -- the run could not go on: one line, exit 2
    io.stderr:write(NAME, ": ", getmetatable(err) == Fatal and err.message or cli.message(err), "\n")
    return { ok = false, error = getmetatable(err) == Fatal and err.message or cli.message(err), server = { url = url } }, {}, 2
  end
  local totals, needed = { checks = #results, ok = 0, differ = 0, skipped = 0 }, false
  for _, r in ipairs(results) do
    if r.ok then totals.ok = totals.ok + 1
    elseif r.skipped then totals.skipped = totals.skipped + 1
    else
      totals.differ = totals.differ + 1
      needed = needed or r.needed
    end
  end
  out(string.format("%d checks: %d ok, %d differ%s", totals.checks, totals.ok, totals.differ,
                    totals.skipped > 0 and (", " .. totals.skipped .. " skipped") or ""))
  local result = { server = { url = url, version = type(run.health) == "table" and run.health.version or nil },
                   ok = not needed, checks = cli.array(results), totals = totals, left_on_server = cli.array(run.left) }
  return result, {}, needed and 1 or 0
end

cli.main(SPEC)
