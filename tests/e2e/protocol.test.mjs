// Protocol violations and limits on /graphql: each gets the close code the
// graphql-transport-ws protocol (or RFC 6455) names; the legacy graphql-ws
// protocol keeps connections alive with "ka".
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { spawnSync } from 'node:child_process';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { MLSTREAM, collector, metric, modelId, prediction, publish, startGateway, startRedis,
         waitFor, waitMetric } from './helpers.mjs';

let redis, gw, authGw;

before(async () => {
  redis = await startRedis();
  gw = await startGateway(redis.url, {
    GATEWAY_INIT_TIMEOUT_MS: '400',
    GATEWAY_KEEPALIVE_MS: '200',
    GATEWAY_MAX_MESSAGE_BYTES: '65536',
    GATEWAY_MAX_OPERATIONS: '2',
    GATEWAY_SEND_QUEUE: '4',
  });
  authGw = await startGateway(redis.url, { GATEWAY_AUTH_TOKEN: 'e2e-secret' });
});

after(async () => {
  await gw?.stop();
  await authGw?.stop();
  await redis?.stop();
});

// Opens a raw WebSocket, sends msgs once open, and resolves with the close
// code, reason and every message received.
function session(url, protocols, msgs, { timeoutMs = 5000, onMessage } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    const got = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(got)}`));
    }, timeoutMs);
    ws.on('open', () => { for (const m of msgs) ws.send(m); });
    ws.on('message', (d) => {
      got.push(d.toString());
      onMessage?.(ws, d.toString(), got);
    });
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString(), got, protocol: ws.protocol });
    });
    ws.on('error', () => {});
  });
}

const T = 'graphql-transport-ws';
const init = JSON.stringify({ type: 'connection_init' });
const sub = (id, model = 'm') => JSON.stringify({ id, type: 'subscribe', payload: {
  query: `subscription { mlInferenceStream(modelId: "${model}") { inferenceId } }` } });

test('connection_init timeout closes with 4408', async () => {
  const t0 = performance.now();
  const r = await session(gw.ws, T, []);
  assert.equal(r.code, 4408);
  assert.equal(r.reason, 'Connection initialisation timeout');
  assert.ok(performance.now() - t0 >= 350);
  assert.equal(r.protocol, T);
});

test('subscribe before connection_ack closes with 4401', async () => {
  const r = await session(gw.ws, T, [sub('1')]);
  assert.equal(r.code, 4401);
  assert.equal(r.reason, 'Unauthorized');
});

test('invalid messages close with 4400', async () => {
  for (const bad of ['{', '[]', '{"type":"nope"}', '{"type":"subscribe","id":"1"}']) {
    const r = await session(gw.ws, T, [init, bad]);
    assert.equal(r.code, 4400, bad);
    assert.equal(r.reason, 'Invalid message received');
  }
});

test('a duplicate subscription id closes with 4409', async () => {
  const r = await session(gw.ws, T, [init, sub('same'), sub('same')]);
  assert.equal(r.code, 4409);
  assert.equal(r.reason, 'Subscriber for same already exists');
});

test('a second connection_init closes with 4429', async () => {
  const r = await session(gw.ws, T, [init, init]);
  assert.equal(r.code, 4429);
  assert.equal(r.reason, 'Too many initialisation requests');
});

test('a message only servers send closes with 4500', async () => {
  const r = await session(gw.ws, T, [init, JSON.stringify({ type: 'next', id: '1', payload: {} })]);
  assert.equal(r.code, 4500);
});

test('no subprotocol closes with 4406; an unknown one is refused', async () => {
  const r = await session(gw.ws, undefined, []);
  assert.equal(r.code, 4406);
  assert.equal(r.reason, 'Subprotocol not acceptable');
  const refused = await new Promise((resolve) => {
    const ws = new WebSocket(gw.ws, 'chat');
    ws.on('error', (e) => resolve(e.message));
    ws.on('open', () => resolve('opened'));
  });
  assert.notEqual(refused, 'opened');
});

test('a message over GATEWAY_MAX_MESSAGE_BYTES closes with 1009', async () => {
  const big = JSON.stringify({ type: 'ping', payload: { pad: 'x'.repeat(70000) } });
  const r = await session(gw.ws, T, [init, big]);
  assert.equal(r.code, 1009);
});

test('a message split into many frames is reassembled', async () => {
  const ws = new WebSocket(gw.ws, T);
  const got = [];
  ws.on('message', (d) => got.push(JSON.parse(d.toString())));
  await new Promise((r) => ws.on('open', r));
  const msg = JSON.stringify({ type: 'ping', payload: { pad: 'y'.repeat(20000) } });
  ws.send(init);
  // three WebSocket fragments of one message
  ws.send(msg.slice(0, 7000), { fin: false });
  ws.send(msg.slice(7000, 15000), { fin: false });
  ws.send(msg.slice(15000), { fin: true });
  await waitFor(() => got.length >= 2, 5000, 'ack and pong');
  assert.deepEqual(got[0], { type: 'connection_ack' });
  assert.equal(got[1].type, 'pong');
  assert.equal(got[1].payload.pad.length, 20000);
  ws.close();
});

test('ping gets pong, before and after connection_init', async () => {
  const r = await session(gw.ws, T, [JSON.stringify({ type: 'ping' }), init,
                                     JSON.stringify({ type: 'ping', payload: { a: 1 } })],
                         { onMessage: (ws, m, got) => { if (got.length === 3) ws.close(1000); } });
  assert.deepEqual(r.got.map((m) => JSON.parse(m)),
                   [{ type: 'pong' }, { type: 'connection_ack' }, { type: 'pong', payload: { a: 1 } }]);
});

test('operations per connection are limited', async () => {
  const c = collector();
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  client.subscribe({ query: 'subscription { mlInferenceStream(modelId: "a") { inferenceId } }' }, collector().sink);
  client.subscribe({ query: 'subscription { mlInferenceStream(modelId: "b") { inferenceId } }' }, collector().sink);
  client.subscribe({ query: 'subscription { mlInferenceStream(modelId: "c") { inferenceId } }' }, c.sink);
  await waitFor(() => c.errors.length, 5000, 'the third subscription to fail');
  assert.match(JSON.stringify(c.errors[0]), /Too many operations on this connection \(limit 2\)/);
  await client.dispose();
});

test('graphql-ws client: validation errors and missing variables', async () => {
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const one = (payload) => new Promise((resolve) => {
    const c = collector();
    client.subscribe(payload, { ...c.sink, error: (e) => { c.errors.push(e); resolve(c); },
                                complete: () => { c.completed = true; resolve(c); } });
  });
  let c = await one({ query: 'subscription { mlInferenceStream(modelId: "m") { nope } }' });
  assert.equal(c.errors[0][0].message, 'Cannot query field "nope" on type "MLStreamingPrediction".');
  c = await one({ query: 'subscription($m: String!) { mlInferenceStream(modelId: $m) { inferenceId } }' });
  assert.equal(c.completed, true);
  assert.equal(c.events[0].errors[0].message, 'Variable "$m" of required type "String!" was not provided.');
  c = await one({ query: 'subscription { mlInferenceStream(modelId: "m") { inferenceId }' });
  assert.match(c.errors[0][0].message, /^Syntax Error/);
  await client.dispose();
});

test('legacy graphql-ws: connection_ack then ka keep-alives', async () => {
  const r = await session(gw.ws, 'graphql-ws', [init], {
    onMessage: (ws, m, got) => { if (got.length === 4) ws.close(1000); },
  });
  assert.equal(r.protocol, 'graphql-ws');
  assert.deepEqual(r.got.map((m) => JSON.parse(m).type), ['connection_ack', 'ka', 'ka', 'ka']);
});

// The gateway reads WebSocket data 1 KiB at a time (its per-connection
// receive buffer): a 40 KiB subscribe message still arrives whole, and a
// prediction's JSON reaches the client byte for byte.
test('a subscribe message far larger than the receive buffer works', async () => {
  const model = modelId('big-doc');
  const pad = ' '.repeat(20 * 1024); // the message stays under the 64 KiB cap
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const c = collector();
  client.subscribe({ query: `subscription {${pad} mlInferenceStream(modelId: "${model}") ` +
                            `{ inferenceId predictions metadata }${pad}}` }, c.sink);
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v >= 1, 'the subscription');
  await publish(redis.url, `{"type":"prediction","inference_id":"big-1","model_id":"${model}",` +
                `"predictions":[[1.50,2E3,-0]],"latency_ms":1,"received_at":1764201599123,` +
                `"metadata":{"k":"caf\u00e9","n":12345678901234567890}}`);
  await waitFor(() => c.events.length, 5000, 'the prediction');
  assert.equal(c.events[0].data.mlInferenceStream.inferenceId, 'big-1');
  assert.deepEqual(c.events[0].data.mlInferenceStream.predictions, [[1.5, 2000, -0]]);
  assert.deepEqual(c.events[0].data.mlInferenceStream.metadata,
                   { k: 'caf\u00e9', n: 12345678901234567890 });
  await client.dispose();
});

// Dead peers: a client that answers WebSocket pings (every library does)
// stays however quiet it is; one that stops reading, and so never answers,
// is hung up on after GATEWAY_IDLE_HANGUP_MS.
test('an idle client that answers pings stays; a silent one is hung up on', async () => {
  const idle = await startGateway(redis.url, { GATEWAY_IDLE_PING_MS: '200',
                                               GATEWAY_IDLE_HANGUP_MS: '600' });
  try {
    const open = async () => {
      const ws = new WebSocket(idle.ws, T);
      await new Promise((r) => ws.on('open', r));
      ws.send(init);
      await new Promise((r) => ws.once('message', r)); // connection_ack
      return ws;
    };
    const alive = await open();
    let pings = 0;
    alive.on('ping', () => { pings++; });
    const dead = await open();
    let deadClosed = false;
    dead.on('close', () => { deadClosed = true; });
    dead.on('error', () => {});
    await waitMetric(idle, 'ml_stream_gateway_connections{protocol="graphql-transport-ws"}', (v) => v === 2, 'both connections');
    dead._socket.pause(); // reads nothing more: pings go unanswered
    await waitMetric(idle, 'ml_stream_gateway_connections{protocol="graphql-transport-ws"}', (v) => v === 1,
                     'the silent client to be hung up on', 10000);
    // the quiet one, pinged and answering, outlives the hang-up interval:
    // four more pings come 200 ms apart, 800 ms > 600 ms
    const seen = pings;
    await waitFor(() => pings >= seen + 4, 10000, 'four more pings at the live client');
    assert.equal(alive.readyState, WebSocket.OPEN);
    assert.equal(await metric(idle, 'ml_stream_gateway_connections{protocol="graphql-transport-ws"}'), 1);
    dead._socket.resume();
    await waitFor(() => deadClosed, 5000, 'the silent client to see its socket closed');
    alive.close(1000);
  } finally {
    await idle.stop();
  }
});

test('GATEWAY_IDLE_HANGUP_MS at or below GATEWAY_IDLE_PING_MS stops the gateway at start-up', () => {
  const r = spawnSync(MLSTREAM, ['gateway'], {
    env: { ...process.env, REDIS_URL: redis.url, GATEWAY_PORT: '0',
           GATEWAY_IDLE_PING_MS: '5000', GATEWAY_IDLE_HANGUP_MS: '5000' },
    encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /GATEWAY_IDLE_HANGUP_MS \(5000\) must exceed GATEWAY_IDLE_PING_MS \(5000\)/);
});

test('a client that does not read loses events and others do not', async () => {
  const model = modelId('slow');
  // a reader
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const c = collector();
  client.subscribe({ query: `subscription { mlInferenceStream(modelId: "${model}") { inferenceId predictions } }` }, c.sink);
  // a client whose socket stops reading after the ack
  const slow = new WebSocket(gw.ws, T);
  await new Promise((r) => slow.on('open', r));
  slow.send(init);
  slow.send(JSON.stringify({ id: 's', type: 'subscribe', payload: {
    query: `subscription { mlInferenceStream(modelId: "${model}") { inferenceId predictions } }` } }));
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v >= 2, 'both subscriptions');
  slow._socket.pause();
  const dropped0 = await metric(gw, 'ml_stream_gateway_messages_dropped_total');
  // ~16 MB in all: more than the kernel buffers between us and the paused
  // client, so its queue (GATEWAY_SEND_QUEUE=4) overflows
  const big = Array.from({ length: 20000 }, (_, i) => i / 7);
  // one at a time, so that the reading client keeps up even with a queue
  // of 4
  const n = 48;
  for (let i = 0; i < n; i++)
    await publish(redis.url, prediction(model, i, { predictions: big }));
  await waitFor(() => c.events.length === n, 20000, `${n} events on the reading client`);
  await waitMetric(gw, 'ml_stream_gateway_messages_dropped_total', (v) => v > dropped0,
                   'drops counted for the slow client');
  slow.terminate();
  await client.dispose();
});

test('GATEWAY_AUTH_TOKEN: wrong token closes with 4403, the right one is acked', async () => {
  let r = await session(authGw.ws, T, [JSON.stringify({ type: 'connection_init',
                                                       payload: { authorization: 'Bearer wrong' } })]);
  assert.equal(r.code, 4403);
  assert.equal(r.reason, 'Forbidden: invalid credential');
  r = await session(authGw.ws, T, [JSON.stringify({ type: 'connection_init',
                                                   payload: { authorization: 'Bearer e2e-secret' } })],
                    { onMessage: (ws) => ws.close(1000) });
  assert.deepEqual(r.got, ['{"type":"connection_ack"}']);
  let h = await fetch(`${authGw.http}/graphql?query=%7B__typename%7D`);
  assert.equal(h.status, 401);
  h = await fetch(`${authGw.http}/graphql?query=%7B__typename%7D`,
                  { headers: { authorization: 'Bearer e2e-secret' } });
  assert.equal(h.status, 200);
  h = await fetch(`${authGw.http}/healthz`);
  assert.equal(h.status, 200);
});

test('subscriptions end when the gateway stops: close 1001', async () => {
  const other = await startGateway(redis.url);
  const closed = session(other.ws, T, [init, sub('x')]);
  await waitMetric(other, 'ml_stream_gateway_subscriptions', (v) => v === 1, 'the subscription');
  await other.stop();
  const r = await closed;
  assert.equal(r.code, 1001);
});
