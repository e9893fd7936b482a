-- Searches an agent's archival memory as the notes do (client.agents.passages:search): nearest
-- passages first, optionally filtered by tags. lettash's own bookkeeping tags (lettash-import:*,
-- which make imports exactly-once) are never shown, and cannot be searched for.
local cli = require "letta.cli"
local letta = require "letta"
local import = require "letta.import"

local MARKER = import.MARKER_PREFIX
local DEFAULT_TOP_K = 5 -- Letta's own default (RETRIEVAL_QUERY_DEFAULT_PAGE_SIZE)
local SHOWN = 200       -- characters of a passage shown in text output (--json has all of it)

-- The tags a user gave or sees: lettash's bookkeeping ones left out.
local function user_tags(tags)
  local out = {}
  for _, t in ipairs(type(tags) == "table" and tags or {}) do
    if type(t) ~= "string" or t:sub(1, #MARKER) ~= MARKER then out[#out + 1] = t end
  end
  return cli.array(out)
end

-- One line of at most n characters: whitespace runs become one space, a longer text ends in "…".
local function shorten(s, n)
  s = tostring(s):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  local len = utf8.len(s)
  if not len then return #s > n and s:sub(1, n) .. "…" or s end
  if len <= n then return s end
  return s:sub(1, utf8.offset(s, n + 1) - 1):gsub(" $", "") .. "…"
end

-- Letta 0.16.8 sends relevance only from a vector store (Turbopuffer): {rrf_score, vector_rank,
-- fts_rank}; the SQL path sends none.
local function score_of(r)
  local rel = type(r.relevance) == "table" and r.relevance or nil
  local s = rel and rel.rrf_score or r.score
  return type(s) == "number" and s or nil
end

-- The command line, checked before any request: agent_id, query, top_k, match, tags.
local function request_of(cx)
  local agent_id, query = cx.args[1], cx.args[2]
  if #cx.args > 2 then
    cli.usage_error("unexpected argument '" .. cx.args[3] .. "' (a query of several words needs quotes: "
                    .. "search.lua " .. agent_id .. " \"" .. table.concat(cx.args, " ", 2) .. "\")")
  end
  cli.check_id(agent_id, "agent id")
  if not query:find("%S") then cli.usage_error("the query is empty (Letta finds nothing for a blank query)") end
  local top_k = DEFAULT_TOP_K
  if cx.opts.top_k then
    top_k = math.tointeger(tonumber(cx.opts.top_k))
    if not top_k or top_k < 1 then cli.usage_error("--top-k must be a whole number above 0, got '" .. cx.opts.top_k .. "'") end
  end
  local match = cx.opts.match or "any"
  if match ~= "any" and match ~= "all" then cli.usage_error("--match must be any or all, got '" .. match .. "'") end
  local tags, seen = {}, {}
  for t in (cx.opts.tags or ""):gmatch("[^,]+") do
    t = t:match("^%s*(.-)%s*$")
    if t:sub(1, #MARKER) == MARKER then
      cli.usage_error("--tags: '" .. t .. "' is lettash's own bookkeeping tag (hidden from results); search by your own tags")
    end
    if t ~= "" and not seen[t] then tags[#tags + 1], seen[t] = t, true end
  end
  return agent_id, query, top_k, match, tags
end

-- The passages found, with lettash's own tags hidden; an agent that does not exist is one line.
local function search(client, agent_id, query, top_k, match, tags)
  local ok, res = pcall(client.agents.passages.search, client.agents.passages, agent_id,
                        { query = query, top_k = top_k, tags = #tags > 0 and tags or nil,
                          match = #tags > 0 and match or nil })
  if not ok then
    if letta.is_error(res, "not_found") then
      error("no agent " .. agent_id .. " on " .. client.base_url .. " (agents.lua list shows them)", 0)
    end
    error(res, 0)
  end
  local results = {}
  for _, r in ipairs(type(res) == "table" and type(res.results) == "table" and res.results or {}) do
    local item = {}
    for k, v in pairs(r) do item[k] = v end
    item.tags = user_tags(r.tags)
    results[#results + 1] = item
  end
  return results
end

-- The text output: two lines per passage and a summary.
local function lines_of(out)
  local lines, results, tags = {}, out.results, out.tags
  for i, r in ipairs(results) do
    local score = score_of(r)
    lines[#lines + 1] = string.format("%d. %s%s%s  %s", i, type(r.timestamp) == "string" and r.timestamp or "-",
                                      score and string.format("  score %.3f", score) or "",
                                      #r.tags > 0 and ("  [" .. table.concat(r.tags, ", ") .. "]") or "",
                                      type(r.id) == "string" and r.id or "")
    lines[#lines + 1] = "   " .. shorten(type(r.content) == "string" and r.content or "", SHOWN)
  end
  local summary = string.format("%d result%s for \"%s\" (top %d%s)", #results, #results == 1 and "" or "s",
                                shorten(out.query, 60), out.top_k,
                                #tags > 0 and (", tags " .. out.match .. " of " .. table.concat(tags, ",")) or "")
  if #tags > 0 and #results < out.top_k then
    summary = summary .. "; tags are matched only among the " .. out.top_k .. " nearest: raise --top-k to look further"
  end
  lines[#lines + 1] = summary
  return lines
end

cli.main{
  name = "search",
  usage = "<agent_id> <query> [--tags a,b] [--match any|all] [--top-k N] [--json]",
  summary = "Search an agent's archival memory (GET /v1/agents/{id}/archival-memory/search): the passages\n"
    .. "nearest to the query first (an agent without an embedding model: those containing it, oldest\n"
    .. "first), each with its timestamp, tags and text (shortened; --json gives all of it).",
  notes = "Letta 0.16.8 picks the --top-k nearest passages FIRST and filters them by tags AFTER, so a\n"
    .. "tagged passage outside the nearest N is not found: with --tags, raise --top-k to look further.\n"
    .. "--match any (default): a passage with any of the tags; all: with every one of them.\n"
    .. "Tags starting with '" .. MARKER .. "' are lettash's bookkeeping (they make imports exactly\n"
    .. "once): they are never shown, and --tags refuses them.",
  options = {
    { "tags", arg = "A,B", help = "only passages with these tags (comma-separated)" },
    { "match", arg = "any|all", help = "with --tags: any of them (default) or all of them" },
    { "top_k", arg = "N", help = "how many nearest passages to pick (default " .. DEFAULT_TOP_K .. ", Letta's)" },
  },
  args = { min = 2 },
  run = function(cx)
    local agent_id, query, top_k, match, tags = request_of(cx)
    local results = search(cx:client(), agent_id, query, top_k, match, tags)
    local out = { agent_id = agent_id, query = query, tags = cli.array(tags), match = match, top_k = top_k,
                  count = #results, results = cli.array(results) }
    return out, lines_of(out)
  end,
}
