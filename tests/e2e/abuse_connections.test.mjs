// One client against the gateway's per-connection budgets (docs/security.md):
// a WebSocket client that asks for megabytes of results and never reads is
// closed at GATEWAY_SEND_QUEUE_BYTES (1008) while the gateway's RSS stays
// bounded and /healthz keeps answering; HTTP results are bounded too;
// connections that never send connection_init (either protocol) or nothing at all do not hold a slot; refusals say why in the
// close reason and are logged, rate-limited.
//
// Measured figures are printed on lines starting with `BUDGET:`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { gqlPost, healthzProber, metric, rawWebSocket, rssSampler, startGateway,
         sleep, startRedis, waitFor, waitMetric } from './helpers.mjs';

const T = 'graphql-transport-ws';
const L = 'graphql-ws';
const TOKEN = 'abuse-test-token-0123456789abcdef';
const MAX_CONNS = 5;
const INIT_MS = 1000;
const QUEUE_BYTES = 4 * 1024 * 1024; // the default, stated for the assertions
const MB = 1024 * 1024;
const RSS_BOUND = 64 * MB;
// Under AddressSanitizer RSS is mostly shadow memory and quarantine: the
// memory bound is asserted in the normal build only.
const SANITIZED = process.env.MLS_SANITIZED === '1';

let redis, gw;

before(async () => {
  redis = await startRedis();
  gw = await startGateway(redis.url, {
    GATEWAY_MAX_CONNECTIONS: String(MAX_CONNS),
    GATEWAY_INIT_TIMEOUT_MS: String(INIT_MS),
    GATEWAY_AUTH_TOKENS: TOKEN,
    GATEWAY_ALLOWED_ORIGINS: 'https://app.example.com',
  });
  await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200, 10000, 'ready');
});

after(async () => {
  await gw?.stop();
  await redis?.stop();
});

const auth = { Authorization: `Bearer ${TOKEN}` };
const init = JSON.stringify({ type: 'connection_init', payload: auth });

// A query whose result is about 18 KB per alias of __schema (a fragment
// keeps the document small).
function schemaBomb(aliases) {
  let q = 'fragment S on __Schema { types { name description kind fields { name description ' +
          'args { name description type { name kind ofType { name kind } } } type { name kind ' +
          'ofType { name kind ofType { name } } } } } }\n{';
  for (let i = 0; i < aliases; i++) q += ` a${i}: __schema { ...S }`;
  return `${q} }`;
}
// the most aliases the query cost limit (50,000) lets through (8,024
// field resolutions and ~18 KB each)
const MAX_ALIASES = 6;

const closedMetric = (reason) => `ml_stream_gateway_connections_closed_total{reason="${reason}"}`;

test('a client that never reads is closed at GATEWAY_SEND_QUEUE_BYTES (1008); RSS and /healthz stay fine', async () => {
  // ~110 KB per result: the largest the query cost limit lets through
  const query = schemaBomb(MAX_ALIASES);
  const closed0 = await metric(gw, closedMetric('send_queue_bytes'));
  assert.equal(closed0, 0);
  const ws = await rawWebSocket(gw.port, T);
  assert.equal(ws.status, 101);
  await ws.send(init);
  await waitFor(() => ws.frames.length >= 1, 5000, 'connection_ack');
  assert.equal(ws.frames[0].data.toString(), '{"type":"connection_ack"}');
  ws.pause(); // from here on, never read

  const rss = rssSampler(gw.proc.pid);
  const probe = healthzProber(gw, 1000);
  let sent = 0;
  let closed = false;
  const t0 = performance.now();
  // Unbounded (count only), 1088 results would be ~126 MB for this client.
  while (sent < 1500 && !closed && performance.now() - t0 < 60000) {
    const ok = await ws.send(JSON.stringify({ id: String(sent), type: 'subscribe', payload: { query } }));
    if (!ok) break;
    sent++;
    if (sent % 20 === 0) closed = (await metric(gw, closedMetric('send_queue_bytes'))) === 1;
  }
  await waitMetric(gw, closedMetric('send_queue_bytes'), (v) => v === 1,
                   'the connection to be closed for its send queue', 20000);
  const h = await probe.stop();
  const r = rss.stop();
  const m = /leaves (\d+) bytes unread \(\+(\d+) more\) over GATEWAY_SEND_QUEUE_BYTES/.exec(gw.log());
  assert.ok(m, `a warning names the budget:\n${gw.log().slice(-2000)}`);
  const queued = Number(m[1]) + Number(m[2]);

  // reading again, the client gets what was in flight, then 1008 and why
  ws.resume();
  const c = await Promise.race([ws.closed, new Promise((res) => setTimeout(() => res(null), 10000))]);
  console.log(`BUDGET: ws send queue: closed after ${sent} subscribe messages of ~110 KB results; ` +
              ` queue at close ${queued} bytes (GATEWAY_SEND_QUEUE_BYTES ${QUEUE_BYTES}); ` +
              `client had received ${ws.received} bytes`);
  console.log(`BUDGET: ws send queue attack: RSS growth ${(r.growth / MB).toFixed(1)} MB ` +
              `(base ${(r.base / MB).toFixed(1)} MB, peak ${(r.peak / MB).toFixed(1)} MB)`);
  console.log(`BUDGET: ws send queue attack: worst /healthz latency ${h.worstMs.toFixed(1)} ms ` +
              `over ${h.count} requests`);
  assert.ok(c, 'the socket closes once the client reads');
  assert.equal(c.code, 1008);
  assert.equal(c.reason, 'Send queue over GATEWAY_SEND_QUEUE_BYTES');
  assert.ok(queued > QUEUE_BYTES && queued <= QUEUE_BYTES + MB, `closed at ${queued} bytes`);
  assert.ok(SANITIZED || r.growth <= RSS_BOUND, `RSS grew by ${(r.growth / MB).toFixed(1)} MB`);
  assert.deepEqual(h.failures, [], 'every /healthz answered 200 within 1 s');
  assert.ok(h.count > 0);
  ws.sock.destroy();
  // the gateway still serves everyone else
  const q = await gqlPost(gw, { query: '{ __typename }' }, auth);
  assert.equal(q.status, 200);
});

