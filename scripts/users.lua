-- Lists the users recorded in the local store (no server call), with the state of each record:
-- onboarded, or half done (an onboarding or offboarding that did not finish).
local cli = require "letta.cli"

-- The state of a record, and what finishes it.
local function status_of(u)
  if u.offboarding then return "offboarding", "bin/lettash scripts/offboard.lua " .. u.username end
  if u.pending_block or not u.onboarded then
    return "pending", "bin/lettash scripts/onboard.lua " .. u.username .. " (or bin/lettash scripts/doctor.lua --fix)"
  end
  return "onboarded"
end

cli.main{
  name = "users",
  usage = "[--json]",
  summary = "List the users recorded in the local store: username, name, identity id, persona block id,\n"
    .. "status. Reads the store only; doctor.lua checks them against the server.",
  notes = "status: onboarded; pending (an onboarding did not finish: a wrong setting or an\n"
    .. "interruption; rerun onboard.lua, or doctor.lua --fix); offboarding (an offboarding did not\n"
    .. "finish: rerun offboard.lua). With --json each record has a \"status\" field too.",
  args = { max = 0 },
  run = function(cx)
    local list = cli.array(cx:users():list())
    local lines = { "username\tname\tidentity\tblock\tstatus" }
    local unfinished = {}
    for _, u in ipairs(list) do
      local status, finish = status_of(u)
      u.status = status
      lines[#lines + 1] = string.format("%s\t%s\t%s\t%s\t%s", u.username, u.name or "", u.identity_id or "-",
                                        u.block_id or "-", status)
      if finish then unfinished[#unfinished + 1] = u.username .. " is " .. status .. ": finish it with " .. finish end
    end
    if #list == 0 then lines = { "no users in " .. tostring(cx:store().path) } end
    if not cx.json then -- on stderr: stdout stays the table
      for _, l in ipairs(unfinished) do io.stderr:write("users: ", l, "\n") end
    end
    return list, lines
  end,
}
