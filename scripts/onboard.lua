-- Onboards a user: an identity (type user, identifier_key = username) and the persona block
-- Persona_<username>, linked, both ids kept in the local store. Safe to run again: a second run
-- changes nothing, and a run after a crash adopts or cleans up what the crash left.
local cli = require "letta.cli"
local json = require("letta").json

cli.main{
  name = "onboard",
  usage = "<username> [--name NAME] [--preferences JSON] [--json]",
  summary = "Create the user's identity and Persona_<username> block on the Letta server and record\n"
    .. "them in the local store. Running it again changes nothing and says so.",
  notes = "Usernames: 1 to 42 characters of A-Z a-z 0-9 _ - (the block label Persona_<username>\n"
    .. "must be a valid Letta label); anything else is refused before the server is touched.",
  options = {
    { "name", arg = "NAME", help = "the user's display name (default: the username)" },
    { "preferences", arg = "JSON", help = "the user's preferences, a JSON value, e.g. '{\"tea\":true}'" },
  },
  args = { min = 1, max = 1 },
  run = function(cx)
    local username = cx:username(cx.args[1])
    local prefs
    if cx.opts.preferences then
      local ok, v = pcall(json.decode, cx.opts.preferences)
      if not ok then cli.usage_error("--preferences is not valid JSON (" .. cli.message(v):gsub("^json: ", "") .. ")") end
      prefs = v
    end
    local r = cx:users():onboard(username, { name = cx.opts.name, preferences = prefs })
    r.actions = cli.array(r.actions)
    local lines = {}
    for _, a in ipairs(r.actions) do lines[#lines + 1] = username .. ": " .. a end
    if #lines == 0 then lines[1] = username .. ": already onboarded, nothing changed" end
    return r, lines
  end,
}
