// The official TypeScript client importing a JSONL file of passages in batches, for bench/import.sh:
// as a user of the SDK would write it, it finds the agent's archive (client.archives.list with
// agent_id; an agent without one gets it with its first passage, through client.agents.passages.create,
// whose answer's archive_id names it), then sends the lines in batches of B through
// client.archives.passages.createMany with K batches in flight, reading the file as it goes.
//   node bench/import_batch_ts.mjs <base_url> <agent_id> <file.jsonl> [batch=50] [in_flight=4]
// Prints {"sent": n, "failed": n, "seconds": s, "rate": n/s, "batch": B, "archive": "found"|"created"}.
import { createRequire } from 'node:module';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

// The SDK pinned in tests/conformance/package.json (@letta-ai/letta-client 1.12.1).
const require = createRequire(new URL('../tests/conformance/package.json', import.meta.url));
const { default: Letta } = await import(require.resolve('@letta-ai/letta-client'));

const [baseURL, agentId, file, b = '50', k = '4'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/import_batch_ts.mjs <base_url> <agent_id> <file.jsonl> [batch] [in_flight]');
  process.exit(1);
}
const batchSize = Number(b);
const client = new Letta({ baseURL, apiKey: 'none' });
// The iterator at once: lines read before it exists would be lost.
const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity })[Symbol.asyncIterator]();

// Batches of parsed lines; an async generator serves concurrent next() calls one after another,
// so every batch is whole.
async function* batches() {
  let batch = [];
  for (;;) {
    const { value: line, done } = await lines.next();
    if (done) break;
    if (!line.trim()) continue;
    const { text, tags } = JSON.parse(line);
    batch.push({ text, tags });
    if (batch.length === batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

let sent = 0, failed = 0, how = 'found';
const start = performance.now();
const source = batches();

// The agent's archive: listed, or made by the first passage. A server without GET /v1/archives/
// (before the route existed) counts as an agent without an archive.
async function archiveOf() {
  try {
    const page = await client.archives.list({ agent_id: agentId });
    if (page.items?.length) return page.items[0].id;
  } catch (e) {
    if (e?.status !== 404 && e?.status !== 405) throw e;
  }
  how = 'created';
  const { value: first, done } = await source.next();
  if (done) return null;
  const [passage] = await client.agents.passages.create(agentId, first.shift());
  sent++;
  if (first.length) pending.push(first);
  return passage.archive_id;
}
const pending = [];

async function worker(archiveId) {
  for (;;) {
    let batch = pending.shift();
    if (!batch) {
      const { value, done } = await source.next();
      if (done) return;
      batch = value;
    }
    try {
      await client.archives.passages.createMany(archiveId, { passages: batch });
      sent += batch.length;
    } catch (e) {
      failed += batch.length;
    }
  }
}

const archiveId = await archiveOf();
if (archiveId) await Promise.all(Array.from({ length: Number(k) }, () => worker(archiveId)));
const seconds = (performance.now() - start) / 1000;
process.stdout.write(JSON.stringify({ sent, failed, seconds, rate: sent / seconds, batch: batchSize, archive: how }) + '\n');
process.exit(failed ? 2 : 0);
