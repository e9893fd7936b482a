-- What specs share: running bin/lettash as a child process and capturing what it did.
local _M = {}

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD") or io.popen("pwd"):read("l")
  return pwd .. "/" .. p
end

-- The binary under test: bin/lettash, or bin/asan/lettash when tests/run.sh runs with ASAN=1.
_M.bin = abspath(os.getenv("LETTASH_BIN") or "bin/lettash")
_M.root = abspath(".")
-- LETTASH_LUA_PATH for the children: the Lua library the specs run on (the compiled-in one, as
-- tests/run.sh runs them, unless LETTASH_LUA_PATH points the specs at a working copy).
_M.lua_path = os.getenv("LETTASH_LUA_PATH") or false

function _M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function _M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- n JSON Lines of passages to import, "<prefix> passage <i> about topic <i % topics>" each with a
-- tag "t<i % tags>"; returns the path and the texts (in order). shape: {prefix=, topics=, tags=}.
function _M.jsonl_file(path, n, shape)
  shape = shape or {}
  local json = require("letta").json
  local f = assert(io.open(path, "wb"))
  local texts = {}
  for i = 1, n do
    texts[i] = string.format("%s passage %d about topic %d", shape.prefix or "import", i, i % (shape.topics or 37))
    f:write(json.encode({ text = texts[i], tags = { "t" .. i % (shape.tags or 5) } }), "\n")
  end
  f:close()
  return path, texts
end

function _M.tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  return dir
end

function _M.rmdir(dir)
  if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. _M.quote(dir)) end
end

-- The shell words that set env (NAME = value, false to unset) for what follows.
local function env_prefix(env)
  local prefix = ""
  for k, v in pairs(env or {}) do
    prefix = prefix .. (v == false and ("unset " .. k .. "; ") or ("export " .. k .. "=" .. _M.quote(v) .. "; "))
  end
  return prefix
end

-- Runs a shell command line; returns {code=, stdout=, stderr=}.
-- opts: stdin (text), env (table of NAME = value, false to unset), cwd.
function _M.sh(cmdline, opts)
  opts = opts or {}
  local dir = _M.tmpdir()
  local prefix = env_prefix(opts.env)
  if opts.cwd then prefix = prefix .. "cd " .. _M.quote(opts.cwd) .. " && " end
  local stdin = "/dev/null"
  if opts.stdin then stdin = _M.write_file(dir .. "/stdin", opts.stdin) end
  local full = string.format("(%s%s) < %s > %s/out 2> %s/err", prefix, cmdline, _M.quote(stdin), dir, dir)
  local ok, how, code = os.execute(full)
  local r = { code = how == "exit" and code or 128 + code, stdout = _M.read_file(dir .. "/out"),
              stderr = _M.read_file(dir .. "/err") }
  _M.rmdir(dir)
  return r
end

-- A self-signed certificate for 127.0.0.1 (what the emulator's --tls-cert serves), made with
-- openssl as dir/<name>.pem and its key dir/<name>.key (name: "cert" unless given); returns both.
function _M.self_signed_cert(dir, name)
  local cert, key = dir .. "/" .. (name or "cert") .. ".pem", dir .. "/" .. (name or "cert") .. ".key"
  local r = _M.sh(string.format(
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
      .. "-keyout %s -out %s", _M.quote(key), _M.quote(cert)))
  assert(r.code == 0, "openssl failed (it is needed: apt-get install openssl): " .. tostring(r.stderr))
  return cert, key
end

-- spawn(argv, {env=, out=}) -> pid: argv in the background (stdin /dev/null, stdout and stderr in
-- out.out and out.err), in env as sh() sets it.
function _M.spawn(argv, opts)
  local parts = {}
  for _, a in ipairs(argv) do parts[#parts + 1] = _M.quote(a) end
  local prefix = env_prefix(opts.env)
  local out = opts.out
  os.execute(string.format("(%sexec %s) </dev/null >%s.out 2>%s.err & echo $! >%s.pid", prefix, table.concat(parts, " "),
                           _M.quote(out), _M.quote(out), _M.quote(out)))
  return assert(tonumber(_M.read_file(out .. ".pid")))
end

-- Runs bin/lettash with the given argument list.
function _M.lettash(args, opts)
  local parts = { _M.quote(_M.bin) }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = _M.quote(a) end
  return _M.sh(table.concat(parts, " "), opts)
end

return _M
