-- The local store: an LMDB file next to the user's data, holding what must never be looked up on
-- the server by listing (user records with their identity and persona block ids), the admin
-- settings, and the journals that make the workflows crash-safe. Records are JSON; keys are
-- strings; every namespace is an LMDB database. Safe across processes (LMDB's own locking).
local lmdb = require "letta.lmdb"
local json = require "letta.json"
local errors = require "letta.errors"
local loop = require "letta.loop"
local retry = require "letta.retry"

local type, error, pcall, pairs, ipairs, setmetatable, tostring, os, string, table, math =
  type, error, pcall, pairs, ipairs, setmetatable, tostring, os, string, table, math

local _M = {}

-- The namespaces every store has (LMDB needs them opened up front).
_M.NAMESPACES = { "users", "by_identity", "by_block", "settings", "attachments", "leases", "journal", "imports" }

local Store = { __name = "letta.store" }
Store.__index = Store
local Txn = { __name = "letta.store.Transaction" }
Txn.__index = Txn

-- Where the store lives: LETTA_STORE, else $XDG_DATA_HOME/lettash/store, else
-- ~/.local/share/lettash/store.
function _M.default_path()
  local p = os.getenv("LETTA_STORE")
  if p and p ~= "" then return p end
  local data = os.getenv("XDG_DATA_HOME")
  if not data or data == "" then data = (os.getenv("HOME") or ".") .. "/.local/share" end
  return data .. "/lettash/store"
end

-- store.open([path], {map_size = 1 MiB}) -> store. The map grows by itself when full.
function _M.open(path, opts)
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #1 to 'open' (string expected, got " .. type(path) .. ")", 2)
  end
  path = path or _M.default_path()
  opts = opts or {}
  local env = lmdb.open(path, { map_size = opts.map_size or 1024 * 1024, namespaces = _M.NAMESPACES })
  return setmetatable({ path = path, env = env }, Store)
end

function Store:__tostring() return "letta.store (" .. self.path .. ")" end

-- Idempotent; aborts open transactions.
function Store:close() self.env:close() end
Store.__close = Store.close

-- ---------------------------------------------------------------------------------------------
-- Transactions

-- store:begin(write) -> transaction; close it (or use <close>): uncommitted means aborted.
function Store:begin(write)
  return setmetatable({ t = self.env:begin(write and true or false), path = self.path, full = false }, Txn)
end

-- The error of a store whose map is full (code "map_full"): update grows the map and runs its
-- function again; raised as it is when growing did not help.
local function full_error(path)
  return errors.new{ status = 0, code = "map_full", module = "letta.store", retryable = false,
                     message = "no room left in " .. path .. " (its map could not grow enough)" }
end

-- What the binding's put and commit return: their result, or on a full map (nil, message,
-- "map_full") the map_full error, raised at the caller of put/insert/commit. The transaction
-- remembers it, so that a function that caught the error still cannot commit.
local function written(txn, ok, _, code)
  if ok == nil and code == "map_full" then
    txn.full = true
    error(full_error(txn.path), 3)
  end
  return ok
end

function Txn:get(ns, key)
  local raw = self.t:get(ns, key)
  if raw == nil then return nil end
  return json.decode(raw)
end

local function encode(value)
  if value == nil then error("bad argument #3 to 'put' (value expected)", 3) end
  return json.encode(value)
end

function Txn:put(ns, key, value) return written(self, self.t:put(ns, key, encode(value))) end

-- txn:insert(ns, key, value) -> true, or false when the key already exists (nothing written).
function Txn:insert(ns, key, value) return written(self, self.t:put(ns, key, encode(value), true)) end

function Txn:del(ns, key) return self.t:del(ns, key) end

-- txn:each(ns [, prefix]) -> iterator of key, record in key order.
function Txn:each(ns, prefix)
  local t, last = self.t, nil
  return function()
    local k, v = t:next(ns, prefix or "", last)
    if k == nil then return nil end
    last = k
    return k, json.decode(v)
  end
end

function Txn:commit()
  if self.full then error(full_error(self.path), 2) end
  written(self, self.t:commit())
