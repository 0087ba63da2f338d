// Hostile GraphQL and WebSocket traffic against a real `mlstream gateway`:
// oversize and binary frames, bad JSON and bad UTF-8, messages before
// connection_init, floods of subscribes and of connections, deep, wide and
// exponential documents, fragment cycles, floods of unknown field names.
// Each is refused with the close code or GraphQL error the protocols name,
// and all the while two witness clients (one per protocol) keep receiving a
// steady stream of events: every one of them, in order, with the gateway
// still up at the end.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';
import { buildSchema, parse, validate } from 'graphql';

import { MLSTREAM, collector, gqlPost, metric, metricsText, modelId, openPublisher, prediction,
         sleep, startGateway, startRedis, waitFor, waitMetric } from './helpers.mjs';

const { SubscriptionClient } = pkg;
const T = 'graphql-transport-ws';
const L = 'graphql-ws';
const MAX_OPS = 5;
const MAX_CONNS = 30;
const init = JSON.stringify({ type: 'connection_init' });

let redis, gw, pub;
const W = modelId('witness');
const witness = { transport: collector(), legacy: collector() };
let wsClient, legacyClient;
let sent = 0;
let publishing = true;
let publisher;

before(async () => {
  redis = await startRedis();
  gw = await startGateway(redis.url, {
    GATEWAY_MAX_MESSAGE_BYTES: '65536',
    GATEWAY_MAX_OPERATIONS: String(MAX_OPS),
    GATEWAY_MAX_QUERY_DEPTH: '8',
    GATEWAY_MAX_DOCUMENT_BYTES: '16384',
    GATEWAY_MAX_CONNECTIONS: String(MAX_CONNS),
    GATEWAY_INIT_TIMEOUT_MS: '2000',
  });
  await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200, 10000, 'ready');
  pub = await openPublisher(redis.url);
  const q = 'subscription W($m: String!) { mlInferenceStream(modelId: $m) { inputId } }';
  wsClient = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  wsClient.subscribe({ query: q, variables: { m: W } }, witness.transport.sink);
  legacyClient = new SubscriptionClient(gw.ws, { reconnect: false }, WebSocket);
  legacyClient.request({ query: q, variables: { m: W } }).subscribe(witness.legacy.sink);
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 2, 'the witnesses');
  // a steady stream for the witnesses while the hostile tests run
  publisher = (async () => {
    while (publishing) {
      await pub.publish(prediction(W, sent, { input_id: `w-${sent}` }));
      sent++;
      await sleep(20);
    }
  })();
});

after(async () => {
  publishing = false;
  await publisher;
  await wsClient?.dispose();
  legacyClient?.close();
  pub?.close();
  await gw?.stop();
  await redis?.stop();
});

