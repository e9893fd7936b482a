-- The demo workflow (run by scripts/demo.sh): an agent, two users onboarded, a streamed chat as
-- each, proof that each persona was attached only during its own send, a sample of archival
-- memory imported and searched, then doctor.
-- Runs against LETTA_BASE_URL (the model from GET /v1/models/, or LETTA_MODEL); on a real server it
-- cleans up what it created.
local letta = require "letta"

local client = letta.client()
local store = letta.store.open()
local users = letta.users{ client = client, store = store }
local real_server = os.getenv("LETTASH_DEMO_EMULATOR") ~= "1"

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.stdout:flush() end

local function labels(agent_id)
  local t = {}
  for _, b in ipairs(client.agents.blocks:list(agent_id)) do t[#t + 1] = b.label end
  table.sort(t)
  return table.concat(t, ",")
end

say("server: %s (Letta %s)", client.base_url, client.health:check().version)
-- A model the server serves (LETTA_MODEL if set and listed, else the first listed), and an
-- embedding model when it lists one (LETTA_EMBEDDING likewise): Letta refuses an agent without a model.
local model = client.models:pick()
local embedding
if os.getenv("LETTA_EMBEDDING") or #(client.models.embedding:list() or {}) > 0 then
  embedding = client.models.embedding:pick()
end
local agent = client.agents:create{
  name = "lettash-demo", model = model, embedding = embedding,
  memory_blocks = { { label = "human", value = "The people I talk to." },
                    { label = "persona", value = "A helpful assistant." } },
}
say("agent:  %s (%s), core memory [%s]", agent.id, model, labels(agent.id))

for _, u in ipairs({ { "demo_alice", "Alice", { tea = "green" } }, { "demo_bob", "Bob", { tea = "black" } } }) do
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

if real_server then -- leave nothing behind on a real server
  for _, name in ipairs({ "demo_alice", "demo_bob" }) do users:offboard(name) end
  client.agents:delete(agent.id)
  say("cleaned up: users offboarded, agent deleted")
end
store:close()
os.exit(report.ok and 0 or 1)
