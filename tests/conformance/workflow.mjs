// Conformance workflow: drives the Letta emulator with the official TypeScript SDK
// (@letta-ai/letta-client, pinned in package.json) and asserts real values.
//
// Usage: node workflow.mjs --base-url http://127.0.0.1:PORT [--api-key PW] [--label NAME]
//   (or env LETTA_BASE_URL / LETTA_API_KEY). With --api-key it also checks that a wrong key
//   is refused with the SDK's AuthenticationError and that health stays exempt.
//
// Output: one line per check, `ok - name` or `not ok - name: reason`, then `N passed, N failed`.
// Exit status 0 only when every check passed.

import Letta from '@letta-ai/letta-client';
import { VERSION } from '@letta-ai/letta-client/version';

// ---------------------------------------------------------------------------- args
function parseArgs(argv) {
  const out = { baseURL: process.env.LETTA_BASE_URL || null, apiKey: process.env.LETTA_API_KEY || null, label: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--base-url') out.baseURL = argv[++i];
    else if (a === '--api-key') out.apiKey = argv[++i];
    else if (a === '--label') out.label = argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.baseURL) throw new Error('--base-url (or LETTA_BASE_URL) is required');
  return out;
}

const args = parseArgs(process.argv.slice(2));
const prefix = args.label ? `${args.label}: ` : '';

// maxRetries 0: a retry would hide a wrong status or a dropped connection from the emulator.
const client = new Letta({ baseURL: args.baseURL, apiKey: args.apiKey, maxRetries: 0, timeout: 30_000 });

// ---------------------------------------------------------------------------- harness
let passed = 0;
let failed = 0;

class CheckError extends Error {}

