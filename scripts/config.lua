-- Reads and changes the admin settings kept in the local store (server URL, default agent,
-- timeouts, the certificate to trust). Secrets are refused: passwords and tokens stay in the
-- environment.
local cli = require "letta.cli"
local json = require("letta").json

local function show(v) return type(v) == "string" and v or json.encode(v) end

local function help_keys()
  local lines = { "Settings:" }
  for _, s in ipairs(cli.SETTINGS) do lines[#lines + 1] = string.format("  %-16s %s", s.key, s.help) end
  return table.concat(lines, "\n")
end

cli.main{
  name = "config",
  usage = "[list | get KEY | set KEY VALUE | unset KEY] [--json]",
  summary = "Show or change the settings kept in the local store (LETTA_STORE). With no command: list.\n"
    .. "Passwords and tokens are never stored: use LETTA_PASSWORD or LETTA_API_KEY.",
  notes = help_keys() .. "\nLETTA_BASE_URL, when set, wins over base_url, and LETTA_CA_FILE over ca_file\n"
    .. "(ca_file wins over CURL_CA_BUNDLE and SSL_CERT_FILE).",
  args = { max = 3 },
  run = function(cx)
    local cmd, key, value = cx.args[1] or "list", cx.args[2], cx.args[3]
    local want = ({ list = 0, get = 1, unset = 1, set = 2 })[cmd]
    if not want then cli.usage_error("unknown command '" .. cmd .. "' (list, get, set or unset; try --help)") end
    if math.max(#cx.args - 1, 0) ~= want then
      cli.usage_error(cmd == "list" and "list takes no arguments" or
        (cmd .. " needs " .. (want == 1 and "KEY" or "KEY VALUE") .. " (try --help)"))
    end
    local store = cx:store()
    if cmd == "list" then
      local all, keys, lines = store:settings(), {}, {}
      for k in pairs(all) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local note = ""
        if k == "base_url" and (os.getenv("LETTA_BASE_URL") or "") ~= "" then note = "  (LETTA_BASE_URL wins)" end
        if k == "ca_file" and (os.getenv("LETTA_CA_FILE") or "") ~= "" then note = "  (LETTA_CA_FILE wins)" end
        lines[#lines + 1] = k .. " = " .. show(all[k]) .. note
      end
      if #lines == 0 then lines[1] = "no settings in " .. store.path end
      return next(all) and all or json.object(), lines
    end
    local old = store:setting(key) -- refuses a secret before anything else
    if cmd == "get" then
      if old == nil then error("'" .. key .. "' is not set", 0) end
      return { key = key, value = old }, { show(old) }
    elseif cmd == "set" then
      local v = cli.check_setting(key, value)
      store:set_setting(key, v)
      return { key = key, value = v, previous = old, changed = old ~= v }, { key .. " = " .. show(v) }
    else
      if old ~= nil then store:set_setting(key, nil) end
      return { key = key, previous = old, changed = old ~= nil },
        { old ~= nil and ("unset " .. key) or (key .. " was not set, nothing changed") }
    end
  end,
}
