-- Checks the setup: the server, the credentials, the store, every recorded identity and persona
-- block (by id, never by listing), attachments left behind by interrupted chats, and records whose
-- server objects are gone. With --fix, heals what it can. (Whether the server behaves as lettash
-- expects is scripts/check-server.lua's question; doctor points to it.)
local cli = require "letta.cli"

cli.main{
  name = "doctor",
  usage = "[--fix] [--json]",
  summary = "Check the server, the credentials and the local store, every recorded user's identity and\n"
    .. "persona block (retrieved by id), persona blocks left attached by an interrupted chat, and\n"
    .. "records whose server objects vanished. --fix heals what it finds.",
  notes = "Exit status: 0 when everything is healthy (after --fix, when every problem was fixed),\n"
    .. "2 when problems remain, 1 when doctor itself could not run.\n"
    .. "Doctor checks the server's version, not its behaviour: to check that the server is the Letta\n"
    .. "lettash expects (the behaviours its workflows rely on), run bin/lettash scripts/check-server.lua.",
  options = { { "fix", help = "heal what it finds" } },
  args = { max = 0 },
  run = function(cx)
    local r = cx:users():doctor{ fix = cx.opts.fix and true or false }
    r.checks, r.problems = cli.array(r.checks), cli.array(r.problems)
    local lines, remaining, fixed = {}, 0, 0
    for _, c in ipairs(r.checks) do
      if not c.ok then remaining = remaining + 1 end
      lines[#lines + 1] = string.format("%-4s %s%s", c.ok and "ok" or "FAIL", c.name, c.detail and (": " .. c.detail) or "")
    end
    for _, p in ipairs(r.problems) do
      if p.fixed then fixed = fixed + 1 else remaining = remaining + 1 end
      lines[#lines + 1] = string.format("%-4s %s%s%s", p.fixed and "FIX" or "BAD", p.username and (p.username .. ": ") or "",
                                        p.detail or p.kind or "problem", p.fixed and " (fixed)" or "")
    end
    if remaining == 0 and r.ok == false then remaining = 1 end
    r.ok = remaining == 0
    if remaining == 0 then
      lines[#lines + 1] = fixed > 0 and ("doctor: healthy (" .. fixed .. " fixed)") or "doctor: healthy"
    else
      lines[#lines + 1] = string.format("doctor: %d problem%s remain%s%s", remaining, remaining == 1 and "" or "s",
                                        remaining == 1 and "s" or "", cx.opts.fix and "" or " (run with --fix to heal)")
    end
    return r, lines, remaining == 0 and 0 or 2
  end,
}