test('a slow client that reads everything is not closed', async () => {
  // a reading client gets every result, however many
  const query = schemaBomb(MAX_ALIASES);
  const ws = await rawWebSocket(gw.port, T);
  await ws.send(init);
  for (let i = 0; i < 60; i++) {
    await ws.send(JSON.stringify({ id: `r${i}`, type: 'subscribe', payload: { query } }));
    await waitFor(() => ws.frames.filter((f) => f.data.toString().startsWith(`{"id":"r${i}","type":"complete"`)).length,
                  20000, `result r${i}`);
  }
  const nexts = ws.frames.filter((f) => f.data.toString().includes('"type":"next"'));
  assert.equal(nexts.length, 60);
  assert.ok(nexts.every((f) => f.data.length > 80000));
  ws.sock.destroy();
});

test('GraphQL over HTTP: a result over GATEWAY_MAX_PAYLOAD_BYTES is a 500 with an error', async () => {
  // its own gateway with a small cap (the old cap was 64 MiB per response)
  const small = await startGateway(redis.url, { GATEWAY_MAX_PAYLOAD_BYTES: '65536' });
  try {
    const big = await gqlPost(small, { query: schemaBomb(MAX_ALIASES) }); // ~110 KB
    assert.equal(big.status, 500, big.text.slice(0, 200));
    assert.match(big.text, /too large/);
    assert.ok(big.text.length < 1000);
    const ok = await gqlPost(small, { query: schemaBomb(3) }); // ~55 KB
    assert.equal(ok.status, 200);
    assert.ok(ok.text.length > 40000);
  } finally {
    await small.stop();
  }
});