function assert(cond, msg) {
  if (!cond) throw new CheckError(msg);
}
function eq(actual, expected, what) {
  if (actual !== expected) {
    throw new CheckError(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}
function short(v) {
  let s;
  try {
    s = JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s && s.length > 300 ? s.slice(0, 300) + '…' : s;
}
function describeError(e) {
  if (e instanceof CheckError) return e.message;
  if (e instanceof Letta.APIError) {
    return `${e.constructor.name} status=${e.status} ${short(e.error) ?? e.message}`;
  }
  return `${e?.constructor?.name ?? 'Error'}: ${e?.message ?? e}`;
}

// Runs one named check. `deps` are the names of values a check needs from earlier checks;
// if one of them is missing the check fails as "skipped" (still counted as a failure).
const ctx = {};
async function check(name, fn, deps = []) {
  const missing = deps.filter((d) => ctx[d] === undefined || ctx[d] === null);
  if (missing.length) {
    failed++;
    console.log(`not ok - ${prefix}${name}: skipped, earlier step did not provide ${missing.join(', ')}`);
    return;
  }
  try {
    await fn();
    passed++;
    console.log(`ok - ${prefix}${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${prefix}${name}: ${describeError(e).replace(/\s+/g, ' ')}`);
  }
}

async function expectError(promise, ErrClass, status) {
  try {
    const v = await promise;
    throw new CheckError(`expected ${ErrClass.name} (${status}), got success: ${short(v)}`);
  } catch (e) {
    if (e instanceof CheckError) throw e;
    assert(e instanceof ErrClass, `expected ${ErrClass.name}, got ${describeError(e)}`);
    eq(e.status, status, 'error status');
    return e;
  }
}

const UUID4 = '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';
const idRe = (p) => new RegExp(`^${p}-${UUID4}$`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The emulator answers deterministically: `[blocks: a,b] [sender: X] you said: TEXT`.
function parseReply(content) {
  const text = typeof content === 'string' ? content : Array.isArray(content) ? content.map((p) => p?.text ?? '').join('') : '';
  const m = /\[blocks: ([^\]]*)\]/.exec(text);
  const s = /\[sender: ([^\]]*)\]/.exec(text);
  const y = /you said: (.*)$/s.exec(text);
  return {
    text,
    blocks: m ? m[1].split(',').map((x) => x.trim()).filter(Boolean) : null,
    sender: s ? s[1].trim() : null,
    said: y ? y[1] : null,
  };
}
function sameSet(a, b) {
  const x = [...new Set(a)].sort();
  const y = [...new Set(b)].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const runTag = Math.random().toString(36).slice(2, 10);

// The emulator's admin API (/_emulator/..., not part of the Letta API): fault injection, the
// request log and the emulator's own response-schema check. Plain fetch, no credentials needed.
async function admin(method, path, body) {
  const r = await fetch(new URL(path, args.baseURL), {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const j = await r.json();
  if (!r.ok) throw new CheckError(`admin ${method} ${path}: ${r.status} ${short(j)}`);
  return j;
}
async function lastSeq() {
  return (await admin('GET', '/_emulator/requests?since=999999999')).last_seq;
}
async function requestsSince(seq) {
  return (await admin('GET', `/_emulator/requests?since=${seq}`)).requests;
}
async function withFault(rule, fn) {
  await admin('POST', '/_emulator/faults', { rules: [rule] });
  try {
    return await fn();
  } finally {
    await admin('DELETE', '/_emulator/faults');
  }
}
// A client with the SDK's default retry policy (2 retries), for the fault checks.
const retryClient = new Letta({ baseURL: args.baseURL, apiKey: args.apiKey, timeout: 30_000 });

// ---------------------------------------------------------------------------- workflow
await check('sdk version is 1.12.1', async () => {
  eq(VERSION, '1.12.1', 'installed @letta-ai/letta-client VERSION');
  assert(typeof Letta.NotFoundError === 'function', 'Letta.NotFoundError is exported');
});

await check('health', async () => {
  const h = await client.get('/v1/health/');
  eq(h?.status, 'ok', 'health.status');
  assert(typeof h.version === 'string' && h.version.length > 0, `health.version is a string: ${short(h)}`);
});

if (args.apiKey) {
  const bad = new Letta({ baseURL: args.baseURL, apiKey: args.apiKey + '-wrong', maxRetries: 0, timeout: 30_000 });
  const none = new Letta({ baseURL: args.baseURL, apiKey: null, maxRetries: 0, timeout: 30_000 });
  await check('auth: wrong apiKey raises AuthenticationError 401 {"detail":"Unauthorized"}', async () => {
    const e = await expectError(bad.blocks.list(), Letta.AuthenticationError, 401);
    eq(e.error?.detail, 'Unauthorized', '401 body detail');
  });
  await check('auth: missing apiKey raises AuthenticationError 401', async () => {
    await expectError(none.agents.list(), Letta.AuthenticationError, 401);
  });
  await check('auth: health is exempt from the password', async () => {
    const h = await bad.get('/v1/health/');
    eq(h?.status, 'ok', 'health.status with a wrong key');
  });
}

const agentName = `conformance-${runTag}`;
// A script picks its model the way it would on a real server: from the server's own lists.
await check('models.list and models.embeddings.list offer handles', async () => {
  const models = await client.models.list();
  assert(Array.isArray(models) && models.length > 0, `models: ${short(models)}`);
  for (const m of models) {
    assert(typeof m.handle === 'string' && m.handle.includes('/'), `model handle: ${short(m.handle)}`);
    eq(m.model_type, 'llm', 'model_type');
  }
  const embeddings = await client.models.embeddings.list();
  assert(Array.isArray(embeddings) && embeddings.length > 0, `embedding models: ${short(embeddings)}`);
  eq(embeddings[0].model_type, 'embedding', 'embedding model_type');
  ctx.model = models[0].handle;
  ctx.embedding = embeddings[0].handle;
});

await check('agents.create without a model raises BadRequestError 400', async () => {
  const e = await expectError(client.agents.create({ name: agentName }), Letta.BadRequestError, 400);
  eq(e.error?.detail, 'INVALID_ARGUMENT: Must specify either model or llm_config in request', '400 detail');
});

await check('agents.create (name, model, embedding)', async () => {
  const a = await client.agents.create({ name: agentName, model: ctx.model, embedding: ctx.embedding });
  assert(idRe('agent').test(a.id), `agent id format: ${a.id}`);
  eq(a.name, agentName, 'agent.name');
  eq(a.model, ctx.model, 'agent.model');
  eq(a.embedding, ctx.embedding, 'agent.embedding');
  for (const f of ['system', 'agent_type', 'llm_config', 'memory', 'blocks', 'tools', 'sources', 'tags']) {
    assert(f in a, `AgentState has required field ${f}`);
  }
  assert(Array.isArray(a.blocks) && Array.isArray(a.tools) && Array.isArray(a.tags), 'blocks/tools/tags are arrays');
  ctx.agent = a;
}, ['model', 'embedding']);

await check('agents.create with only a model gets a generated name; agents.delete', async () => {
  const a = await client.agents.create({ model: ctx.model });
  assert(idRe('agent').test(a.id), `agent id format: ${a.id}`);
  assert(typeof a.name === 'string' && a.name.length > 0, `generated name: ${short(a.name)}`);
  const r = await client.agents.delete(a.id);
  eq(r?.message, `Agent id=${a.id} successfully deleted`, 'delete message');
}, ['model']);

await check('agents.create with an unknown model handle raises NotFoundError 404', async () => {
  await expectError(client.agents.create({ model: `${ctx.model}-nope-${runTag}` }), Letta.NotFoundError, 404);
}, ['model']);

await check('agents.update changes the given fields only', async () => {
  const a = await client.agents.update(ctx.agent.id, { description: 'conformance agent', tags: ['conf'] });
  eq(a.description, 'conformance agent', 'agent.description');
  eq(a.name, agentName, 'agent.name unchanged');
  eq(JSON.stringify(a.tags), '["conf"]', 'agent.tags');
}, ['agent']);

await check('GET /v1/agents/count counts the agent', async () => {
  const n = await client.get('/v1/agents/count', { query: { name: agentName } });
  eq(n, 1, 'count of agents with the name');
}, ['agent']);

await check('agents.retrieve returns the created agent', async () => {
  const a = await client.agents.retrieve(ctx.agent.id);
  eq(a.id, ctx.agent.id, 'agent.id');
  eq(a.name, agentName, 'agent.name');
}, ['agent']);

await check('agents.list finds the agent by name', async () => {
  const page = await client.agents.list({ name: agentName });
  const items = page.getPaginatedItems();
  assert(items.some((x) => x.id === ctx.agent.id), `agent ${ctx.agent.id} in list of ${items.length}`);
}, ['agent']);

// -------------------------------------------------------------- global blocks CRUD
const blockLabel = `conf_${runTag}`;
await check('blocks.create', async () => {
  const b = await client.blocks.create({ label: blockLabel, value: 'initial value', description: 'conformance block' });
  assert(idRe('block').test(b.id), `block id format: ${b.id}`);
  eq(b.label, blockLabel, 'block.label');
  eq(b.value, 'initial value', 'block.value');
  eq(b.description, 'conformance block', 'block.description');
  eq(b.limit, 100000, 'block.limit default');
  eq(b.read_only, false, 'block.read_only default');
  eq(b.is_template, false, 'block.is_template default');
  assert(!('created_at' in b), 'BlockResponse has no created_at');
  ctx.block = b;
});

await check('blocks.retrieve', async () => {
  const b = await client.blocks.retrieve(ctx.block.id);
  eq(b.id, ctx.block.id, 'block.id');
  eq(b.value, 'initial value', 'block.value');
  eq(b.label, blockLabel, 'block.label');
}, ['block']);

await check('blocks.update (partial PATCH keeps other fields)', async () => {
  const b = await client.blocks.update(ctx.block.id, { value: 'updated value' });
  eq(b.id, ctx.block.id, 'block.id');
  eq(b.value, 'updated value', 'block.value after update');
  eq(b.label, blockLabel, 'label unchanged');
  eq(b.description, 'conformance block', 'description unchanged');
  const again = await client.blocks.retrieve(ctx.block.id);
  eq(again.value, 'updated value', 'value persisted');
}, ['block']);

await check('blocks.delete, then retrieve raises NotFoundError', async () => {
  const tmp = await client.blocks.create({ label: `tmp_${runTag}`, value: 'to be deleted' });
  const r = await client.blocks.delete(tmp.id);
  eq(r, null, 'blocks.delete body (JSON null)');
  const e = await expectError(client.blocks.retrieve(tmp.id), Letta.NotFoundError, 404);
  assert(typeof e.error?.detail === 'string', `404 body has a string detail: ${short(e.error)}`);
});

await check('missing block raises Letta.NotFoundError (404, {"detail": ...})', async () => {
  const missing = 'block-00000000-0000-4000-8000-000000000000';
  const e = await expectError(client.blocks.retrieve(missing), Letta.NotFoundError, 404);
  assert(e instanceof Letta.APIError, 'NotFoundError is an APIError');
  assert(typeof e.error?.detail === 'string' && e.error.detail.length > 0, `detail: ${short(e.error)}`);
});

await check('malformed block id raises UnprocessableEntityError 422 with a string detail', async () => {
  const e = await expectError(client.blocks.retrieve('block-not-a-uuid'), Letta.UnprocessableEntityError, 422);
  assert(typeof e.error?.detail === 'string', `422 detail is a string: ${short(e.error)}`);
});

// -------------------------------------------------------------- agent <-> block
await check('agents.blocks.attach returns AgentState', async () => {
  const persona = await client.blocks.create({ label: `persona_${runTag}`, value: 'I am a test persona.' });
  ctx.persona = persona;
  const a = await client.agents.blocks.attach(ctx.block.id, { agent_id: ctx.agent.id });
  eq(a.id, ctx.agent.id, 'AgentState.id');
  const a2 = await client.agents.blocks.attach(persona.id, { agent_id: ctx.agent.id });
  eq(a2.id, ctx.agent.id, 'AgentState.id (second attach)');
}, ['agent', 'block']);

await check('agents.blocks.attach is idempotent', async () => {
  const a = await client.agents.blocks.attach(ctx.block.id, { agent_id: ctx.agent.id });
  eq(a.id, ctx.agent.id, 'AgentState.id');
  const page = await client.agents.blocks.list(ctx.agent.id);
  const n = page.getPaginatedItems().filter((b) => b.id === ctx.block.id).length;
  eq(n, 1, 'block listed once after a repeated attach');
}, ['agent', 'block', 'persona']);

await check('agents.blocks.attach of a second block with a taken label raises ConflictError 409', async () => {
  const dup = await client.blocks.create({ label: blockLabel, value: 'same label' });
  ctx.dup = dup;
  await expectError(client.agents.blocks.attach(dup.id, { agent_id: ctx.agent.id }), Letta.ConflictError, 409);
}, ['agent', 'block']);

await check('agents.blocks.list shows the attached labels', async () => {
  const labels = [];
  for await (const b of client.agents.blocks.list(ctx.agent.id)) labels.push(b.label);
  assert(labels.includes(blockLabel), `${blockLabel} in ${short(labels)}`);
  assert(labels.includes(ctx.persona.label), `${ctx.persona.label} in ${short(labels)}`);
  const ids = (await client.agents.blocks.list(ctx.agent.id)).getPaginatedItems().map((b) => b.id);
  eq(ids.join(','), [...ids].sort().reverse().join(','), 'core-memory list sorted by block id, desc by default');
}, ['agent', 'block', 'persona']);

await check('agents.blocks.retrieve / update by label', async () => {
  const b = await client.agents.blocks.retrieve(ctx.persona.label, { agent_id: ctx.agent.id });
  eq(b.id, ctx.persona.id, 'block by label id');
  const u = await client.agents.blocks.update(ctx.persona.label, { agent_id: ctx.agent.id, value: 'persona v2' });
  eq(u.value, 'persona v2', 'value after label update');
  eq((await client.blocks.retrieve(ctx.persona.id)).value, 'persona v2', 'global block sees the label update');
  await expectError(
    client.agents.blocks.retrieve(`nolabel_${runTag}`, { agent_id: ctx.agent.id }),
    Letta.NotFoundError,
    404,
  );
}, ['agent', 'persona']);

await check('agents.retrieve: no relationships for a 1.x SDK unless include=agent.blocks', async () => {
  const plain = await client.agents.retrieve(ctx.agent.id);
  eq(plain.blocks.length, 0, 'blocks without include');
  const full = await client.agents.retrieve(ctx.agent.id, { include: ['agent.blocks'] });
  const labels = full.blocks.map((b) => b.label);
  assert(labels.includes(blockLabel) && labels.includes(ctx.persona.label), `blocks with include: ${short(labels)}`);
}, ['agent', 'block', 'persona']);

// -------------------------------------------------------------- identities (agent <-> identity)
await check('agents.identities.attach (identity created through the SDK transport)', async () => {
  assert(typeof client.agents.identities?.attach === 'function', 'SDK has agents.identities.attach');
  // SDK 1.12.1 no longer has client.identities; the route is still served, so use the raw transport.
  const ident = await client.post('/v1/identities/', {
    body: { identifier_key: `conf-${runTag}`, name: 'Conformance User', identity_type: 'user' },
  });
  assert(idRe('identity').test(ident.id), `identity id format: ${ident.id}`);
  ctx.identity = ident;
  const r = await client.agents.identities.attach(ident.id, { agent_id: ctx.agent.id });
  eq(r, null, 'agents.identities.attach body (JSON null)');
  // Letta 0.16.8 never fills an Identity's agent_ids (orm/identity.py:Identity.to_pydantic): the link
  // is read through /v1/identities/{id}/agents.
  const got = await client.get(`/v1/identities/${ident.id}`);
  eq(JSON.stringify(got.agent_ids), '[]', 'identity.agent_ids is always [] on 0.16.8');
  const linked = await client.get(`/v1/identities/${ident.id}/agents`);
  assert(linked.some((x) => x.id === ctx.agent.id), `/identities/{id}/agents has the agent: ${short(linked.map((x) => x.id))}`);
  const a = await client.agents.retrieve(ctx.agent.id, { include: ['agent.identities'] });
  assert((a.identities ?? []).some((i) => i.id === ident.id), `agent.identities has it: ${short(a.identities)}`);
}, ['agent']);

// -------------------------------------------------------------- messages
const hello = `hello from the SDK ${runTag}`;
await check('agents.messages.create (non-streaming) reply shows the attached blocks and sender', async () => {
  const r = await client.agents.messages.create(ctx.agent.id, {
    messages: [{ role: 'user', content: hello, sender_id: ctx.identity?.id }],
  });
  assert(Array.isArray(r.messages), 'LettaResponse.messages is an array');
  const am = r.messages.find((m) => m.message_type === 'assistant_message');
  assert(am, `an assistant_message among ${short(r.messages.map((m) => m.message_type))}`);
  assert(idRe('message').test(am.id), `message id format: ${am.id}`);
  assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/.test(am.date), `date with seconds precision and offset: ${am.date}`);
  const p = parseReply(am.content);
  assert(p.blocks, `reply has "[blocks: ...]": ${short(p.text)}`);
  assert(sameSet(p.blocks, [blockLabel, ctx.persona.label]), `reply block labels ${short(p.blocks)}`);
  eq(p.said, hello, 'echoed text');
  if (ctx.identity) eq(p.sender, ctx.identity.id, 'reply sender');
  eq(r.stop_reason?.message_type, 'stop_reason', 'stop_reason.message_type');
  eq(r.stop_reason?.stop_reason, 'end_turn', 'stop_reason.stop_reason');
  eq(r.usage?.message_type, 'usage_statistics', 'usage.message_type');
  assert(Number.isInteger(r.usage?.total_tokens), `usage.total_tokens is an integer: ${short(r.usage)}`);
  ctx.replyText = p.text;
}, ['agent', 'block', 'persona']);

await check('agents.messages.list contains the user message and the reply', async () => {
  const msgs = [];
  for await (const m of client.agents.messages.list(ctx.agent.id, { order: 'asc' })) msgs.push(m);
  const um = msgs.find((m) => m.message_type === 'user_message' && (m.content === hello || m.content?.[0]?.text === hello));
  assert(um, `user message in ${msgs.length} messages`);
  if (ctx.identity) eq(um.sender_id, ctx.identity.id, 'user_message.sender_id');
  assert(msgs.some((m) => m.message_type === 'assistant_message' && m.content === ctx.replyText), 'reply in history');
  const newest = (await client.agents.messages.list(ctx.agent.id, { limit: 1 })).getPaginatedItems();
  // limit counts stored rows; the newest row (the reply) lists as reasoning + assistant message
  // sharing one id (message_manager.py:list_messages, then Message.to_letta_messages).
  assert(newest.length >= 1, 'limit=1 gives the newest row');
  for (const m of newest) eq(m.id, msgs[msgs.length - 1].id, 'default order=desc selects the newest row');
}, ['agent', 'replyText']);

await check('messages.create with streaming=true yields assistant_message, stop_reason, usage', async () => {
  const text = `stream please ${runTag}`;
  const stream = await client.agents.messages.create(ctx.agent.id, {
    messages: [{ role: 'user', content: text }],
    streaming: true,
  });
  const types = [];
  let assistant = '';
  let stop = null;
  let usage = null;
  for await (const ev of stream) {
    types.push(ev.message_type);
    if (ev.message_type === 'assistant_message') assistant += typeof ev.content === 'string' ? ev.content : '';
    if (ev.message_type === 'stop_reason') stop = ev;
    if (ev.message_type === 'usage_statistics') usage = ev;
  }
  assert(types.includes('assistant_message'), `event types ${short(types)}`);
  const p = parseReply(assistant);
  assert(p.blocks && sameSet(p.blocks, [blockLabel, ctx.persona.label]), `stream reply blocks: ${short(p.text)}`);
  eq(p.said, text, 'stream echoed text');
  eq(stop?.stop_reason, 'end_turn', 'stop_reason');
  assert(usage && Number.isInteger(usage.total_tokens), `usage_statistics: ${short(usage)}`);
  const last = types.filter((t) => t !== 'ping');
  eq(last.slice(-2).join(','), 'stop_reason,usage_statistics', 'stream ends with stop_reason then usage');
}, ['agent', 'block', 'persona']);

await check('messages.create streaming with stream_tokens=true: deltas share an id and rebuild the reply', async () => {
  const text = `tokens ${runTag}`;
  const stream = await client.agents.messages.create(ctx.agent.id, {
    messages: [{ role: 'user', content: text }],
    streaming: true,
    stream_tokens: true,
  });
  const chunks = [];
  let stop = null;
  for await (const ev of stream) {
    if (ev.message_type === 'assistant_message') chunks.push(ev);
    if (ev.message_type === 'stop_reason') stop = ev;
  }
  assert(chunks.length > 1, `more than one assistant delta (got ${chunks.length})`);
  eq(new Set(chunks.map((c) => c.id)).size, 1, 'distinct assistant message ids across deltas');
  const p = parseReply(chunks.map((c) => c.content).join(''));
  eq(p.said, text, 'rebuilt reply echo');
  eq(stop?.stop_reason, 'end_turn', 'stop_reason');
}, ['agent']);

await check('messages.stream (deprecated /messages/stream route)', async () => {
  const text = `old stream ${runTag}`;
  const stream = await client.agents.messages.stream(ctx.agent.id, { messages: [{ role: 'user', content: text }] });
  let assistant = '';
  const types = [];
  for await (const ev of stream) {
    types.push(ev.message_type);
    if (ev.message_type === 'assistant_message') assistant += ev.content;
  }
  eq(parseReply(assistant).said, text, 'echo');
  assert(types.includes('stop_reason') && types.includes('usage_statistics'), `types ${short(types)}`);
}, ['agent']);

await check('messages.create with stream_tokens but no streaming raises UnprocessableEntityError 422', async () => {
  const e = await expectError(
    client.agents.messages.create(ctx.agent.id, { messages: [{ role: 'user', content: 'x' }], stream_tokens: true }),
    Letta.UnprocessableEntityError,
    422,
  );
  assert(typeof e.error?.detail === 'string', `string detail: ${short(e.error)}`);
}, ['agent']);

// -------------------------------------------------------------- async run
await check('messages.createAsync -> runs.retrieve until completed -> runs.messages.list', async () => {
  const text = `async ${runTag}`;
  const run = await client.agents.messages.createAsync(ctx.agent.id, { messages: [{ role: 'user', content: text }] });
  assert(/^run-/.test(run.id), `run id: ${run.id}`);
  eq(run.agent_id, ctx.agent.id, 'run.agent_id');
  eq(run.status, 'created', 'status returned by createAsync');
  eq(run.background, true, 'run.background');
  let cur = run;
  const seen = new Set([run.status]);
  const deadline = Date.now() + 20_000;
  while (!['completed', 'failed', 'cancelled'].includes(cur.status)) {
    assert(Date.now() < deadline, `run still ${cur.status} after 20 s`);
    await sleep(50);
    cur = await client.runs.retrieve(run.id);
    seen.add(cur.status);
  }
  eq(cur.status, 'completed', `final status (seen ${[...seen].join('>')})`);
  eq(cur.id, run.id, 'run.id');
  assert(typeof cur.completed_at === 'string', `completed_at set: ${short(cur.completed_at)}`);
  eq(cur.stop_reason, 'end_turn', 'run.stop_reason');
  const msgs = [];
  for await (const m of client.runs.messages.list(run.id)) msgs.push(m);
  const am = msgs.find((m) => m.message_type === 'assistant_message');
  assert(am, `assistant_message in run messages ${short(msgs.map((m) => m.message_type))}`);
  eq(parseReply(am.content).said, text, 'run reply echo');
  assert(msgs.every((m) => m.run_id === run.id), `every run message carries the run id: ${short(msgs.map((m) => m.run_id))}`);
  const um = msgs.findIndex((m) => m.message_type === 'user_message');
  assert(um >= 0 && um < msgs.indexOf(am), 'run messages in ascending order (user message before the reply)');
  const runs = client.runs.list({ agent_id: ctx.agent.id });
  let found = false;
  for await (const r of runs) if (r.id === run.id) found = true;
  assert(found, 'runs.list({agent_id}) contains the run');
}, ['agent']);

// -------------------------------------------------------------- detach (after the sends)
await check('agents.blocks.detach removes the label; second detach raises NotFoundError', async () => {
  const a = await client.agents.blocks.detach(ctx.block.id, { agent_id: ctx.agent.id });
  eq(a.id, ctx.agent.id, 'AgentState.id');
  const labels = [];
  for await (const b of client.agents.blocks.list(ctx.agent.id)) labels.push(b.label);
  assert(!labels.includes(blockLabel), `${blockLabel} gone from ${short(labels)}`);
  assert(labels.includes(ctx.persona.label), `${ctx.persona.label} still attached`);
  await expectError(client.agents.blocks.detach(ctx.block.id, { agent_id: ctx.agent.id }), Letta.NotFoundError, 404);
  const r = await client.agents.messages.create(ctx.agent.id, { messages: [{ role: 'user', content: 'after detach' }] });
  const am = r.messages.find((m) => m.message_type === 'assistant_message');
  const p = parseReply(am?.content);
  assert(p.blocks && sameSet(p.blocks, [ctx.persona.label]), `reply after detach lists only the persona: ${short(p.text)}`);
}, ['agent', 'block', 'persona']);

await check('agents.identities.detach', async () => {
  const r = await client.agents.identities.detach(ctx.identity.id, { agent_id: ctx.agent.id });
  eq(r, null, 'agents.identities.detach body (JSON null)');
  const got = await client.get(`/v1/identities/${ctx.identity.id}`);
  assert(!got.agent_ids.includes(ctx.agent.id), `identity.agent_ids no longer has the agent: ${short(got.agent_ids)}`);
}, ['agent', 'identity']);

// -------------------------------------------------------------- passages
await check('agents.passages.create returns an array with the passage', async () => {
  const r = await client.agents.passages.create(ctx.agent.id, { text: `the sky is green ${runTag}`, tags: ['color', 'sky'] });
  assert(Array.isArray(r), `create returns an array: ${short(r)}`);
  eq(r.length, 1, 'one passage');
  const p = r[0];
  assert(typeof p.id === 'string' && p.id.startsWith('passage-'), `passage id: ${p.id}`);
  eq(p.text, `the sky is green ${runTag}`, 'passage.text');
  assert(sameSet(p.tags ?? [], ['color', 'sky']), `passage.tags ${short(p.tags)}`);
  assert('embedding' in p && 'embedding_config' in p, 'Passage has embedding and embedding_config');
  ctx.passage = p;
  const r2 = await client.agents.passages.create(ctx.agent.id, { text: `the grass is blue ${runTag}`, tags: ['color'] });
  ctx.passage2 = r2[0];
}, ['agent']);

await check('agents.passages.list returns both passages (ascending by default)', async () => {
  const list = await client.agents.passages.list(ctx.agent.id);
  assert(Array.isArray(list), 'list is a bare array');
  const ids = list.map((p) => p.id);
  const i1 = ids.indexOf(ctx.passage.id);
  const i2 = ids.indexOf(ctx.passage2.id);
  assert(i1 >= 0 && i2 >= 0, `both passages listed: ${short(ids)}`);
  assert(i1 < i2, 'older passage first');
  const filtered = await client.agents.passages.list(ctx.agent.id, { search: 'grass' });
  assert(filtered.length === 1 && filtered[0].id === ctx.passage2.id, `search filter: ${short(filtered.map((p) => p.text))}`);
  const lim = await client.agents.passages.list(ctx.agent.id, { limit: 1 });
  eq(lim.length, 1, 'limit=1');
}, ['agent', 'passage', 'passage2']);

await check('agents.passages.search returns {results, count}', async () => {
  const r = await client.agents.passages.search(ctx.agent.id, { query: 'sky' });
  assert(Array.isArray(r.results), `results array: ${short(r)}`);
  eq(r.count, r.results.length, 'count == results.length');
  const hit = r.results.find((x) => x.id === ctx.passage.id);
  assert(hit, `passage found by query: ${short(r.results)}`);
  eq(hit.content, ctx.passage.text, 'result.content');
  assert(typeof hit.timestamp === 'string', 'result.timestamp is a string');
  assert(sameSet(hit.tags ?? [], ['color', 'sky']), `result.tags ${short(hit.tags)}`);
  const all = await client.agents.passages.search(ctx.agent.id, { query: runTag, tags: ['color', 'sky'], tag_match_mode: 'all' });
  assert(all.results.length === 1 && all.results[0].id === ctx.passage.id, `tag_match_mode=all: ${short(all.results)}`);
  const any = await client.agents.passages.search(ctx.agent.id, { query: runTag, tags: ['sky', 'nothing'], tag_match_mode: 'any' });
  assert(any.results.some((x) => x.id === ctx.passage.id), `tag_match_mode=any: ${short(any.results)}`);
  const top = await client.agents.passages.search(ctx.agent.id, { query: runTag, top_k: 1 });
  eq(top.count, 1, 'top_k=1 count');
}, ['agent', 'passage']);

await check('agents.passages.delete removes it; a second delete raises NotFoundError', async () => {
  const r = await client.agents.passages.delete(ctx.passage.id, { agent_id: ctx.agent.id });
  assert(r && typeof r.message === 'string' && r.message.includes(ctx.passage.id), `delete body: ${short(r)}`);
  const list = await client.agents.passages.list(ctx.agent.id);
  assert(!list.some((p) => p.id === ctx.passage.id), 'deleted passage no longer listed');
  assert(list.some((p) => p.id === ctx.passage2.id), 'other passage still listed');
  await expectError(client.agents.passages.delete(ctx.passage.id, { agent_id: ctx.agent.id }), Letta.NotFoundError, 404);
}, ['agent', 'passage', 'passage2']);

// -------------------------------------------------------------- wire details and faults
await check('content types: JSON is application/json, SSE is text/event-stream', async () => {
  const { data, response } = await client.blocks.retrieve(ctx.persona.id).withResponse();
  eq(data.id, ctx.persona.id, 'block id');
  assert(/^application\/json\b/.test(response.headers.get('content-type') ?? ''), `JSON content-type: ${response.headers.get('content-type')}`);
  const { data: stream, response: r2 } = await client.agents.messages
    .create(ctx.agent.id, { messages: [{ role: 'user', content: 'ct' }], streaming: true })
    .withResponse();
  assert(/^text\/event-stream\b/.test(r2.headers.get('content-type') ?? ''), `SSE content-type: ${r2.headers.get('content-type')}`);
  let n = 0;
  for await (const ev of stream) n += ev.message_type === 'assistant_message' ? 1 : 0;
  eq(n, 1, 'assistant messages in the stream');
}, ['agent', 'persona']);

await check('streaming with include_pings=false sends no ping events', async () => {
  const stream = await client.agents.messages.create(ctx.agent.id, {
    messages: [{ role: 'user', content: 'no pings' }],
    streaming: true,
    include_pings: false,
  });
  const types = [];
  for await (const ev of stream) types.push(ev.message_type);
  assert(!types.includes('ping'), `no ping in ${short(types)}`);
  assert(types.includes('assistant_message'), `assistant_message in ${short(types)}`);
}, ['agent']);

await check('stream-error fault: `event: error` mid-stream surfaces as the SDK APIError', async () => {
  await withFault({ kind: 'stream-error', route: 'POST /v1/agents/*/messages', times: 1 }, async () => {
    const stream = await client.agents.messages.create(ctx.agent.id, {
      messages: [{ role: 'user', content: 'boom' }],
      streaming: true,
    });
    const types = [];
    let err = null;
    try {
      for await (const ev of stream) types.push(ev.message_type);
    } catch (e) {
      err = e;
    }
    assert(err instanceof Letta.APIError, `APIError thrown while iterating, got ${err ? describeError(err) : 'no error'} after ${short(types)}`);
    eq(err.error?.message_type, 'error_message', 'error event payload message_type');
    assert(types.includes('stop_reason'), `stop_reason before the error: ${short(types)}`);
    assert(!types.includes('assistant_message'), 'no assistant_message on a failed turn');
  });
}, ['agent']);

await check('run-fail fault: async run ends failed', async () => {
  await withFault({ kind: 'run-fail', route: 'POST /v1/agents/*/messages/async', times: 1 }, async () => {
    const run = await client.agents.messages.createAsync(ctx.agent.id, { messages: [{ role: 'user', content: 'fail me' }] });
    let cur = run;
    const deadline = Date.now() + 20_000;
    while (!['completed', 'failed', 'cancelled'].includes(cur.status)) {
      assert(Date.now() < deadline, `run still ${cur.status} after 20 s`);
      await sleep(50);
      cur = await client.runs.retrieve(run.id);
    }
    eq(cur.status, 'failed', 'final run status');
  });
}, ['agent']);

await check('503 fault: the SDK retries and sends X-Stainless-Retry-Count 0 then 1', async () => {
  const seq = await lastSeq();
  const b = await withFault({ kind: '503', route: 'GET /v1/blocks/*', times: 1 }, () => retryClient.blocks.retrieve(ctx.persona.id));
  eq(b.id, ctx.persona.id, 'block id after the retry');
  const reqs = (await requestsSince(seq)).filter((r) => r.path === `/v1/blocks/${ctx.persona.id}`);
  eq(reqs.map((r) => r.status).join(','), '503,200', 'statuses seen by the emulator');
  eq(reqs.map((r) => r.headers['x-stainless-retry-count']).join(','), '0,1', 'X-Stainless-Retry-Count');
}, ['persona']);

await check('429 fault with Retry-After: 1: the SDK waits about 1 s and retries', async () => {
  const t0 = Date.now();
  const b = await withFault({ kind: '429', route: 'GET /v1/blocks/*', times: 1, retry_after: 1 }, () => retryClient.blocks.retrieve(ctx.persona.id));
  const dt = Date.now() - t0;
  eq(b.id, ctx.persona.id, 'block id after the retry');
  assert(dt >= 900, `waited ${dt} ms (expected >= 1000 ms from Retry-After)`);
}, ['persona']);

await check('commit-500 fault on POST /v1/blocks/: the write is applied and the SDK retry duplicates it', async () => {
  const label = `commit_${runTag}`;
  const b = await withFault({ kind: 'commit-500', route: 'POST /v1/blocks/', times: 1 }, () => retryClient.blocks.create({ label, value: 'once' }));
  eq(b.label, label, 'label of the block the retry created');
  const items = [];
  for await (const x of client.blocks.list({ label })) items.push(x.id);
  eq(items.length, 2, 'blocks with that label (the committed one plus the retried one)');
  assert(items.includes(b.id), 'the returned block is one of them');
});

await check('404 is not retried by the SDK', async () => {
  const seq = await lastSeq();
  const missing = 'block-00000000-0000-4000-8000-00000000abcd';
  await expectError(retryClient.blocks.retrieve(missing), Letta.NotFoundError, 404);
  const reqs = (await requestsSince(seq)).filter((r) => r.path === `/v1/blocks/${missing}`);
  eq(reqs.length, 1, 'requests for the missing block');
});

// -------------------------------------------------------------- pagination
const pageLabel = `page_${runTag}`;
await check('blocks.list auto-pager walks > 50 blocks (limit 50 pages, after=<last id>)', async () => {
  const N = 57;
  const created = [];
  for (let i = 0; i < N; i++) {
    const b = await client.blocks.create({ label: pageLabel, value: `page block ${i}` });
    created.push(b.id);
  }
  const first = await client.blocks.list({ label: pageLabel });
  eq(first.getPaginatedItems().length, 50, 'first page size (default limit 50)');
  assert(first.hasNextPage(), 'first page has a next page');
  const seen = [];
  for await (const b of client.blocks.list({ label: pageLabel })) seen.push(b.id);
  eq(seen.length, N, 'blocks seen by the auto-pager');
  eq(new Set(seen).size, N, 'distinct blocks seen');
  assert(sameSet(seen, created), 'exactly the created blocks');
  assert(seen.every((id, i) => id === created[i]), 'ascending creation order (default order=asc)');
  const pages = [];
  for await (const p of (await client.blocks.list({ label: pageLabel, limit: 20 })).iterPages()) {
    pages.push(p.getPaginatedItems().length);
  }
  eq(pages.join(','), '20,20,17,0', 'page sizes with limit=20 (the pager stops on an empty page)');
});

// -------------------------------------------------------------- cleanup
await check('agents.delete, then retrieve raises NotFoundError', async () => {
  const r = await client.agents.delete(ctx.agent.id);
  assert(r && typeof r.message === 'string' && r.message.includes(ctx.agent.id), `delete body: ${short(r)}`);
  await expectError(client.agents.retrieve(ctx.agent.id), Letta.NotFoundError, 404);
}, ['agent']);

// -------------------------------------------------------------- what the emulator saw
await check('request log: every SDK request had the 1.x SDK headers, exact paths, no redirect', async () => {
  const reqs = (await requestsSince(0)).filter((r) => r.path.startsWith('/v1/'));
  assert(reqs.length > 50, `requests logged: ${reqs.length}`);
  for (const r of reqs) {
    const h = r.headers;
    eq(h['x-stainless-package-version'], '1.12.1', `X-Stainless-Package-Version on ${r.method} ${r.path}`);
    eq(h['user-agent'], 'Letta/JS 1.12.1', `User-Agent on ${r.method} ${r.path}`);
    assert(![307, 308, 405].includes(r.status), `${r.method} ${r.path} answered ${r.status}`);
    assert(r.status !== 500 || r.fault, `${r.method} ${r.path} answered 500 without a fault`);
    if (args.apiKey && h.authorization !== undefined) {
      assert(!String(h.authorization).includes(args.apiKey), 'Authorization is redacted in the log');
    }
  }
  if (args.apiKey) {
    assert(reqs.some((r) => r.headers.authorization !== undefined), 'Authorization header was sent');
  }
});

await check('emulator response-schema check: no violations for this run', async () => {
  const v = await admin('GET', '/_emulator/schema-violations');
  assert(v.checked > 0, `responses checked: ${v.checked}`);
  eq(v.violations.length, 0, `schema violations ${short(v.violations)}`);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
