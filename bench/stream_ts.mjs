// The official TypeScript client's side of bench/stream.sh: the same streamed reply of WORDS token
// deltas as bench/stream.lua, through `client.agents.messages.stream` with stream_tokens
// (@letta-ai/letta-client 1.12.1: POST /v1/agents/{id}/messages/stream), pings skipped as lettash does.
//   node bench/stream_ts.mjs URL AGENT_ID WORDS
// Prints {"first_ms", "events", "seconds", "rate"} as bench/stream.lua does.
import { createRequire } from 'node:module';

// The SDK pinned in tests/conformance/package.json.
const require = createRequire(new URL('../tests/conformance/package.json', import.meta.url));
const { default: Letta } = await import(require.resolve('@letta-ai/letta-client'));

const [baseURL, agent, wordsArg] = process.argv.slice(2);
const words = Number(wordsArg);
if (!baseURL || !agent || !(words > 0)) {
  console.error('usage: node bench/stream_ts.mjs URL AGENT_ID WORDS');
  process.exit(2);
}
const text = Array.from({ length: words }, (_, i) => 'w' + (i + 1)).join(' ');
const client = new Letta({ baseURL, apiKey: 'none', maxRetries: 0 });

let events = 0, deltas = 0, lastWord, first;
const t0 = performance.now();
const stream = await client.agents.messages.stream(agent, {
  messages: [{ role: 'user', content: text }],
  stream_tokens: true,
});
for await (const ev of stream) {
  if (ev.message_type === 'ping') continue;
  first ??= performance.now();
  events++;
  if (ev.message_type === 'assistant_message') {
    deltas++;
    lastWord = ev.content;
  }
}
const t1 = performance.now();

if (deltas < words || typeof lastWord !== 'string' || !lastWord.includes('w' + words)) {
  console.error(`stream_ts.mjs: ${deltas} deltas, the last ${JSON.stringify(lastWord)}`);
  process.exit(1);
}
process.stdout.write(JSON.stringify({ first_ms: first - t0, events, seconds: (t1 - t0) / 1000,
                                      rate: events / ((t1 - first) / 1000) }) + '\n');
