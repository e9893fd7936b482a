// The official TypeScript client's side of bench/requests.sh: N health checks through
// `client.health()` (@letta-ai/letta-client 1.12.1: GET /v1/health/), each answer decoded, as a user
// of the SDK would make them.
//   node bench/requests_ts.mjs URL N                one after another (node keeps the connection alive)
//   node bench/requests_ts.mjs URL N inflight K     K promises sharing the N checks
import { createRequire } from 'node:module';

// The SDK pinned in tests/conformance/package.json.
const require = createRequire(new URL('../tests/conformance/package.json', import.meta.url));
const { default: Letta } = await import(require.resolve('@letta-ai/letta-client'));

const [baseURL, nArg, mode, kArg] = process.argv.slice(2);
const n = Number(nArg), k = Number(kArg);
if (!baseURL || !(n > 0) || (mode !== undefined && (mode !== 'inflight' || !(k > 0)))) {
  console.error('usage: node bench/requests_ts.mjs URL N [inflight K]');
  process.exit(2);
}
const client = new Letta({ baseURL, apiKey: 'none', maxRetries: 0 });

let last, left = n;
async function worker() {
  while (left > 0) {
    left--;
    last = await client.health();
  }
}
await Promise.all(Array.from({ length: mode ? k : 1 }, worker));

// Looked at once, so that the loop cannot be reduced to nothing.
if (!last || last.status !== 'ok') {
  console.error('requests_ts.mjs: unexpected answer');
  process.exit(1);
}