end
function Txn:abort() self.t:abort() end
Txn.close = Txn.abort
Txn.__close = Txn.abort

-- A transaction's function runs unyielding (letta.loop): a yield, a request awaited, a sleep or
-- any other wait inside it raises this, and the transaction is aborted. Otherwise a task waiting
-- on the network would hold LMDB's write lock (other tasks' and processes' writers would wait or
-- fail), or a read snapshot that keeps old pages alive.
_M.NO_YIELD = "store transaction cannot yield"

-- store:read(fn) -> fn(txn)'s results, in a read transaction (a consistent snapshot).
-- fn(txn) as a transaction's function: from C (txn:call), so that a plain yield cannot leave it,
-- and unyielding, so that the loop's waits raise before they leave any trace.
local function run(fn, txn)
  return loop.unyielding(_M.NO_YIELD, txn.t.call, txn.t, fn, txn, _M.NO_YIELD)
end

function Store:read(fn)
  local txn <close> = self:begin(false)
  return run(fn, txn)
end

-- store:get(ns, key) -> the record, in a read transaction of its own. (Not through read: only
-- this code runs inside it, which cannot yield, so it needs neither a function nor the guard.)
function Store:get(ns, key)
  local txn <close> = self:begin(false)
  return txn:get(ns, key)
end

-- One try of update: fn's results once committed.
local function update_once(self, fn)
  local txn <close> = self:begin(true)
  local results = table.pack(run(fn, txn))
  txn:commit()
  return table.unpack(results, 1, results.n)
end

local function is_full(e) return errors.is(e, "map_full") end

-- store:update(fn) -> fn(txn)'s results. Commits when fn returns, aborts when it raises. When the
-- map is full, grows it and runs fn again (fn must only touch the store: it cannot wait anyway),
-- and raises the map_full error when growing did not help.
function Store:update(fn)
  -- the map doubles before each new try, 16 times at most; no wait between tries
  return retry.call(function() return update_once(self, fn) end, {
    attempts = 17, base = 0, when = is_full, before_retry = function() self.env:grow(2) end,
  })
end

function Store:info() return self.env:info() end

-- store:count(ns [, prefix]) -> how many keys the namespace holds (with that prefix).
function Store:count(ns, prefix)
  return self:read(function(txn)
    local n = 0
    for _ in txn:each(ns, prefix) do n = n + 1 end
    return n
  end)
end

-- store:durable(false) makes commits skip the wait for the disk (for bulk journals: a killed
-- process still loses nothing); store:durable(true) flushes and restores durable commits.
function Store:durable(on) self.env:sync(on and true or false) end

-- store:trim() drops the store's pages from this process's resident memory (they stay in the OS's
-- cache). Bulk journals call it now and then, so that resident memory does not grow with the file.
function Store:trim() self.env:trim() end

-- ---------------------------------------------------------------------------------------------
-- User records: keyed by username, with reverse lookups identity -> user and block -> user.

local function now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

function Store:user(username)
  return self:get("users", username)
end

-- store:user_by(kind, id) -> record: kind is "identity" or "block".
function Store:user_by(kind, id)
  return self:read(function(txn)
    local name = txn:get(kind == "identity" and "by_identity" or "by_block", id)
    return name and txn:get("users", name)
  end)
end

-- Inside an update: writes the record and its reverse lookups (replacing stale ones).
function _M.put_user(txn, rec)
  local old = txn:get("users", rec.username)
  if old and old.identity_id and old.identity_id ~= rec.identity_id then txn:del("by_identity", old.identity_id) end
  if old and old.block_id and old.block_id ~= rec.block_id then txn:del("by_block", old.block_id) end
  rec.created_at = rec.created_at or (old and old.created_at) or now()
  rec.updated_at = now()
  txn:put("users", rec.username, rec)
  if rec.identity_id then txn:put("by_identity", rec.identity_id, rec.username) end
  if rec.block_id then txn:put("by_block", rec.block_id, rec.username) end
  return rec
end

function _M.delete_user(txn, username)
  local old = txn:get("users", username)
  if not old then return false end
  if old.identity_id then txn:del("by_identity", old.identity_id) end
  if old.block_id then txn:del("by_block", old.block_id) end
  txn:del("users", username)
  return true
