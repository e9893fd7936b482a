-- Imports passages into an agent's archival memory from a file (or stdin): streamed, N requests
-- in flight, each item exactly once. Killed and run again with the same arguments, it continues
-- where it was; run again after it finished, it sends nothing.
local cli = require "letta.cli"
local import = require "letta.import"

cli.main{
  name = "import",
  usage = "<agent_id> <file|-> [--format jsonl|csv|text] [--tags a,b] [--dedupe position|content] [--batch N] [--concurrency N] [--chunk-size N] [--dry-run] [--json]",
  summary = "Import archival memory (passages) into an agent. Formats: JSONL (one {\"text\", \"tags\",\n"
    .. "\"created_at\"} per line), CSV with a header (text, tags separated by ';', created_at), or\n"
    .. "plain text (a passage per paragraph, long paragraphs cut at --chunk-size). Bad lines (a\n"
    .. "created_at that is not a date among them) are reported by number and skipped, never sent.",
  notes = "Batches: --batch N passages go in one request to the agent's archive, where the server\n"
    .. "embeds them in one call and writes them in one transaction (all or nothing). A batch it\n"
    .. "refuses is cut in halves until the item at fault is alone, and that line is reported.\n"
    .. "Exactly once: every item is journalled in the local store before it is sent; after an\n"
    .. "ambiguous failure the importer looks for the item's unique tag (lettash-import:<hash>)\n"
    .. "among the passages that hold its text before sending it again. --dedupe content: an item\n"
    .. "is its text, tags and created_at wherever it sits, so importing an edited file again sends\n"
    .. "only the new items, and an item repeated in the input is sent once (both count as already\n"
    .. "present); the default, position, makes every line its own item.\n"
    .. "The agent is checked before the first item, and the run stops at the first failure that no\n"
    .. "item can get past (TLS, 401/403, the agent missing, the server unreachable) with one line;\n"
    .. "the same command continues it (doctor lists runs that stopped, with that command).\n"
    .. "Exit status: 0 when every good item landed, 2 when the server refused some (listed by\n"
    .. "line), 1 when the run stopped (such a failure, or bad arguments).",
  options = {
    { "format", arg = "FORMAT", help = "jsonl (default; csv for *.csv, text for *.txt), csv or text" },
    { "tags", arg = "A,B", help = "tags added to every passage" },
    { "dedupe", arg = "MODE", help = "position (default: each line is an item) or content (an item is\n"
      .. "                   its text, tags and created_at, wherever it sits)" },
    { "batch", arg = "N", help = "passages per request (default 50), through the agent's archive\n"
      .. "                   (Letta 0.16.4 and later); 1: one per request, through the agent" },
    { "concurrency", arg = "N", help = "requests in flight (default 4 batches, or 16 passages)" },
    { "chunk_size", arg = "N", help = "largest passage in bytes (default 8000): longer text\n"
      .. "                   paragraphs are cut, longer JSONL/CSV items are bad lines" },
    { "dry_run", help = "read and check the input, send nothing" },
  },
  args = { min = 2, max = 2 },
  run = function(cx)
    local agent_id, source = cli.check_id(cx.args[1], "agent id"), cx.args[2]
    local function count(name)
      local v = cx.opts[name]
      if v == nil then return nil end
      local n = math.tointeger(tonumber(v))
      if not n or n < 1 then cli.usage_error("--" .. name:gsub("_", "-") .. " must be a whole number above 0") end
      return n
    end
    local format = cx.opts.format
    if format and not import.readers[format] then cli.usage_error("--format must be jsonl, csv or text") end
    local dedupe = cx.opts.dedupe
    if dedupe and dedupe ~= "position" and dedupe ~= "content" then cli.usage_error("--dedupe must be position or content") end
    local tags = {}
    for t in (cx.opts.tags or ""):gmatch("[^,]+") do tags[#tags + 1] = t end
    -- a bar on a terminal, else a line every 5 s on stderr; with --json lines only, and no final
    -- one (stdout holds the summary, as JSON)
    local progress
    if cx.opts.dry_run then progress = false elseif cx.json then progress = "lines" end
    local r = import.run{
      client = not cx.opts.dry_run and cx:client() or nil, store = not cx.opts.dry_run and cx:store() or nil,
      agent_id = agent_id, source = source, format = format, tags = tags, dedupe = dedupe,
      concurrency = count("concurrency"), batch = count("batch"), chunk_size = count("chunk_size"), dry_run = cx.opts.dry_run,
      progress = progress, progress_final = not cx.json,
    }
    r.bad_lines, r.failures, r.notes = cli.array(r.bad_lines), cli.array(r.failures), cli.array(r.notes)
    local lines = {}
    for _, b in ipairs(r.bad_lines) do lines[#lines + 1] = string.format("line %d: %s (skipped)", b.line, b.error) end
    for _, f in ipairs(r.failures) do lines[#lines + 1] = string.format("line %d: failed: %s", f.line, f.error) end
    if r.dry_run then
      lines[#lines + 1] = string.format("dry run: %d items to import, %d bad lines", r.items, r.bad)
    else
      lines[#lines + 1] = string.format("import: %d items: %d sent, %d %s, %d recovered, %d duplicates removed, "
                                        .. "%d bad lines, %d failed (%.1f s, %.0f passages/s, %s)", r.items, r.sent,
                                        r.already_present, r.dedupe == "content" and "already present" or "already done",
                                        r.recovered, r.duplicates_removed, r.bad, r.failed, r.seconds, r.rate,
                                        r.route == "batch" and r.batch .. " per request" or "one per request")
    end
    return r, lines, r.failed > 0 and 2 or 0
  end,
}
