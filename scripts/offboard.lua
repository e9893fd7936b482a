-- Offboards a user: detaches their persona block from every agent, deletes the block and the
-- identity on the server, and removes the local record.
local cli = require "letta.cli"

cli.main{
  name = "offboard",
  usage = "<username> [--json]",
  summary = "Detach the user's Persona_<username> block from every agent, delete the block and the\n"
    .. "identity on the Letta server, and remove the user's record from the local store.",
  notes = "A user with no local record (offboarded already, or never onboarded from this store) is\n"
    .. "nothing to do: exit status 0, \"changed\": false with --json.",
  args = { min = 1, max = 1 },
  run = function(cx)
    local username = cx:username(cx.args[1])
    local r = cx:users():offboard(username)
    r.actions = cli.array(r.actions)
    local lines = {}
    for _, a in ipairs(r.actions) do lines[#lines + 1] = username .. ": " .. a end
    if not r.changed then lines[1] = username .. ": not onboarded here (no local record), nothing to do" end
    return r, lines
  end,
}
