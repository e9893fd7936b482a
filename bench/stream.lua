-- The lettash side of bench/stream.sh: one streamed reply of WORDS token deltas. The emulator
-- answers `you said: <text>` word by word when stream_tokens is true, so a WORDS-word message
-- brings back about WORDS assistant deltas.
--   bin/lettash bench/stream.lua URL AGENT_ID WORDS
-- Prints {"first_ms": from the call to the first event, "events": n, "seconds": from the call to
-- the last event, "rate": events/s from the first event to the last}.
local letta = require "letta"
local now = require("letta.loop").now

local url, agent, words = ...
words = math.tointeger(tonumber(words))
if not url or not agent or not words then
  io.stderr:write("usage: lettash bench/stream.lua URL AGENT_ID WORDS\n")
  os.exit(2)
end
local t = {}
for i = 1, words do t[i] = "w" .. i end
local text = table.concat(t, " ")

local client <close> = letta.client{ base_url = url, max_retries = 0 }
local events, deltas, last_word, first = 0, 0, nil, nil
local t0 = now()
for ev in client.agents.messages:stream(agent, { text = text, stream_tokens = true }) do
  first = first or now()
  events = events + 1
  if ev.message_type == "assistant_message" then
    deltas = deltas + 1
    last_word = ev.content
  end
end
local t1 = now()

if deltas < words or type(last_word) ~= "string" or not last_word:find("w" .. words, 1, true) then
  io.stderr:write(string.format("stream.lua: %d deltas, the last %q\n", deltas, tostring(last_word)))
  os.exit(1)
end
print(letta.json.encode({ first_ms = (first - t0) * 1000, events = events, seconds = t1 - t0,
                          rate = events / (t1 - first) }))