// Opens a raw WebSocket, sends msgs once open, and resolves with the close
// code, reason and every message received.
function session(protocols, msgs, { timeoutMs = 8000, onMessage, sendOpts } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(gw.ws, protocols);
    const got = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(got).slice(0, 500)}`));
    }, timeoutMs);
    ws.on('open', () => {
      for (const m of msgs) {
        if (typeof m === 'function') m(ws);
        else ws.send(m, sendOpts);
      }
    });
    ws.on('message', (d) => {
      got.push(d.toString());
      onMessage?.(ws, d.toString(), got);
    });
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString(), got });
    });
    ws.on('error', () => {});
  });
}

const subscribe = (id, query) => JSON.stringify({ id, type: 'subscribe', payload: { query } });

// Sends one operation over graphql-transport-ws and resolves with the
// first message about it.
async function firstAnswer(query) {
  const r = await session(T, [init, subscribe('q', query)], {
    onMessage: (ws, m) => { if (JSON.parse(m).id === 'q') ws.close(1000); },
  });
  assert.equal(r.code, 1000, `the connection survives; got ${JSON.stringify(r)}`);
  return JSON.parse(r.got.find((m) => JSON.parse(m).id === 'q'));
}

async function witnessesMoving() {
  const a = witness.transport.events.length;
  const b = witness.legacy.events.length;
  await waitFor(() => witness.transport.events.length > a && witness.legacy.events.length > b,
                5000, 'the witnesses to receive more events');
}

test('oversize messages close with 1009: one frame, many fragments', async () => {
  let r = await session(T, [init, JSON.stringify({ type: 'ping', payload: { pad: 'x'.repeat(70000) } })]);
  assert.equal(r.code, 1009);
  assert.equal(r.reason, 'Message too big');
  r = await session(T, [init, (ws) => {
    for (let i = 0; i < 100; i++) ws.send('y'.repeat(1000), { fin: false });
  }]);
  assert.equal(r.code, 1009);
  await witnessesMoving();
});

test('a frame that claims 1 GiB is cut off at the cap (1009)', async () => {
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((resolve) => sock.once('connect', resolve));
  sock.write('GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n' +
             'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
             'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n');
  let data = Buffer.alloc(0);
  sock.on('data', (d) => { data = Buffer.concat([data, d]); });
  sock.on('error', () => {});
  await waitFor(() => data.includes('\r\n\r\n'), 5000, 'the 101 answer');
  assert.match(data.toString('latin1'), /^HTTP\/1\.1 101/);
  data = data.subarray(data.indexOf('\r\n\r\n') + 4);
  // FIN + text, masked, 64-bit length 2^30, a zero mask key
  const head = Buffer.from([0x81, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]);
  sock.write(head);
  const chunk = Buffer.alloc(16384, 0x20);
  for (let i = 0; i < 8 && !sock.destroyed; i++) {
    sock.write(chunk);
    await sleep(10);
  }
  await waitFor(() => data.length >= 4, 5000, 'a close frame');
  assert.equal(data[0], 0x88);
  assert.equal((data[2] << 8) | data[3], 1009);
  sock.destroy();
});

test('binary frames close with 1003 on both protocols', async () => {
  const ping = Buffer.from(JSON.stringify({ type: 'ping' }));
  let r = await session(T, [init, (ws) => ws.send(ping, { binary: true })]);
  assert.equal(r.code, 1003);
  assert.equal(r.reason, 'Binary frames are not supported');
  r = await session(L, [(ws) => ws.send(Buffer.from(init), { binary: true })]);
  assert.equal(r.code, 1003);
  const closed = await metric(gw, 'ml_stream_gateway_ws_closed_total{code="1003"}');
  assert.ok(closed >= 2);
});

test('bad JSON and bad UTF-8 close with 4400; legacy answers connection_error', async () => {
  for (const bad of ['{', '{"type":', 'null', '"text"', '[]', '42', '{"type":1}',
                     '{"type":"subscribe","id":"1","payload":{"query":7}}']) {
    const r = await session(T, [init, bad]);
    assert.equal(r.code, 4400, bad);
    assert.equal(r.reason, 'Invalid message received');
  }
  // bytes that are not UTF-8, sent as a text frame
  const r = await session(T, [init, (ws) => ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]),
                                                    { binary: false })]);
  assert.ok([4400, 1007].includes(r.code), `code ${r.code}`);
  // legacy: an error message, and the connection goes on
  const l = await session(L, ['{', init], {
    onMessage: (ws, m, got) => { if (JSON.parse(m).type === 'connection_ack') ws.close(1000); },
  });
  assert.equal(l.code, 1000);
  assert.equal(JSON.parse(l.got[0]).type, 'connection_error');
  await witnessesMoving();
});

test('messages before connection_init: 4401 for subscribe, 4500 for server messages, 4408 for silence', async () => {
  let r = await session(T, [subscribe('1', '{ __typename }')]);
  assert.equal(r.code, 4401);
  r = await session(T, [JSON.stringify({ type: 'next', id: '1', payload: {} })]);
  assert.equal(r.code, 4500);
  r = await session(T, [JSON.stringify({ type: 'complete' })]);
  assert.equal(r.code, 4400);
  r = await session(T, []);
  assert.equal(r.code, 4408);
});

test(`a flood of subscribes stops at GATEWAY_MAX_OPERATIONS (${MAX_OPS}); the connection lives on`, async () => {
  const subs0 = await metric(gw, 'ml_stream_gateway_subscriptions');
  const N = 200;
  const q = `subscription { mlInferenceStream(modelId: "${modelId('flood')}") { inputId } }`;
  let phase = 0;
  const r = await session(T, [init, (ws) => {
    for (let i = 0; i < N; i++) ws.send(subscribe(`s${i}`, q));
  }], {
    timeoutMs: 15000,
    onMessage: async (ws, m, got) => {
      const errors = got.filter((x) => JSON.parse(x).type === 'error').length;
      if (phase === 0 && errors === N - MAX_OPS) {
        phase = 1;
        assert.equal(await metric(gw, 'ml_stream_gateway_subscriptions'), subs0 + MAX_OPS);
        // freeing one slot lets one more in
        ws.send(JSON.stringify({ id: 's0', type: 'complete' }));
        ws.send(subscribe('again', q));
        await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === subs0 + MAX_OPS,
                         'the replacement subscription');
        ws.send(JSON.stringify({ type: 'ping' }));
      } else if (phase === 1 && JSON.parse(m).type === 'pong') {
        ws.close(1000);
      }
    },
  });
  assert.equal(r.code, 1000);
  const errs = r.got.map((m) => JSON.parse(m)).filter((m) => m.type === 'error');
  assert.equal(errs.length, N - MAX_OPS);
  assert.match(errs[0].payload[0].message, /Too many operations on this connection \(limit 5\)/);
  // the ids refused are the last ones sent
  assert.deepEqual(errs.map((e) => e.id), Array.from({ length: N - MAX_OPS }, (_, i) => `s${i + MAX_OPS}`));
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === subs0, 'the flood to be gone');
  await witnessesMoving();
});

test(`a flood of connections stops at GATEWAY_MAX_CONNECTIONS (${MAX_CONNS})`, async () => {
  const rejected0 = await metric(gw, 'ml_stream_gateway_connections_rejected_total{reason="max_connections"}');
  const socks = [];
  const results = await Promise.all(Array.from({ length: MAX_CONNS + 15 }, () => new Promise((resolve) => {
    const ws = new WebSocket(gw.ws, T);
    socks.push(ws);
    ws.on('open', () => resolve('open'));
    ws.on('error', () => resolve('refused'));
    ws.on('close', () => resolve('refused'));
  })));
  const opened = results.filter((x) => x === 'open').length;
  // the two witnesses hold two of the slots
  assert.ok(opened <= MAX_CONNS - 2, `${opened} opened`);
  assert.ok(opened >= MAX_CONNS - 4, `${opened} opened`);
  for (const ws of socks) ws.terminate();
  await waitMetric(gw, 'ml_stream_gateway_connections_rejected_total{reason="max_connections"}',
                   (v) => v >= rejected0 + 15, 'refusals counted');
  await waitMetric(gw, 'ml_stream_gateway_connections{protocol="graphql-transport-ws"}',
                   (v) => v === 1, 'the flood to be gone');
  await witnessesMoving();
});

// Poison on the prediction channel: the gateway reads each payload with its
// own strict scanner (nesting up to 2,048 levels, as jansson). Each bad one
// is counted and skipped; nothing of it reaches a subscriber, the good ones
// around it do, in order, and the gateway stays healthy.
test('poison payloads are skipped and counted; the stream around them goes on', async () => {
  const model = modelId('poison');
  const c = collector();
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  client.subscribe({ query: `subscription { mlInferenceStream(modelId: "${model}") { inputId predictions } }` },
                   c.sink);
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 3, 'the poison subscriber');
  const GARBAGE = 'ml_stream_gateway_payloads_invalid_total';
  const garbage0 = await metric(gw, GARBAGE);
  const good = (id, predictions) => JSON.stringify(
    { ...prediction(model, 0), inference_id: `poison-${id}`, input_id: id, predictions });
  const bad = [
    good('x', 0).replace('"predictions":0', `"predictions":${'['.repeat(3000)}${']'.repeat(3000)}`),
    good('x', 0).replace('"predictions":0', '"predictions":[1,2,]'),
    good('x', 0).replace('"predictions":0', '"predictions":["a\u0000b"]'), // a raw NUL byte
    good('x', 0).replace('"predictions":0', '"predictions":["a\\u0000b"]'), // the escape
    good('x', 0).replace('"predictions":0', '"predictions":["\\ud800"]'),
    good('x', 0) + ' trailing',
  ];
  await pub.publish(good('before', [[1]]));
  for (const b of bad) await pub.publish(b);
  // as deep as allowed: 2,047 arrays inside the payload's object
  const deep = `${'['.repeat(2047)}${']'.repeat(2047)}`;
  await pub.publish(good('deep', 0).replace('"predictions":0', `"predictions":${deep}`));
  await pub.publish(good('after', [[2]]));
  await waitFor(() => c.events.length >= 3, 10000, 'the good predictions');
  assert.deepEqual(c.events.map((e) => e.data.mlInferenceStream.inputId), ['before', 'deep', 'after']);
  let depth = 0;
  for (let v = c.events[1].data.mlInferenceStream.predictions; Array.isArray(v); v = v[0]) depth++;
  assert.equal(depth, 2047);
  assert.equal(await metric(gw, GARBAGE) - garbage0, bad.length);
  assert.equal((await fetch(`${gw.http}/healthz`)).status, 200);
  await client.dispose();
});

test('deep documents are refused with an error', async () => {
  // valid fields, nested deeper than GATEWAY_MAX_QUERY_DEPTH (8)
  let q = '{ __schema { types { ' + 'ofType { '.repeat(20) + 'name' + ' }'.repeat(22) + ' }';
  let a = await firstAnswer(q);
  assert.equal(a.type, 'error');
  assert.match(a.payload[0].message, /^Operation is nested 23 fields deep, deeper than the limit of 8\./);
  // nesting the parser itself refuses
  q = '{ a '.repeat(300) + '}'.repeat(300);
  a = await firstAnswer(q);
  assert.equal(a.type, 'error');
  assert.match(a.payload[0].message, /Document is nested deeper than \d+ levels/);
  // the same over HTTP
  const h = await gqlPost(gw, { query: q });
  assert.equal(h.status, 400);
  assert.match(h.body.errors[0].message, /nested deeper/);
});

test('wide documents past GATEWAY_MAX_DOCUMENT_BYTES are refused', async () => {
  let q = '{';
  for (let i = 0; q.length < 20000; i++) q += ` a${i}: __typename`;
  q += ' }';
  const a = await firstAnswer(q);
  assert.equal(a.type, 'error');
  assert.equal(a.payload[0].message, 'Document is larger than the limit of 16384 bytes.');
  const h = await gqlPost(gw, { query: q });
  assert.equal(h.status, 400);
});

test('alias and fragment bombs stop at the field limit', async () => {
  // ten aliases per level, six levels of fragments: a million fields
  const chain = ['__Schema', '__Type', '__Type', '__Type', '__Type', '__Type'];
  const field = { __Schema: 'types', __Type: 'ofType' };
  let frags = '';
  for (let l = 0; l < chain.length; l++) {
    let body = '';
    for (let i = 0; i < 10; i++)
      body += ` a${i}: ${field[chain[l]]} { ${l + 1 < chain.length ? `...F${l + 1}` : 'name'} }`;
    frags += `fragment F${l} on ${chain[l]} {${body} }\n`;
  }
  const t0 = performance.now();
  let a = await firstAnswer(`query { __schema { ...F0 } }\n${frags}`);
  assert.ok(performance.now() - t0 < 3000);
  assert.equal(a.type, 'next');
  assert.equal(a.payload.errors[0].message,
               'Operation selects more than 20000 fields once fragments are expanded.');
  // a subscription may not alias its way to many root fields
  let s = 'subscription {';
  for (let i = 0; i < 50; i++) s += ` a${i}: mlInferenceStream(modelId: "x") { inputId }`;
  a = await firstAnswer(`${s} }`);
  assert.equal(a.type, 'error');
  assert.match(a.payload[0].message, /must select only one top level field/);
  await witnessesMoving();
});

test('fragment cycles are a validation error', async () => {
  let a = await firstAnswer('query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }');
  assert.equal(a.type, 'error');
  assert.equal(a.payload[0].message, 'Cannot spread fragment "A" within itself via "B".');
  a = await firstAnswer('subscription { ...S } fragment S on Subscription { ...S }');
  assert.equal(a.type, 'error');
  assert.equal(a.payload[0].message, 'Cannot spread fragment "S" within itself.');
});

test('unknown field names: at most 100 errors, as graphql-js words them; a 16 KB name gets one', async () => {
  // graphql-js, given our schema (schema.test.mjs: the one served), says
  // what the errors must be
  const schema = buildSchema(execFileSync(MLSTREAM, ['schema'], { encoding: 'utf8' }));
  const expected = (doc) => validate(schema, parse(doc)).map((e) => e.message);
  // near misses of real fields, each of which makes the gateway look for
  // the closest names: the list stops at the validation error limit
  let q = '{';
  for (let i = 0; q.length < 16000; i++) q += ` a${i}: mlStreamingModel${i % 10}`;
  q += ' }';
  let a = await firstAnswer(q);
  assert.equal(a.type, 'error');
  assert.equal(a.payload.length, 101);
  assert.match(a.payload[0].message, /^Cannot query field "mlStreamingModel0" on type "Query"\. Did you mean "mlStreamingModels"/);
  assert.deepEqual(a.payload.map((e) => e.message), expected(q));
  let h = await gqlPost(gw, { query: q });
  assert.equal(h.status, 400);
  assert.deepEqual(h.body.errors.map((e) => e.message), expected(q));
  // one name as long as the document allows: one error, no suggestion
  q = `{ m${'x'.repeat(16000)} }`;
  a = await firstAnswer(q);
  assert.equal(a.type, 'error');
  assert.deepEqual(a.payload.map((e) => e.message), expected(q));
  assert.equal(a.payload.length, 1);
  h = await gqlPost(gw, { query: q });
  assert.equal(h.status, 400);
  await witnessesMoving();
});

test('HTTP: oversize bodies get 413, bad JSON 400, wrong media types 415', async () => {
  let r = await gqlPost(gw, JSON.stringify({ query: `{ __typename } #${'x'.repeat(70000)}` }));
  assert.equal(r.status, 413);
  r = await gqlPost(gw, '{"query":');
  assert.equal(r.status, 400);
  r = await gqlPost(gw, '{ __typename }', { 'content-type': 'text/plain' });
  assert.equal(r.status, 415);
  // with authentication off, credentials are ignored, on HTTP and upgrades
  r = await gqlPost(gw, { query: '{ __typename }' }, { authorization: `Bearer ${'x'.repeat(9000)}` });
  assert.equal(r.status, 200);
  const ws = new WebSocket(gw.ws, T, { headers: { authorization: 'Bearer whatever' } });
  const got = await new Promise((resolve) => {
    ws.on('open', () => ws.send(init));
    ws.on('message', (d) => { resolve(d.toString()); ws.close(); });
  });
  assert.equal(got, '{"type":"connection_ack"}');
  assert.equal((await fetch(`${gw.http}/healthz`)).status, 200);
});

test('the witnesses received every event, in order, and the gateway is up', async () => {
  publishing = false;
  await publisher;
  const want = Array.from({ length: sent }, (_, i) => `w-${i}`);
  for (const [name, c] of Object.entries(witness)) {
    await waitFor(() => c.events.length >= sent, 15000, `${name}: ${sent} events`);
    assert.deepEqual(c.errors, [], name);
    assert.deepEqual(c.events.map((e) => e.data.mlInferenceStream.inputId), want, name);
  }
  assert.ok(sent > 50, `${sent} events`);
  assert.equal(gw.proc.exitCode, null);
  assert.equal((await fetch(`${gw.http}/readyz`)).status, 200);
  const text = await metricsText(gw);
  for (const code of ['1003', '1009', '4400', '4401', '4408', '4500'])
    assert.match(text, new RegExp(`ml_stream_gateway_ws_closed_total\\{code="${code}"\\} [1-9]`), code);
  assert.equal(await metric(gw, 'ml_stream_gateway_messages_dropped_total'), 0);
});
