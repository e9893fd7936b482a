-- The journal of letta.import, in the store: each item has a stable key (its position and a hash
-- of its content, or with dedupe = "content" its content alone) and is noted as pending before it
-- is sent and done (with the passage id) after. Each run is recorded too, with what resuming it
-- takes, so that one that stopped before the end can be found (interrupted) and continued with
-- the same command. The record formats are letta.users.records'.
local core = require "letta.core"
local records = require "letta.users.records"

local ipairs, pairs, tostring, string, table, io, os = ipairs, pairs, tostring, string, table, io, os

local _M = {}

-- The key of an item in the journal, and the hash its marker tag carries. By position (the
-- default): its line's rank and content, so the same text twice is two passages. By content
-- (dedupe = "content"): its text, tags (a set on the server, so sorted) and created_at, wherever it
-- sits: an edited file sends only its new items, and an item repeated in the input is sent once.
function _M.item_key(agent_id, ordinal, item, dedupe)
  if dedupe == "content" then
    local tags = {}
    for _, t in ipairs(item.tags) do tags[#tags + 1] = t end
    table.sort(tags)
    local h = core.hash(table.concat({ agent_id, "content", item.text, table.concat(tags, "\31"), item.created_at or "" }, "\0"))
    return records.item_key(agent_id, "c:" .. h), h
  end
  local h = core.hash(table.concat({ agent_id, tostring(ordinal), item.text, table.concat(item.tags or {}, "\31"),
                                     item.created_at or "" }, "\0"))
  -- ordered by position: the journal is appended to, and its pages stay few and hot
  return records.item_key(agent_id, string.format("%012d:%s", ordinal, h)), h
end

-- begin(store, it, run_id) -> the item's entry as it was (nil: new). In one write transaction:
-- reads the item's state, and notes the intent to send it when it has none.
function _M.begin(store, it, run_id)
  return store:update(function(txn)
    local j = records.item(txn, it.key)
    if not j then records.put_pending(txn, it.key, it.line, run_id) end
    return j
  end)
end

function _M.done(store, it, passage_id)
  store:update(function(txn) records.put_done(txn, it.key, it.line, passage_id) end)
end

-- The item was certainly not stored: its entry goes (a later run sends it).
function _M.forget(store, it)
  store:update(function(txn) records.del_item(txn, it.key) end)
end

-- The same for a batch of items, each in one write transaction: begin_many -> their entries as
-- they were (entries[i] for items[i]); done_many(store, items, ids) with ids[i] the passage id of
-- items[i]; forget_many.
function _M.begin_many(store, items, run_id)
  return store:update(function(txn)
    local prior = {}
    for i, it in ipairs(items) do
      prior[i] = records.item(txn, it.key) or false
      if not prior[i] then records.put_pending(txn, it.key, it.line, run_id) end
    end
    return prior
  end)
end

function _M.done_many(store, items, ids)
  store:update(function(txn)
    for i, it in ipairs(items) do records.put_done(txn, it.key, it.line, ids[i]) end
  end)
end

function _M.forget_many(store, items)
  store:update(function(txn)
    for _, it in ipairs(items) do records.del_item(txn, it.key) end
  end)
end

-- ---------------------------------------------------------------------------------------------
-- Runs

local function shell_quote(a)
  if a:match("^[%w%-_./:,=@+]+$") then return a end
  return "'" .. a:gsub("'", "'\\''") .. "'"
end

function _M.absolute(path)
  if path == "-" or path:sub(1, 1) == "/" then return path end
  local cwd = os.getenv("PWD")
  if not cwd or cwd == "" then
    local p = io.popen("pwd")
    cwd = p and p:read("l") or "."
    if p then p:close() end
  end
  return (cwd:gsub("/$", "")) .. "/" .. path:gsub("^%./", "")
end

-- The arguments of scripts/import.lua that continue this run: the same agent, input and options.
local function resume_args(opts, source)
  local args = { opts.agent_id, source }
  local function add(flag, v)
    if v ~= nil then
      args[#args + 1] = flag
      args[#args + 1] = tostring(v)
    end
  end
  add("--format", opts.format)
  if opts.tags and #opts.tags > 0 then add("--tags", table.concat(opts.tags, ",")) end
  add("--chunk-size", opts.chunk_size)
  add("--concurrency", opts.concurrency)
  add("--batch", opts.batch)
  if opts.dedupe == "content" then add("--dedupe", "content") end
  return args
end

-- Options a resume may change: they do not change the items.
local HOW = { ["--concurrency"] = true, ["--batch"] = true }

-- new_run(store, opts, source) -> run: this import's record, with run.id (what makes the items:
-- all arguments but those of HOW) and run:note(fields, done) to write it (with fields merged in
-- and the count of items done).
function _M.new_run(store, opts, source)
  local args = resume_args(opts, source)
  local identity = {}
  for i, a in ipairs(args) do
    if not HOW[a] and not HOW[args[i - 1]] then identity[#identity + 1] = a end
  end
  local id = core.hash(table.concat(identity, "\0"))
  local rec = { agent_id = opts.agent_id, source = args[2], args = args, pid = core.pid(),
                started = os.date("!%Y-%m-%dT%H:%M:%SZ"), done = 0 }
  return {
    id = id,
    note = function(fields, done)
      for k, v in pairs(fields or {}) do rec[k] = v end
      rec.done = done
      store:update(function(txn) records.put_run(txn, id, rec) end)
    end,
  }
end

-- The runs that stopped before the end of their input and whose process is gone, as interrupted
-- lists them, and by agent and run id.
local function stopped_runs(txn)
  local runs, by_agent = {}, {}
  for run_id, r in records.each_run(txn) do
    if not r.finished and not (r.pid and core.alive(r.pid)) then
      local args = {}
      for i, a in ipairs(r.args or {}) do args[i] = shell_quote(a) end
      local run = { agent_id = r.agent_id, source = r.source == "-" and "stdin" or r.source, pending = 0,
                    done = r.done or 0, started = r.started, error = r.error,
                    command = "bin/lettash scripts/import.lua " .. table.concat(args, " ") }
      runs[#runs + 1] = run
      by_agent[r.agent_id] = by_agent[r.agent_id] or {}
      by_agent[r.agent_id][run_id] = run
    end
  end
  return runs, by_agent
end

-- interrupted(store) -> list of {agent_id=, source= (absolute path, or "stdin"), pending=, done=,
-- started=, error=, command=} for the runs that stopped before the end of their input and whose
-- process is gone (killed, or stopped by a failure: error says which), oldest first. pending:
-- items that run was sending when it stopped (the next run looks for them before sending again);
-- done: items it had landed; command: what continues it (from the directory of your choice: the
-- source path is absolute). A run that reached the end of its input is not listed.
function _M.interrupted(store)
  return store:read(function(txn)
    local runs, by_agent = stopped_runs(txn)
    -- the pending items of each run, from its agent's journal (one pass per agent)
    for agent_id, of_run in pairs(by_agent) do
      for _, j in records.each_item(txn, agent_id) do
        local run = records.is_pending(j) and of_run[j.r]
        if run then run.pending = run.pending + 1 end
      end
    end
    table.sort(runs, function(x, y) return (x.started or "") < (y.started or "") end)
    return runs
  end)
end

return _M