// Pipelined POSTs whose answers are never read used to send the event loop
// spinning for good (libwebsockets 4.1 on libuv): now every POST /graphql
// is answered with "connection: close", and the gateway stays responsive.
test('pipelined POST /graphql requests from a client that never reads do not freeze the gateway', async () => {
  const body = JSON.stringify({ query: '{ mlStreamingModels }' });
  const one = `POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  sock.pause();
  const probe = healthzProber(gw);
  try {
    sock.write(one.repeat(200));
    await sleep(500);
  } finally {
    const h = await probe.stop();
    sock.destroy();
    console.log(`BUDGET: pipelined POST attack: worst /healthz latency ${h.worstMs.toFixed(1)} ms ` +
      `over ${h.count} probes`);
    assert.deepEqual(h.failures, [], 'every /healthz answered within 1 s');
    assert.ok(h.count >= 3);
  }
  const after = await fetch(`${gw.http}/healthz`, { signal: AbortSignal.timeout(1000) });
  assert.equal(after.status, 200);
  const ok = await gqlPost(gw, { query: '{ mlStreamingModels }' }, auth);
  assert.equal(ok.status, 200);
});

test(`connections without connection_init (both protocols) do not lock out authenticated clients at GATEWAY_MAX_CONNECTIONS (${MAX_CONNS})`, async () => {
  const init0 = await metric(gw, closedMetric('init_timeout'));
  const t0 = performance.now();
  const squatters = [];
  for (let i = 0; i < MAX_CONNS; i++) squatters.push(await rawWebSocket(gw.port, i % 2 ? T : L));
  assert.ok(squatters.every((s) => s.status === 101));
  // the slots are full for now
  const refused = await rawWebSocket(gw.port, T);
  assert.notEqual(refused.status, 101);
  refused.sock.destroy();
  const results = await Promise.all(squatters.map((s) => s.closed));
  const ms = Math.round(performance.now() - t0);
  for (const [i, c] of results.entries()) {
    assert.equal(c.code, 4408, `squatter ${i}`);
    assert.equal(c.reason, 'Connection initialisation timeout');
  }
  // legacy clients are told first
  for (const s of squatters.filter((_, i) => i % 2 === 0))
    assert.deepEqual(JSON.parse(s.frames[0].data.toString()),
                     { type: 'connection_error', payload: { message: 'Connection initialisation timeout' } });
  console.log(`BUDGET: ${MAX_CONNS} connections without connection_init closed 4408 within ${ms} ms ` +
              `(GATEWAY_INIT_TIMEOUT_MS ${INIT_MS})`);
  assert.ok(ms < INIT_MS + 3000, `closed after ${ms} ms`);
  assert.equal(await metric(gw, closedMetric('init_timeout')), init0 + MAX_CONNS);
  // an authenticated client gets in
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0,
                                connectionParams: auth });
  const got = await new Promise((resolve, reject) => {
    client.subscribe({ query: '{ __typename }' }, { next: resolve, error: reject, complete: () => {} });
  });
  assert.deepEqual(got, { data: { __typename: 'Query' } });
  await client.dispose();
});

test('connections that send nothing, or headers a byte at a time, are dropped', async () => {
  const t0 = performance.now();
  const idle = net.connect(gw.port, '127.0.0.1');
  const trickle = net.connect(gw.port, '127.0.0.1');
  const req = 'GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: ' + 'a'.repeat(200);
  let i = 0;
  const timer = setInterval(() => { if (!trickle.destroyed) trickle.write(req[i++]); }, 500);
  const closedAt = (s) => new Promise((res) => { s.on('error', () => {}); s.on('close', () => res(Math.round(performance.now() - t0))); });
  const [a, b] = await Promise.race([
    Promise.all([closedAt(idle), closedAt(trickle)]),
    new Promise((_, rej) => setTimeout(() => rej(new Error('not dropped within 25 s')), 25000)),
  ]).finally(() => clearInterval(timer));
  console.log(`BUDGET: silent connection dropped after ${a} ms, trickled headers after ${b} ms`);
  assert.ok(a < 25000 && b < 25000);
});

test('refusals say why in the close reason and are logged at warn, rate-limited', async () => {
  const cases = [
    [JSON.stringify({ type: 'connection_init' }), 'Forbidden: missing credential'],
    [JSON.stringify({ type: 'connection_init', payload: { Authorization: 'Bearer wrong-wrong-wrong' } }),
     'Forbidden: invalid credential'],
  ];
  for (const proto of [T, L]) {
    for (const [msg, reason] of cases) {
      const ws = await rawWebSocket(gw.port, proto);
      await ws.send(msg);
      const c = await ws.closed;
      assert.equal(c.code, 4403, `${proto} ${reason}`);
      assert.equal(c.reason, reason, proto);
    }
  }
  assert.match(gw.log(), /warn .*websocket \(graphql-transport-ws\): refused connection_init: 4403 Forbidden: invalid credential/);
  assert.match(gw.log(), /warn .*websocket \(graphql-ws\): refused connection_init: 4403 Forbidden: missing credential/);
  assert.doesNotMatch(gw.log(), /wrong-wrong-wrong/);
  // a flood: at most 10 lines per reason per 10 s, then a count
  const bad = cases[1][0];
  const lines = () => gw.log().split('\n').filter((l) => l.includes('Forbidden: invalid credential')).length;
  const before = lines();
  for (let i = 0; i < 30; i++) {
    const ws = await rawWebSocket(gw.port, T);
    await ws.send(bad);
    await ws.closed;
  }
  const during = lines() - before;
  assert.ok(during <= 10, `${during} lines for 30 refusals`);
  await waitFor(async () => {
    const ws = await rawWebSocket(gw.port, T);
    await ws.send(bad);
    await ws.closed;
    return /Forbidden: invalid credential: .*\((\d+) similar lines suppressed\)/.exec(gw.log());
  }, 15000, 'a line counting the suppressed ones');
  // origins: 403 at the upgrade, and a warning naming it
  const o = await rawWebSocket(gw.port, T, { Origin: 'https://evil.example.com' });
  assert.notEqual(o.status, 101);
  o.sock.destroy();
  await waitFor(() => /warn .*origin "https:\/\/evil\.example\.com" not allowed/.test(gw.log()), 5000,
                'the origin warning');
});
