-- The demo workflow (run by scripts/demo.sh): an agent, two users onboarded, a streamed chat as
-- each, proof that each persona was attached only during its own send, a sample of archival
-- memory imported and searched, then doctor.
-- Runs against LETTA_BASE_URL (the model from GET /v1/models/, or LETTA_MODEL), with a store of its
-- own in a temporary directory (your store is not touched). On a real server (LETTASH_DEMO_EMULATOR
-- unset) it removes everything it created there, also when it fails half way: the users (persona
-- blocks and identities), the passages, the agent's archive, the agent and its memory blocks.
local letta = require "letta"
local errors = require "letta.errors"

local client = letta.client()
local real_server = os.getenv("LETTASH_DEMO_EMULATOR") ~= "1"
local tmp = io.popen("mktemp -d"):read("l")
local store = letta.store.open(tmp .. "/store")
local users = letta.users{ client = client, store = store }
local DEMO_USERS = { { "demo_alice", "Alice", { tea = "green" } }, { "demo_bob", "Bob", { tea = "black" } } }

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.stdout:flush() end

local function labels(agent_id)
  local t = {}
  for _, b in ipairs(client.agents.blocks:list(agent_id)) do t[#t + 1] = b.label end
  table.sort(t)
  return table.concat(t, ",")
end

local agent -- the agent created, for the clean-up

local function demo()
  say("server: %s (Letta %s)", client.base_url, client.health:check().version)
  -- A model the server serves (LETTA_MODEL if set and listed, else the first listed), and an
  -- embedding model when it lists one (LETTA_EMBEDDING likewise): Letta refuses an agent without a model.
  local model = client.models:pick()
  local embedding
  if os.getenv("LETTA_EMBEDDING") or #(client.models.embedding:list() or {}) > 0 then
    embedding = client.models.embedding:pick()
  end
  agent = client.agents:create{
    name = "lettash-demo", model = model, embedding = embedding,
    memory_blocks = { { label = "human", value = "The people I talk to." },
                      { label = "persona", value = "A helpful assistant." } },
  }
  say("agent:  %s (%s), core memory [%s]", agent.id, model, labels(agent.id))

  for _, u in ipairs(DEMO_USERS) do
    local r = users:onboard(u[1], { name = u[2], preferences = u[3] })
    for _, a in ipairs(r.actions) do say("onboard %s: %s", u[1], a) end
    if not r.changed then say("onboard %s: already onboarded, nothing changed", u[1]) end
  end
  local again = users:onboard("demo_alice")
  say("onboard demo_alice again: %s", again.changed and "changed something?!" or "nothing changed (idempotent)")

  for _, name in ipairs({ "demo_alice", "demo_bob" }) do
    io.write(string.format("chat as %s (streamed): ", name))
    local r = users:chat(name, agent.id, "Hello, I am " .. name, {
      stream = true, stream_tokens = true,
      on_event = function(ev)
        if ev.message_type == "assistant_message" then io.write(ev.content) io.stdout:flush() end
      end,
    })
    io.write("\n")
    local during = r.reply:match("%[blocks: ([^%]]*)%]")
    if during then say("  attached during the send: [%s]", during) end
    say("  attached after the send:  [%s]", labels(agent.id))
  end

  -- archival memory: a small sample file imported (exactly once), then a search over it
  local import = require("letta.import").run{
    client = client, store = store, agent_id = agent.id, source = "scripts/data/sample-passages.jsonl",
    progress = false,
  }
  say("import: %d passages sent (%.0f/s), %d bad lines", import.sent, import.rate, import.bad)
  local found = client.agents.passages:search(agent.id, { query = "tea", top_k = 3 })
  for _, r in ipairs(found.results) do say("  search 'tea': %s", r.content) end

  local report = users:doctor()
  for _, c in ipairs(report.checks) do say("doctor: %-13s %s  %s", c.name, c.ok and "ok" or "FAIL", c.detail) end
  say("doctor: %d problem(s)", #report.problems)
  return report.ok
end

-- Calls fn(...); a 404 (already gone) is fine.
local function gone(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok and not (errors.is(err) and err.status == 404) then error(err, 0) end
end

-- Removes from the server what the demo created. Deleting an agent leaves its blocks and its
-- archive (with the passages) on a Letta server: each is deleted by id.
local function clean_up()
  local n = { users = 0, passages = 0, blocks = 0, archives = 0 }
  for _, u in ipairs(DEMO_USERS) do
    if users:offboard(u[1]).changed then n.users = n.users + 1 end
  end
  if agent then
    local blocks, passages, archives = client.agents.blocks:list(agent.id), {}, {}
    for p in client.agents.passages:each(agent.id) do passages[#passages + 1] = p.id end
    -- the agent's archives (GET /v1/archives/?agent_id=; a server without that route has none to delete)
    local ok, list = pcall(client.get, client, "/v1/archives/", { query = { agent_id = agent.id } })
    if ok and type(list) == "table" then archives = list end
    for _, id in ipairs(passages) do gone(client.agents.passages.delete, client.agents.passages, agent.id, id) end
    n.passages = #passages
    gone(client.agents.delete, client.agents, agent.id)
    for _, a in ipairs(archives) do
      gone(client.delete, client, "/v1/archives/" .. a.id)
      n.archives = n.archives + 1
    end
    for _, b in ipairs(blocks) do
      gone(client.blocks.delete, client.blocks, b.id)
      n.blocks = n.blocks + 1
    end
  end
  if agent then
    say("cleaned up: %d users offboarded, %d passages, %d archives, the agent and its %d blocks deleted",
        n.users, n.passages, n.archives, n.blocks)
  elseif n.users > 0 then
    say("cleaned up: %d users offboarded (no agent was created)", n.users)
  end
end

local ok, res = pcall(demo)
local cok, cerr = true, nil
if real_server then -- leave nothing behind on a real server
  cok, cerr = pcall(clean_up)
  if not cok then io.stderr:write("demo: clean-up failed: ", tostring(cerr), "\n") end
end
store:close()
os.execute("rm -rf '" .. tmp .. "'")
if not ok then error(res, 0) end
os.exit(res and cok and 0 or 1)
