-- What the scripts in scripts/ share, so each stays a page: arguments (--help, --json, unknown
-- options refused), the client and store built from the environment and the store's settings,
-- output as text or JSON, and any failure turned into ONE line "<script>: <message>" on stderr
-- with exit status 1 (spec.error_status; 130 when interrupted). See scripts/onboard.lua for the shape of a script.
local letta = require "letta"
local clientlib = require "letta.client"
local errors = require "letta.errors"
local json = letta.json

local type, tostring, tonumber, ipairs, setmetatable, getmetatable, pcall, error =
  type, tostring, tonumber, ipairs, setmetatable, getmetatable, pcall, error
local string, table, math, os, io = string, table, math, os, io

local _M = {}

-- ---------------------------------------------------------------------------------------------
-- Settings the scripts read (config.lua set KEY VALUE). Other keys are refused, so that a typo
-- ("defualt_agent") cannot pass silently; secrets are refused by the store itself.

local check_url = clientlib.check_url

local function check_agent(v)
  if not clientlib.is_id(v, "agent") then return nil, "must be an agent id (agent-<uuid>)" end
  return v
end

-- A certificate file that can be read now, stored as an absolute path (the scripts run from
-- anywhere).
local function check_ca_file(v)
  if v:sub(1, 1) ~= "/" then
    local cwd = os.getenv("PWD")
    if not cwd then
      local p = io.popen("pwd")
      cwd = p and p:read("l")
      if p then p:close() end
    end
    v = (cwd or ".") .. "/" .. v:gsub("^%./", "")
  end
  local ok, why = clientlib.check_ca_file(v, "ca_file")
  if not ok then return nil, why, true end
  return v
end

local function check_seconds(v)
  local n = tonumber(v)
  if not n or n <= 0 or n ~= n or n == math.huge then return nil, "must be a number of seconds above 0" end
  return n
end