end

function Store:put_user(rec)
  return self:update(function(txn) return _M.put_user(txn, rec) end)
end

function Store:delete_user(username)
  return self:update(function(txn) return _M.delete_user(txn, username) end)
end

function Store:users()
  return self:read(function(txn)
    local list = {}
    for _, rec in txn:each("users") do list[#list + 1] = rec end
    return list
  end)
end

-- ---------------------------------------------------------------------------------------------
-- Settings: the notes' "admin settings" (server URL, default agent, timeouts). Never secrets.

local SECRET = { password = true, token = true, api_key = true, secret = true }

local function looks_secret(key)
  local k = key:lower()
  for word in pairs(SECRET) do
    if k:find(word, 1, true) then return true end
  end
  return false
end

local function check_setting(key, n)
  if type(key) ~= "string" or key == "" then error("bad argument #" .. n .. " (setting name expected)", 3) end
  if looks_secret(key) then
    error(errors.refusal("letta.store", "'" .. key .. "' looks like a secret: keep passwords and tokens in the "
                         .. "environment (LETTA_PASSWORD, LETTA_API_KEY), not in the store"), 3)
  end
end

function Store:setting(key)
  check_setting(key, 1)
  return self:get("settings", key)
end

function Store:set_setting(key, value)
  check_setting(key, 1)
  return self:update(function(txn)
    if value == nil then return txn:del("settings", key) end
    return txn:put("settings", key, value)
  end)
end

function Store:settings()
  return self:read(function(txn)
    local t = {}
    for k, v in txn:each("settings") do t[k] = v end
    return t
  end)
end

-- ---------------------------------------------------------------------------------------------
-- Export and import (scripts/store.lua): the records as JSON Lines, to back up a store or move it.
-- A header line, one line per record {"ns", "key", "value"} and a last line with the count, so
-- that a truncated file is refused rather than half imported. Every namespace is exported except
-- the leases, which belong to the processes using this store. The store holds no secrets
-- (settings refuse them), so neither does an export; an import refuses them too.

_M.EXPORT_FORMAT, _M.EXPORT_VERSION = "lettash-store-export", 1
_M.LOCAL_ONLY = { leases = true }

local function exported()
  local list = {}
  for _, ns in ipairs(_M.NAMESPACES) do
    if not _M.LOCAL_ONLY[ns] then list[#list + 1] = ns end
  end
  return list
end

-- Records per exported namespace, in a transaction: {ns = n}, total.
local function counts(txn)
  local t, total = {}, 0
  for _, ns in ipairs(exported()) do
    local n = 0
    for _ in txn:each(ns) do n = n + 1 end
    t[ns], total = n, total + n
  end
  return t, total
end

-- store:export(write) -> {records = n, counts = {ns = n}}: write(line) is called for each line
-- (without its newline), from one read snapshot.
function Store:export(write)
  return self:read(function(txn)
    local names = exported()
    -- written by hand so that "format" comes first, for whoever looks at the file's head
    write(string.format('{"format":%s,"version":%d,"lettash":%s,"exported_at":%s,"namespaces":%s}',
                        json.encode(_M.EXPORT_FORMAT), _M.EXPORT_VERSION, json.encode(require("letta.core").version),
                        json.encode(now()), json.encode(json.array(names))))
    local n, per = 0, {}
    for _, ns in ipairs(names) do
      per[ns] = 0
      local last
      while true do -- the stored JSON as it is: no decode and encode again
        local key, raw = txn.t:next(ns, "", last)
        if key == nil then break end
        last = key
        write('{"ns":' .. json.encode(ns) .. ',"key":' .. json.encode(key) .. ',"value":' .. raw .. "}")
        per[ns], n = per[ns] + 1, n + 1
      end
    end
    write(string.format('{"format":%s,"end":true,"records":%d}', json.encode(_M.EXPORT_FORMAT), n))
    return { records = n, counts = per }
  end)
end

local function refuse(fmt, ...) error(errors.refusal("letta.store", string.format(fmt, ...)), 0) end

-- Inside the import's transaction: refuses a store that holds records unless replace (then
-- deletes them, leases kept). -> how many it held.
local function clear_for_import(self, txn, replace)
  local held, total = counts(txn)
  if total > 0 and not replace then
    local parts = {}
    for _, ns in ipairs(exported()) do
      if held[ns] > 0 then parts[#parts + 1] = ns .. ": " .. held[ns] end
    end
    refuse("the store %s already holds records (%s): import into a new store (LETTA_STORE), or "
           .. "replace them with --replace", self.path, table.concat(parts, ", "))
  end
  if total > 0 then
    for _, ns in ipairs(exported()) do
      for key in txn:each(ns) do txn:del(ns, key) end
    end
  end
  return total
end

-- reader(lines, bad) -> next, lineno: next() is the next non-blank line decoded (nil at the end);
-- lineno() the number of the line it came from. bad(fmt, ...) refuses the file.
local function reader(lines, bad)
  local lineno, started = 0, false
  local function next_record()
    while true do
      local line = lines()
      if line == nil then return nil end
      lineno = lineno + 1
      if line:find("%S") then
        local ok, v = pcall(json.decode, line)
        if not ok or type(v) ~= "table" then
          if not started then bad("not a lettash store export (made by: store.lua export)") end
          bad("line %d is not JSON", lineno)
        end
        started = true
        return v
      end
    end
  end
  return next_record, function() return lineno end
end

local function check_head(head, bad)
  if head == nil then bad("empty: not a lettash store export (made by: store.lua export)") end
  if head.format ~= _M.EXPORT_FORMAT or head["end"] then
    bad("not a lettash store export (made by: store.lua export)")
  end
  if math.type(head.version) ~= "integer" or head.version > _M.EXPORT_VERSION then
    bad("export format version %s is newer than this lettash reads (%d)", tostring(head.version), _M.EXPORT_VERSION)
  end
end

-- Refuses a record line that could not have come from an export (or would put a secret in).
local function check_record(r, lineno, known, bad)
  if not known[r.ns] then
    bad("line %d: '%s' is not a namespace this lettash exports (an export of a newer version?)",
        lineno, tostring(r.ns))
  end
  if type(r.key) ~= "string" or r.key == "" or r.value == nil then
    bad("line %d: a record needs ns, key and value", lineno)
  end
  if r.ns == "settings" and looks_secret(r.key) then
    bad("line %d: setting '%s' looks like a secret: a store never holds one", lineno, r.key)
  end
  if r.ns == "users" and (type(r.value) ~= "table" or r.value.username ~= r.key) then
    bad("line %d: user record '%s' does not name that user", lineno, r.key)
  end
end

-- store:import(open, {replace = false, source = "the export"}) -> {records = n, counts = {ns = n},
-- replaced = n}. open() returns an iterator over the export's lines; it is called again, for a new
-- pass from the first line, when the map must grow. One transaction: all or nothing. A store that
-- holds records is refused unless replace (its records are then deleted first, leases kept).
-- source names the input in the messages of a file that is refused.
function Store:import(open, opts)
  opts = opts or {}
  local source = opts.source or "the export"
  local function bad(fmt, ...) refuse("%s: " .. fmt, source, ...) end
  local known = {}
  for _, ns in ipairs(exported()) do known[ns] = true end
  return self:update(function(txn)
    local total = clear_for_import(self, txn, opts.replace)
    local next_record, lineno = reader(open(), bad)
    check_head(next_record(), bad)
    local n, per = 0, {}
    for ns in pairs(known) do per[ns] = 0 end
    while true do
      local r = next_record()
      if r == nil then bad("ends before its last line (a truncated export?)") end
      if r["end"] then
        if r.records ~= n then bad("its last line counts %s records, the file holds %d", tostring(r.records), n) end
        if next_record() ~= nil then bad("line %d: more after the export's last line", lineno()) end
        break
      end
      check_record(r, lineno(), known, bad)
      txn:put(r.ns, r.key, r.value)
      per[r.ns], n = per[r.ns] + 1, n + 1
    end
    return { records = n, counts = per, replaced = total }
  end)
end

return _M
