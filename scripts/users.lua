-- Lists the users recorded in the local store (no server call).
local cli = require "letta.cli"

cli.main{
  name = "users",
  usage = "[--json]",
  summary = "List the users recorded in the local store: username, name, identity id, persona block id.\n"
    .. "Reads the store only; doctor.lua checks them against the server.",
  args = { max = 0 },
  run = function(cx)
    local list = cli.array(cx:users():list())
    local lines = {}
    for _, u in ipairs(list) do
      lines[#lines + 1] = string.format("%s\t%s\t%s\t%s", u.username, u.name or "", u.identity_id or "-", u.block_id or "-")
    end
    if #lines == 0 then lines[1] = "no users in " .. tostring(cx:store().path) end
    return list, lines
  end,
}
