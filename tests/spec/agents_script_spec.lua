-- scripts/agents.lua: list (all pages), show, create (with a model the server lists) and delete,
-- run as a child against the emulator; the new id captured as the README does.
local support = require "support"
local emulator = require "emulator"
local script_runner = require "script_runner"
local json = require("letta").json

describe("scripts/agents.lua", function()
  local emu, admin
  local sr, ctx = script_runner.suite(_ENV, function(e, c) emu, admin = e, c end)

  local function server_agents()
    local t = {}
    for _, a in ipairs(emu:state().agents) do t[a.id] = a end
    return t
  end

  it("prints --help naming the commands and how to capture a new id, touching nothing", function()
    local out, r = sr.ok("agents", { "--help" })
    assert.equal("", r.stderr)
    assert.matches("^usage: lettash %S*scripts/agents%.lua list | show <id> | create <name> %[%-%-model HANDLE%] "
                   .. "%[%-%-embedding HANDLE%] %[%-%-description TEXT%] | delete <id>", out)
    assert.matches("AGENT=%$%(bin/lettash scripts/agents%.lua create support %-%-quiet%)", out, 1)
    assert.equal(0, #emu:requests())
  end)

  it("lists every agent, through all pages, with id, name, model and number of blocks", function()
    assert.matches("^no agents on " .. emu.url:gsub("%p", "%%%0") .. " %(create one: agents%.lua create NAME%)\n$",
                   sr.ok("agents", { "list" }))
    local first = emulator.new_agent(admin, { name = "bot one", memory_blocks = { { label = "human", value = "x" },
                                                                                { label = "persona", value = "y" } } })
    for i = 2, 55 do emulator.new_agent(admin, { name = "bot " .. i }) end -- more than a page (50)
    local out = sr.ok("agents", { "list" })
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(57, #lines)
    assert.matches("^ID%s+NAME%s+MODEL%s+BLOCKS$", lines[1])
    assert.equal("55 agents", lines[57])
    local row = out:match("\n(" .. first.id:gsub("%-", "%%-") .. "[^\n]*)")
    assert.matches("^agent%-%S+  bot one%s+" .. first.model:gsub("%p", "%%%0") .. "%s+2$", row)
    -- the header's columns line up with the rows'
    assert.equal(lines[1]:find("NAME"), row:find("bot one"))
    local list = sr.json("agents", { "list" })
    assert.equal(55, #list)
    local ids = {}
    for _, a in ipairs(list) do ids[a.id] = a end
    assert.same({ "human", "persona" }, ids[first.id].block_labels)
    assert.equal(first.model, ids[first.id].model)
    local quiet = sr.ok("agents", { "list", "--quiet" })
    local n = 0
    for id in quiet:gmatch("[^\n]+") do
      assert.matches(emulator.id_pattern("agent"), id)
      n = n + 1
    end
    assert.equal(55, n)
  end)

  it("shows an agent: model, blocks with labels, tools, identities; never its secrets", function()
    local a = emulator.new_agent(admin, { name = "support", description = "Answers questions",
                                          memory_blocks = { { label = "human", value = "The people" } } })
    local identity = admin.identities:create{ identifier_key = "alice", name = "Alice", identity_type = "user" }
    admin.agents.identities:attach(a.id, identity.id)
    local out = sr.ok("agents", { "show", a.id })
    assert.matches("^" .. a.id:gsub("%-", "%%-") .. "  support\n", out)
    assert.matches("\n  model:       " .. a.model:gsub("%p", "%%%0") .. "\n", out)
    assert.matches("\n  description: Answers questions\n", out)
    assert.matches("\n  blocks:      1\n    human%s+block%-%S+ %(10 chars%)\n", out)
    assert.matches("\n  tools:       0\n", out)
    assert.matches("\n  identities:  alice " .. identity.id:gsub("%-", "%%-") .. "\n", out)
    local r = sr.json("agents", { "show", a.id })
    assert.equal(a.id, r.id)
    assert.equal("human", r.blocks[1].label)
    assert.equal(identity.id, r.identities[1].id)
    assert.is_true(json.is_array(r.tools))
    -- chosen fields only: an agent's secrets and tool environment variables (which the emulator
    -- does not keep) can never pass through
    local allowed = { id = true, name = true, model = true, embedding = true, description = true, created_at = true,
                      blocks = true, tools = true, identities = true, tags = true, timezone = true }
    for k in pairs(r) do assert(allowed[k], "unexpected field " .. k) end
    assert.no.matches("secrets", out)
  end)

  it("creates an agent with the first model the server lists, and --quiet prints only its id", function()
    local models = admin.models:list()
    local out = sr.ok("agents", { "create", "support", "--description", "Support bot" })
    local id = out:match("^created agent (agent%-[%x%-]+) %(support; model (%S+), embedding (%S+)%)\n$")
    assert.truthy(id, out)
    local a = server_agents()[id]
    assert.equal(models[1].handle, admin.agents:retrieve(id).model)
    assert.equal("Support bot", admin.agents:retrieve(id).description)
    assert.same({ "human", "persona" }, a.block_labels)
    -- as the README captures it
    local r = support.sh(support.quote(support.bin) .. " " .. support.quote(support.root .. "/scripts/agents.lua")
                         .. ' create helper --quiet > ' .. support.quote(ctx.dir .. "/id"),
                         { env = { LETTA_BASE_URL = emu.url, LETTA_STORE = ctx.store, LETTASH_LUA_PATH = support.lua_path,
                                   LETTA_MODEL = false, LETTA_EMBEDDING = false } })
    assert.equal(0, r.code, r.stderr)
    local captured = support.read_file(ctx.dir .. "/id")
    assert.matches(emulator.id_pattern("agent"):gsub("%$$", "\n$"), captured)
    assert.equal("helper", admin.agents:retrieve((captured:gsub("\n", ""))).name)
    local j = sr.json("agents", { "create", "third" })
    assert.matches(emulator.id_pattern("agent"), j.id)
    assert.equal("third", j.name)
  end)

  it("uses --model, else LETTA_MODEL, only when the server lists it; else one line listing them", function()
    local models = admin.models:list()
    local last = models[#models].handle
    local id = sr.ok("agents", { "create", "a1", "--model", last, "--quiet" }):gsub("\n", "")
    assert.equal(last, admin.agents:retrieve(id).model)
    id = sr.ok("agents", { "create", "a2", "--quiet" }, { env = { LETTA_MODEL = last } }):gsub("\n", "")
    assert.equal(last, admin.agents:retrieve(id).model)
    emu:clear_requests()
    local listed = {}
    for _, m in ipairs(models) do listed[#listed + 1] = m.handle end
    assert.equal("the server does not list the model 'openai/nope'; it lists: " .. table.concat(listed, ", "),
                 sr.fails("agents", { "create", "a3", "--model", "openai/nope" }))
    assert.equal("the server does not list the model 'openai/gone' (from LETTA_MODEL); it lists: " .. table.concat(listed, ", "),
                 sr.fails("agents", { "create", "a3" }, { env = { LETTA_MODEL = "openai/gone" } }))
    assert.matches("^the server does not list the embedding model 'x/y'; it lists: ",
                   sr.fails("agents", { "create", "a3", "--embedding", "x/y" }))
    assert.equal(0, emu:count("POST", "/v1/agents/"))
  end)

  it("refuses a name Letta would refuse, and misplaced options, before touching the server", function()
    assert.equal("agent name 'bad/name' has '/': Letta allows only letters, digits, spaces, '_', '-' and apostrophes",
                 sr.fails("agents", { "create", "bad/name" }))
    assert.equal("the agent name is empty", sr.fails("agents", { "create", " " }))
    assert.equal("create needs a NAME (try --help)", sr.fails("agents", { "create" }))
    assert.equal("unknown command 'remove' (list, show, create or delete; try --help)", sr.fails("agents", { "remove", "x" }))
    assert.equal("--model, --embedding and --description are for create", sr.fails("agents", { "list", "--model", "m/x" }))
    assert.equal(0, #emu:requests())
  end)

  it("deletes an agent and says which; a missing one is one clear line", function()
    local a = emulator.new_agent(admin, { name = "doomed" })
    assert.equal("deleted agent " .. a.id .. " (doomed), with its messages and archival memory\n",
                 sr.ok("agents", { "delete", a.id }))
    assert.is_nil(server_agents()[a.id])
    assert.equal("no agent " .. a.id .. " on " .. emu.url .. ": nothing deleted (agents.lua list shows them)",
                 sr.fails("agents", { "delete", a.id }))
    assert.equal("no agent " .. a.id .. " on " .. emu.url .. " (agents.lua list shows them)",
                 sr.fails("agents", { "show", a.id }))
  end)
end)
