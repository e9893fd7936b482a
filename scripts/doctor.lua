-- Checks the setup: the server, the credentials, the store, every recorded identity and persona
-- block (by id, never by listing), attachments left behind by interrupted chats, and records whose
-- server objects are gone. With --fix, heals what it can. (Whether the server behaves as lettash
-- expects is scripts/check-server.lua's question; doctor points to it.)
local cli = require "letta.cli"

local function plural(n, one, many) return n .. " " .. (n == 1 and one or many) end

cli.main{
  name = "doctor",
  usage = "[--fix] [--json]",
  summary = "Check the server, the credentials and the local store, every recorded user's identity and\n"
    .. "persona block (retrieved by id), persona blocks left attached by an interrupted chat, and\n"
    .. "records whose server objects vanished. --fix heals what it finds.",
  notes = "Exit status: 0 when everything is healthy (after --fix, when every problem was fixed),\n"
    .. "2 when problems remain, 1 when doctor itself could not run. When the server cannot be\n"
    .. "reached or refuses the credentials, doctor says what to check (--fix cannot help there).\n"
    .. "Interrupted imports are reported with the command that resumes them.\n"
    .. "Doctor checks the server's version, not its behaviour: to check that the server is the Letta\n"
    .. "lettash expects (the behaviours its workflows rely on), run bin/lettash scripts/check-server.lua.",
  options = { { "fix", help = "heal what it finds" } },
  args = { max = 0 },
  run = function(cx)
    local r = cx:users():doctor{ fix = cx.opts.fix and true or false }
    r.checks, r.problems = cli.array(r.checks), cli.array(r.problems)
    local lines, remaining, fixed, setup_hint, fixable, unfixable = {}, 0, 0, nil, 0, 0
    for _, c in ipairs(r.checks) do
      if not c.ok then
        remaining = remaining + 1
        setup_hint = setup_hint or c.hint
      end
      lines[#lines + 1] = string.format("%-4s %s%s", c.ok and "ok" or "FAIL", c.name, c.detail and (": " .. c.detail) or "")
    end
    for _, p in ipairs(r.problems) do
      if p.fixed then
        fixed = fixed + 1
      else
        remaining = remaining + 1
        if p.fixable then fixable = fixable + 1 else unfixable = unfixable + 1 end
      end
      lines[#lines + 1] = string.format("%-4s %s%s%s", p.fixed and "FIX" or "BAD", p.username and (p.username .. ": ") or "",
                                        p.detail or p.kind or "problem", p.fixed and " (fixed)" or "")
    end
    if remaining == 0 and r.ok == false then remaining = 1 end
    r.ok = remaining == 0
    if remaining == 0 then
      local n = r.counts or {}
      local function count(k, one, many) return plural(n[k] or 0, one, many) end
      lines[#lines + 1] = string.format("doctor: healthy (%s%s: %s and %s checked by id; %s, %s, %s)",
        fixed > 0 and (fixed .. " fixed; ") or "", count("users", "user", "users"),
        count("identities", "identity", "identities"), count("blocks", "block", "blocks"),
        count("attachments", "attachment", "attachments"), count("leases", "lease", "leases"),
        count("imports", "interrupted import", "interrupted imports"))
    else
      -- what helps: --fix cannot reach a server it cannot talk to, nor finish an import
      local advice
      if setup_hint then
        advice = " (" .. setup_hint .. "; --fix cannot help with that)"
      elseif fixable > 0 and not cx.opts.fix then
        advice = unfixable > 0 and " (run with --fix to heal; resume the imports with the commands above)"
          or " (run with --fix to heal)"
      elseif unfixable > 0 then
        advice = " (resume the imports with the commands above)"
      end
      lines[#lines + 1] = string.format("doctor: %d problem%s remain%s%s", remaining, remaining == 1 and "" or "s",
                                        remaining == 1 and "s" or "", advice or "")
    end
    return r, lines, remaining == 0 and 0 or 2
  end,
}
