-- Backs up or moves the local store: export writes its records as JSON Lines (users, settings,
-- recorded attachments, import journals: everything the workflows need, never a secret), import
-- rebuilds a store from such a file. The server is not touched.
local cli = require "letta.cli"
local storelib = require "letta.store"
local core = require "letta.core"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- What the counts say, for people: the lookups by identity and block are left out (they follow
-- from the users).
local NAMES = { users = { "user", "users" }, settings = { "setting", "settings" },
                attachments = { "recorded attachment", "recorded attachments" },
                imports = { "import record", "import records" }, -- journal entries and runs
                journal = { "journal entry", "journal entries" } }
local function describe(counts)
  local parts = {}
  for _, ns in ipairs(storelib.NAMESPACES) do
    local n, name = counts[ns], NAMES[ns] or { ns, ns }
    if n and n > 0 and ns ~= "by_identity" and ns ~= "by_block" then
      parts[#parts + 1] = n .. " " .. name[n == 1 and 1 or 2]
    end
  end
  return #parts > 0 and table.concat(parts, ", ") or "no records"
end

-- Writes the export to path through a file created with mode 0600 next to it, renamed over path
-- when complete: a failed export never leaves a partial file, nor replaces an older one.
-- (Lua's io.open cannot choose a mode, and umask decides it: hence the shell.)
local function export_to(store, path)
  local tmp = path .. ".tmp-" .. core.nonce():sub(1, 8)
  local fh
  local ok, res = pcall(function()
    if not os.execute("{ umask 077 && : > " .. quote(tmp) .. "; } 2>/dev/null") then
      error("cannot write " .. path .. " (is its directory there and writable?)", 0)
    end
    local why
    fh, why = io.open(tmp, "w")
    if not fh then error("cannot write " .. path .. ": " .. why, 0) end
    local r = store:export(function(line) assert(fh:write(line, "\n")) end)
    assert(fh:close())
    fh = nil
    assert(os.rename(tmp, path))
    return r
  end)
  if not ok then
    if fh then fh:close() end
    os.remove(tmp)
    error(res, 0)
  end
  return res
end

-- An iterator factory over the lines of path (or stdin, read whole: the import may need a second
-- pass when the store's map grows).
local function source(path)
  if path == "-" then
    local text = io.stdin:read("a") or ""
    return function() return text:gmatch("[^\n]+") end
  end
  local probe, why = io.open(path, "r")
  if not probe then error("cannot read " .. why, 0) end
  probe:close()
  local fh
  return function()
    if fh then fh:close() end
    fh = assert(io.open(path, "r"))
    return fh:lines()
  end
end

cli.main{
  name = "store",
  usage = "export [FILE|-] | import FILE|- [--replace] [--json]",
  summary = "Back up or move the local store (LETTA_STORE). export writes its records as JSON Lines to\n"
    .. "FILE (mode 0600) or stdout: users, settings, recorded attachments, import journals. import\n"
    .. "rebuilds a store from such a file, all or nothing: a store that already holds records is\n"
    .. "refused unless --replace, and so is a file that is not a complete lettash export.",
  notes = "Leases (which chat process holds an agent) are not exported: they belong to this store's\n"
    .. "processes. No secret is ever in an export: the store refuses them (passwords and tokens stay\n"
    .. "in LETTA_PASSWORD / LETTA_API_KEY), and an import refuses settings that look like one.\n"
    .. "After moving a store, `doctor.lua` checks its records against the server.",
  options = { { "replace", help = "import: replace the records the store holds (else it must be empty)" } },
  args = { min = 1, max = 2 },
  run = function(cx)
    local cmd, file = cx.args[1], cx.args[2]
    if cmd == "export" then
      if cx.opts.replace then cli.usage_error("--replace is for import") end
      file = file or "-"
      if file == "-" and cx.json then
        cli.usage_error("export to stdout is already JSON: give a FILE to get --json's summary")
      end
      local path = storelib.default_path()
      local probe = io.open(path, "r")
      if not probe then error("no store at " .. path .. " (LETTA_STORE): nothing to export", 0) end
      probe:close()
      if file == path or file == path .. "-lock" then cli.usage_error("the export would overwrite the store itself") end
      if file == "-" then
        cx:store():export(function(line) io.stdout:write(line, "\n") end)
        return nil, {}
      end
      local r = export_to(cx:store(), file)
      r.file = file
      return r, { string.format("exported %d records (%s) to %s", r.records, describe(r.counts), file) }
    elseif cmd == "import" then
      if not file then cli.usage_error("import needs a FILE (or - for stdin) (try --help)") end
      local open = source(file)
      local store = cx:store()
      local r = store:import(open, { replace = cx.opts.replace, source = file == "-" and "stdin" or file })
      r.store = store.path
      local lines = { string.format("imported %d records (%s) into %s%s", r.records, describe(r.counts), store.path,
                                    r.replaced > 0 and string.format(" (replacing %d)", r.replaced) or ""),
                      "check them against the server with: bin/lettash scripts/doctor.lua" }
      return r, lines
    end
    cli.usage_error("unknown command '" .. cmd .. "' (export or import; try --help)")
  end,
}
