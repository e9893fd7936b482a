-- The local store: an LMDB file next to the user's data, holding what must never be looked up on
-- the server by listing (user records with their identity and persona block ids), the admin
-- settings, and the journals that make the workflows crash-safe. Records are JSON; keys are
-- strings; every namespace is an LMDB database. Safe across processes (LMDB's own locking).
local lmdb = require "letta.lmdb"
local json = require "letta.json"

local type, error, pcall, pairs, setmetatable, tostring, os, string, table, math =
  type, error, pcall, pairs, setmetatable, tostring, os, string, table, math

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

local function wrap(ctxn) return setmetatable({ t = ctxn }, Txn) end

-- store:begin(write) -> transaction; close it (or use <close>): uncommitted means aborted.
function Store:begin(write) return wrap(self.env:begin(write and true or false)) end

function Txn:get(ns, key)
  local raw = self.t:get(ns, key)
  if raw == nil then return nil end
  return json.decode(raw)
end

local function encode(value)
  if value == nil then error("bad argument #3 to 'put' (value expected)", 3) end
  return json.encode(value)
end

function Txn:put(ns, key, value) return self.t:put(ns, key, encode(value)) end

-- txn:insert(ns, key, value) -> true, or false when the key already exists (nothing written).
function Txn:insert(ns, key, value) return self.t:put(ns, key, encode(value), true) end

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

function Txn:commit() self.t:commit() end
function Txn:abort() self.t:abort() end
Txn.close = Txn.abort
Txn.__close = Txn.abort

local function is_map_full(err) return type(err) == "string" and err:find("MDB_MAP_FULL", 1, true) ~= nil end

-- store:read(fn) -> fn(txn)'s results, in a read transaction (a consistent snapshot).
function Store:read(fn)
  local txn <close> = self:begin(false)
  return fn(txn)
end

-- store:update(fn) -> fn(txn)'s results. Commits when fn returns, aborts when it raises. When the
-- map is full, grows it and runs fn again (fn must only touch the store, or be safe to rerun).
function Store:update(fn)
  for _ = 1, 16 do
    local txn = self:begin(true)
    local results = table.pack(pcall(fn, txn))
    if results[1] then
      local ok, err = pcall(txn.commit, txn)
      if ok then return table.unpack(results, 2, results.n) end
      txn:abort()
      if not is_map_full(err) then error(err, 0) end
    else
      txn:abort()
      if not is_map_full(results[2]) then error(results[2], 0) end
    end
    self.env:grow(2)
  end
  error("letta.store: the store could not grow enough", 2)
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
  return self:read(function(txn) return txn:get("users", username) end)
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

local function check_setting(key, n)
  if type(key) ~= "string" or key == "" then error("bad argument #" .. n .. " (setting name expected)", 3) end
  local k = key:lower()
  for word in pairs(SECRET) do
    if k:find(word, 1, true) then
      error("letta.store: '" .. key .. "' looks like a secret: keep passwords and tokens in the environment (LETTA_PASSWORD, LETTA_API_KEY), not in the store", 3)
    end
  end
end

function Store:setting(key)
  check_setting(key, 1)
  return self:read(function(txn) return txn:get("settings", key) end)
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

return _M
