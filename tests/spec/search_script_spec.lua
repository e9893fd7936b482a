-- scripts/search.lua: archival search as the notes do it, run as a child against the emulator:
-- what it shows (timestamp, tags, shortened text, the count), what it hides (lettash's import
-- bookkeeping tags), what it refuses before asking the server, and Letta 0.16.8's tags-after-top_k
-- quirk said plainly.
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local import = require "letta.import"
local json = require("letta").json

describe("scripts/search.lua", function()
  local emu, admin, agent
  local sr, ctx = script_runner.suite(_ENV, function(e, c) emu, admin = e, c end, { each = function()
    agent = emulator.new_agent(admin, { name = "searcher" })
  end })

  local function passage(text, tags)
    return admin.agents.passages:create(agent.id, { text = text, tags = tags })[1]
  end

  it("prints --help with the tags-after-top_k quirk and the hidden bookkeeping tags, touching nothing", function()
    emu:clear_requests()
    local out, r = sr.ok("search", { "--help" })
    assert.equal("", r.stderr)
    assert.matches("^usage: lettash %S*scripts/search%.lua <agent_id> <query> %[%-%-tags a,b%] %[%-%-match any|all%] "
                   .. "%[%-%-top%-k N%] %[%-%-json%]", out)
    assert.matches("picks the %-%-top%-k nearest passages FIRST and filters them by tags AFTER", out)
    assert.matches("lettash%-import:", out)
    assert.equal(0, #emu:requests())
    assert.falsy(support.read_file(ctx.store), "--help must not create the store")
  end)

  it("shows each passage with its timestamp, tags and text, nearest first, and the count", function()
    local p1 = passage("the sky is blue", { "facts", "weather" })
    passage("grass is green", { "facts" })
    passage("my cat sleeps all day", json.array())
    local out = sr.ok("search", { agent.id, "sky is blue" })
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(7, #lines)
    assert.matches("^1%. %d%d%d%d%-%d%d%-%d%dT[%d:%.]+%+00:00  %[facts, weather%]  " .. p1.id:gsub("%-", "%%-") .. "$", lines[1])
    assert.equal("   the sky is blue", lines[2])
    assert.matches("^2%. .*  %[facts%]  passage%-", lines[3])
    assert.matches("^3%. [^%[]*passage%-", lines[5]) -- no tags, no brackets
    assert.equal('3 results for "sky is blue" (top 5)', lines[7])
    -- top_k is always sent (Letta's default, 5, unless --top-k)
    local reqs = emu:requests()
    assert.matches("top_k=5", reqs[#reqs].query)
  end)

  it("shortens long or multi-line passages to one line in text, and gives all of it with --json", function()
    local long = "first line\n\n  second   line " .. string.rep("é", 300)
    passage(long)
    local out = sr.ok("search", { agent.id, "line" })
    local text = out:match("\n   ([^\n]*)\n")
    assert.equal("first line second line ", text:sub(1, 23))
    assert.equal(200, utf8.len(text:gsub("…$", "")))
    assert.matches("…$", text)
    local r = sr.json("search", { agent.id, "line" })
    assert.equal(long, r.results[1].content)
  end)

  it("never shows lettash's import bookkeeping tags, in text or JSON", function()
    local file = support.write_file(ctx.dir .. "/notes.jsonl",
      '{"text": "the sky is blue", "tags": ["facts"]}\n{"text": "plain passage about the sky"}\n')
    sr.ok("import", { agent.id, file }, { env = { LETTA_STORE = ctx.store } })
    -- the server holds the marker tags (the import needs them) ...
    local raw = admin.agents.passages:search(agent.id, { query = "sky" })
    local markers = 0
    for _, res in ipairs(raw.results) do
      for _, t in ipairs(res.tags) do
        if t:sub(1, #import.MARKER_PREFIX) == import.MARKER_PREFIX then markers = markers + 1 end
      end
    end
    assert.equal(2, markers)
    -- ... the script never shows them
    local out = sr.ok("search", { agent.id, "sky" })
    assert.no.matches("lettash%-import", out)
    assert.matches("%[facts%]", out)
    local r = sr.json("search", { agent.id, "sky" })
    assert.equal(2, r.count)
    local tags = {}
    for _, res in ipairs(r.results) do
      for _, t in ipairs(res.tags) do tags[#tags + 1] = t end
      assert.is_true(json.is_array(res.tags))
    end
    assert.same({ "facts" }, tags)
  end)

  it("filters by --tags with --match any or all, sent as Letta's tags and tag_match_mode", function()
    passage("sky one", { "a", "b" })
    passage("sky two", { "a" })
    passage("sky three", { "c" })
    local any = sr.json("search", { agent.id, "sky", "--tags", "a, c" })
    assert.equal(3, any.count)
    local all = sr.json("search", { agent.id, "sky", "--tags", "a,b", "--match", "all" })
    assert.equal(1, all.count)
    assert.equal("sky one", all.results[1].content)
    assert.same({ "a", "b" }, all.tags)
    assert.equal("all", all.match)
    local q = emu:requests()[#emu:requests()].query
    assert.matches("tags=a&tags=b", q, 1, true)
    assert.matches("tag_match_mode=all", q, 1, true)
  end)

  it("says that tags are matched only among the --top-k nearest when it finds fewer", function()
    passage("the weather today is sunny and warm", { "weather" })
    for i = 1, 4 do passage("cats and dogs " .. i, { "pets" }) end
    -- the tagged passage is not among the nearest 2 for this query: Letta 0.16.8 then finds nothing
    local out = sr.ok("search", { agent.id, "cats and dogs", "--tags", "weather", "--top-k", "2" })
    assert.matches('^0 results for "cats and dogs" %(top 2, tags any of weather%); tags are matched only among the 2 '
                   .. "nearest: raise %-%-top%-k to look further\n$", out)
    out = sr.ok("search", { agent.id, "cats and dogs", "--tags", "weather", "--top-k", "10" })
    assert.matches("sunny", out)
    assert.matches("1 result for", out)
  end)

  it("refuses bad arguments with one line, before asking the server", function()
    local id = agent.id
    emu:clear_requests()
    assert.equal("the query is empty (Letta finds nothing for a blank query)", sr.fails("search", { id, "  " }))
    assert.equal("the query is empty (Letta finds nothing for a blank query)", sr.fails("search", { id, "" }))
    for _, k in ipairs({ "0", "-1", "1.5", "x" }) do
      assert.equal("--top-k must be a whole number above 0, got '" .. k .. "'", sr.fails("search", { id, "sky", "--top-k", k }))
    end
    assert.equal("--match must be any or all, got 'some'", sr.fails("search", { id, "sky", "--match", "some" }))
    assert.matches("^%-%-tags: 'lettash%-import:abc' is lettash's own bookkeeping tag",
                   sr.fails("search", { id, "sky", "--tags", "x,lettash-import:abc" }))
    assert.matches('^unexpected argument \'is\' %(a query of several words needs quotes: search%.lua agent%-%S+ "sky is blue"%)$',
                   sr.fails("search", { id, "sky", "is", "blue" }))
    assert.matches("^missing arguments", sr.fails("search", { id }))
    assert.equal(0, #emu:requests())
  end)

  it("says in one line that an agent does not exist", function()
    local missing = emulator.missing_id("agent")
    local msg = sr.fails("search", { missing, "sky" })
    assert.equal("no agent " .. missing .. " on " .. emu.url .. " (agents.lua list shows them)", msg)
  end)

  it("prints the search as JSON with --json", function()
    local p = passage("the sky is blue", { "facts" })
    local r = sr.json("search", { agent.id, "sky", "--top-k", "3" })
    assert.equal(agent.id, r.agent_id)
    assert.equal("sky", r.query)
    assert.equal(3, r.top_k)
    assert.equal("any", r.match)
    assert.equal(1, r.count)
    assert.equal(p.id, r.results[1].id)
    assert.equal("the sky is blue", r.results[1].content)
    assert.is_string(r.results[1].timestamp)
    assert.same({ "facts" }, r.results[1].tags)
  end)
end)