local function check_count(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 then return nil, "must be a whole number, 0 or more" end
  return n
end

_M.SETTINGS = {
  { key = "base_url", check = check_url, help = "Letta server URL, used when LETTA_BASE_URL is unset" },
  { key = "default_agent", check = check_agent, help = "agent chat.lua talks to when no agent id is given" },
  { key = "timeout", check = check_seconds, help = "seconds a request may take (default 60)" },
  { key = "connect_timeout", check = check_seconds, help = "seconds to connect (default 10)" },
  { key = "max_retries", check = check_count, help = "retries of a request that is safe to repeat (default 2)" },
  { key = "ca_file", check = check_ca_file,
    help = "certificate (PEM) to trust for https:// (a self-signed server's), used when LETTA_CA_FILE is unset" },
}
for _, s in ipairs(_M.SETTINGS) do _M.SETTINGS[s.key] = s end

-- cli.check_setting(key, text) -> the value to store (typed), or raises a one-line message.
function _M.check_setting(key, text)
  local s = _M.SETTINGS[key]
  if not s then
    local known = {}
    for _, k in ipairs(_M.SETTINGS) do known[#known + 1] = k.key end
    error("unknown setting '" .. key .. "' (known: " .. table.concat(known, ", ") .. ")", 0)
  end
  local v, why, whole = s.check(text) -- whole: why is the whole message
  if v == nil then error(whole and why or (key .. " " .. why .. ", got '" .. text .. "'"), 0) end
  return v
end

-- ---------------------------------------------------------------------------------------------
-- Errors

local Usage = { __name = "letta.cli.Usage" } -- a mistake in the command line: "... (try --help)"
Usage.__index = Usage
Usage.__tostring = function(e) return e.message end

-- cli.usage_error(message): raise from a script for a bad command line.
function _M.usage_error(message) error(setmetatable({ message = message }, Usage), 0) end

-- The one line to show for an error value: a library's refusal (errors.refusal: "letta.users:
-- ...") its message alone; another letta.Error prints itself; a Lua error keeps its position (it
-- is a bug, and the position says where).
function _M.message(err)
  local msg
  if errors.is(err) and err.module then
    msg = err.message
  elseif type(err) == "string" then
    msg = err
  else
    local mt = getmetatable(err)
    if mt and mt.__tostring then
      msg = tostring(err)
    else
      msg = "(error object is a " .. type(err) .. " value)"
    end
  end
  msg = msg:gsub("%s*\n%s*", " "):gsub("%s+$", "")
  if msg == "" then msg = "failed" end
  return msg
end

-- cli.check_id(v, what) -> v, or a command-line mistake when v cannot be an id of that kind
-- ("agent id"): "agent id expected: agent-<uuid>, got 'x'", before any request.
function _M.check_id(v, what)
  local why = clientlib.id_problem(v, what)
  if why then _M.usage_error(why) end
  return v
end

-- ---------------------------------------------------------------------------------------------
-- Arguments

-- parse(argv, spec) -> opts, positionals. spec.options: {{"name", arg = "NAME"}, {"stream"}, ...}
-- (--json and --help are always there). "--opt=value" and "--opt value" both work; "--" ends the
-- options; "-" alone is a positional.
function _M.parse(argv, spec)
  local known = { json = {}, help = {} }
  for _, o in ipairs(spec.options or {}) do known[o[1]] = o end
  local opts, pos, only_pos = {}, {}, false
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if only_pos or a == "-" or a:sub(1, 1) ~= "-" then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    elseif a == "-h" then
      opts.help = true
    else
      local name, value = a:match("^%-%-([%w][%w_%-]*)=(.*)$")
      if not name then name = a:match("^%-%-([%w][%w_%-]*)$") end
      local o = name and known[name:gsub("%-", "_")]
      if not o then _M.usage_error("unknown option '" .. a:gsub("=.*", "") .. "' (try --help)") end
      local key = name:gsub("%-", "_")
      if o.arg then
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then _M.usage_error("option '--" .. name .. "' needs a value (" .. o.arg .. ")") end
        end
        opts[key] = value
      else
        if value ~= nil then _M.usage_error("option '--" .. name .. "' takes no value") end
        opts[key] = true
      end
    end
    i = i + 1
  end
  return opts, pos
end

local function help_text(spec, prog)
  local lines = { "usage: lettash " .. prog .. " " .. spec.usage, "" }
  for l in (spec.summary .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Options:"
  local rows = {}
  for _, o in ipairs(spec.options or {}) do
    rows[#rows + 1] = { "--" .. o[1]:gsub("_", "-") .. (o.arg and " " .. o.arg or ""), o.help or "" }
  end
  rows[#rows + 1] = { "--json", "print the result as JSON on stdout" }
  rows[#rows + 1] = { "--help, -h", "show this help and exit" }
  local w = 0
  for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
  for _, r in ipairs(rows) do lines[#lines + 1] = string.format("  %-" .. w .. "s  %s", r[1], r[2]) end
  if spec.notes then
    lines[#lines + 1] = ""
    for l in (spec.notes .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Environment: LETTA_BASE_URL (else the base_url setting, else http://localhost:8283),"
  lines[#lines + 1] = "LETTA_API_KEY or LETTA_PASSWORD (never stored), LETTA_STORE (the local store),"
  lines[#lines + 1] = "LETTA_CA_FILE (else the ca_file setting, else CURL_CA_BUNDLE or SSL_CERT_FILE): the"
  lines[#lines + 1] = "certificate to trust for an https:// server with a self-signed certificate."
  lines[#lines + 1] = "Errors: one line '" .. spec.name .. ": <message>' on stderr, exit status "
                      .. (spec.error_status or 1) .. "."
  return table.concat(lines, "\n") .. "\n"
end

-- ---------------------------------------------------------------------------------------------
-- The context a script's run(cx) gets: parsed arguments, and the store, client and workflows,
-- each made on first use (so --help and argument errors touch neither disk nor network).

local Cx = {}
Cx.__index = Cx

function Cx:store()
  if not self._store then self._store = letta.store.open() end
  return self._store
end

-- cx:settings() -> the store's settings table (read once).
function Cx:settings()
  if not self._settings then self._settings = self:store():settings() end
  return self._settings
end

-- cx:client() -> a client from the environment, with the settings filling in what it leaves unset
-- (the client reads LETTA_BASE_URL and the CA variables itself, and names them in its errors).
function Cx:client()
  if not self._client then
    local s = self:settings()
    local opts = { timeout = tonumber(s.timeout), connect_timeout = tonumber(s.connect_timeout),
                   max_retries = math.tointeger(tonumber(s.max_retries)) }
    if (os.getenv("LETTA_BASE_URL") or "") == "" and s.base_url ~= nil then
      opts.base_url = check_url(s.base_url)
      if not opts.base_url then
        error("the base_url setting '" .. tostring(s.base_url) .. "' is not a server URL (change it: "
              .. "lettash scripts/config.lua set base_url https://host:8283)", 0)
      end
    end
    -- the setting names the server's certificate: it wins over CURL_CA_BUNDLE and SSL_CERT_FILE,
    -- which usually name the system's bundle, but not over LETTA_CA_FILE
    if s.ca_file ~= nil and (os.getenv("LETTA_CA_FILE") or "") == "" then
      opts.ca_file, opts.ca_from = tostring(s.ca_file), "the ca_file setting"
    end
    self._client = letta.client(opts)
  end
  return self._client
end

-- cx:users() -> the workflows (letta.users) on this client and store.
function Cx:users()
  if not self._users then self._users = require("letta.users").new{ client = self:client(), store = self:store() } end
  return self._users
end

-- cx:username(s) -> s, validated before anything touches the server.
function Cx:username(s)
  return require("letta.users").validate(s)
end

function Cx:close()
  if self._client then pcall(self._client.close, self._client) end
  if self._store then pcall(self._store.close, self._store) end
  self._client, self._store, self._users = nil, nil, nil
end

-- ---------------------------------------------------------------------------------------------
-- Output

-- cli.array(t) -> t marked as a JSON array (so an empty list prints as []).
function _M.array(t) return json.array(t or {}) end

local function emit(cx, result, lines)
  if cx.json then
    io.stdout:write(json.encode(result == nil and json.object() or result), "\n")
  else
    for _, l in ipairs(lines or {}) do io.stdout:write(l, "\n") end
  end
  io.stdout:flush()
end

-- ---------------------------------------------------------------------------------------------
-- cli.main(spec [, argv]): runs a script and exits. spec:
--   name     "onboard" (the prefix of error lines)
--   usage    "<username> [--name NAME] [--json]" (after "lettash scripts/onboard.lua")
--   summary  what it does (help text, lines)
--   notes    more help text (optional)
--   options  {{"name", arg = "NAME", help = "..."}, {"stream", help = "..."}}
--   args     {min = 1, max = 1} positional count (max = nil: any)
--   error_status  exit status of an error, usage errors included (default 1)
--   run      function(cx) -> result, lines [, exit status]: result is printed as JSON with --json,
--            lines (strings) otherwise. cx.opts, cx.args, cx.json, cx:store(), cx:client(),
--            cx:users(), cx:settings(), cx:username(s).
-- argv defaults to the global arg; the usage shows arg[0].
function _M.main(spec, argv)
  argv = argv or _G.arg or {}
  local prog = argv[0] or ("scripts/" .. spec.name .. ".lua")
  local cx = setmetatable({ name = spec.name }, Cx)
  local ok, err, code = pcall(function()
    local opts, pos = _M.parse(argv, spec)
    if opts.help then
      io.stdout:write(help_text(spec, prog))
      return 0
    end
    local a = spec.args or {}
    if #pos < (a.min or 0) then
      _M.usage_error("missing arguments (usage: " .. spec.usage .. "; try --help)")
    elseif a.max and #pos > a.max then
      _M.usage_error("unexpected argument '" .. pos[a.max + 1] .. "' (usage: " .. spec.usage .. "; try --help)")
    end
    cx.opts, cx.args, cx.json = opts, pos, opts.json and true or false
    local result, lines, status = spec.run(cx)
    emit(cx, result, lines)
    return status or 0
  end)
  cx:close()
  if ok then
    code = err
  else
    local msg = _M.message(err)
    if errors.is(err, "interrupted") then code = 130 else code = spec.error_status or 1 end
    io.stdout:flush()
    io.stderr:write(spec.name, ": ", msg, "\n")
  end
  os.exit(code, true)
end

return _M
