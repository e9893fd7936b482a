// The official TypeScript client importing a JSONL file of passages, for bench/import.sh: the file
// is read line by line and the lines go out through `client.agents.passages.create` with N
// concurrent promises (as a user of the SDK would write it).
//   node bench/import_ts.mjs <base_url> <agent_id> <file.jsonl> [concurrency=16]
// Prints {"sent": n, "failed": n, "seconds": s, "rate": n/s} on stdout.
import { createRequire } from 'node:module';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

// The SDK pinned in tests/conformance/package.json (@letta-ai/letta-client 1.12.1).
const require = createRequire(new URL('../tests/conformance/package.json', import.meta.url));
const { default: Letta } = await import(require.resolve('@letta-ai/letta-client'));

const [baseURL, agentId, file, n = '16'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/import_ts.mjs <base_url> <agent_id> <file.jsonl> [concurrency]');
  process.exit(1);
}
const client = new Letta({ baseURL, apiKey: 'none' });
const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity })[Symbol.asyncIterator]();

let sent = 0, failed = 0;
const start = performance.now();
async function worker() {
  for (;;) {
    const { value, done } = await lines.next();
    if (done) return;
    if (!value.trim()) continue;
    const { text, tags } = JSON.parse(value);
    try {
      await client.agents.passages.create(agentId, { text, tags });
      sent++;
    } catch (e) {
      failed++;
    }
  }
}
await Promise.all(Array.from({ length: Number(n) }, worker));
const seconds = (performance.now() - start) / 1000;
process.stdout.write(JSON.stringify({ sent, failed, seconds, rate: sent / seconds }) + '\n');
process.exit(failed ? 2 : 0);
