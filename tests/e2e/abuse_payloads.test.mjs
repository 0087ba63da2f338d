// Payloads at the size bounds, through a real Redis into a real gateway on
// its default caps. Whoever can PUBLISH on the channel chooses them:
// - one of exactly GATEWAY_MAX_PAYLOAD_BYTES whose input id is made of
//   "\n" escapes (each becomes the six bytes "\u000a" again, the most a
//   string can grow) is delivered exactly, on both protocols;
// - one byte more is skipped and counted;
// - one whose response would pass the outgoing cap reaches its
//   subscribers as an EVENT_TOO_LARGE error naming it, while a subscriber
//   whose selection fits gets the event itself;
// and the events around them arrive in order, the gateway's memory stays
// within its budget and it stays healthy. Then a hostile Redis server's
// replies at the reader's bounds (one that never ends, an array header of
// a billion elements): dropped with a warning naming the limit.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

import { collector, metric, modelId, openPublisher, prediction, rssSampler, startGateway,
         startRedis, waitFor, waitMetric } from './helpers.mjs';

const { SubscriptionClient } = pkg;
const MAX = 4194304; // GATEWAY_MAX_PAYLOAD_BYTES' default
const MB = 1024 * 1024;
const SANITIZED = process.env.MLS_SANITIZED === '1';
const INVALID = 'ml_stream_gateway_payloads_invalid_total';
const RENDER_ERRORS = 'ml_stream_gateway_render_errors_total';

let redis, gw, pub;
const M = modelId('bounds');
const clients = [];

before(async () => {
  redis = await startRedis();
  gw = await startGateway(redis.url, {});
  await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200, 10000, 'ready');
  pub = await openPublisher(redis.url);
});

after(async () => {
  for (const c of clients) await c.close();
  pub?.close();
  await gw?.stop();
  await redis?.stop();
});

// A prediction of model M whose input id is `newlines` line feeds, padded
// in metadata to exactly `bytes` bytes of JSON.
function escaped(n, newlines, bytes) {
  const p = prediction(M, n, { input_id: '\n'.repeat(newlines), metadata: { pad: '' } });
  const len = Buffer.byteLength(JSON.stringify(p));
  assert.ok(len <= bytes, `${len} > ${bytes}`);
  p.metadata.pad = 'p'.repeat(bytes - len);
  const text = JSON.stringify(p);
  assert.equal(Buffer.byteLength(text), bytes);
  return text;
}

function subscribe(selection) {
  const c = collector();
  const query = `subscription { mlInferenceStream(modelId: "${M}") { ${selection} } }`;
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  client.subscribe({ query }, c.sink);
  clients.push({ close: () => client.dispose() });
  return c;
}

function subscribeLegacy(selection) {
  const c = collector();
  const query = `subscription { mlInferenceStream(modelId: "${M}") { ${selection} } }`;
  const client = new SubscriptionClient(gw.ws, { reconnect: false }, WebSocket);
  client.request({ query }).subscribe(c.sink);
  clients.push({ close: async () => client.close() });
  return c;
}

test('payloads at the bounds: delivered exactly, skipped, or named in an error; nothing else lost', async () => {
  const full = subscribe('inferenceId inputId');
  const legacy = subscribeLegacy('inferenceId inputId');
  const idOnly = subscribe('inferenceId');
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 3, 'three subscriptions');
  const invalid0 = await metric(gw, INVALID);
  const errors0 = await metric(gw, RENDER_ERRORS);
  const rss = rssSampler(gw.proc.pid);

  // 600,000 line feeds: 1.2 MB in the payload, 3.6 MB in the response
  const fits = escaped(1, 600000, MAX);
  // 1,000,000: 6 MB in the response, past the outgoing cap
  const grows = escaped(3, 1000000, MAX);
  await pub.publish(prediction(M, 0));
  await pub.publish(fits);
  await pub.publish(escaped(2, 600000, MAX + 1));
  await pub.publish(grows);
  await pub.publish(prediction(M, 4));

  for (const [name, c] of Object.entries({ full, legacy, idOnly }))
    await waitFor(() => c.events.length >= 4, 30000, `${name}: 4 results`);
  const r = rss.stop();

  const ids = (c) => c.events.map((e) => e.data?.mlInferenceStream.inferenceId ?? null);
  for (const [name, c] of Object.entries({ full, legacy })) {
    assert.deepEqual(c.errors, [], name);
    assert.deepEqual(ids(c), [`inf-${M}-0`, `inf-${M}-1`, null, `inf-${M}-4`], name);
    const input = c.events[1].data.mlInferenceStream.inputId;
    assert.equal(input.length, 600000, name);
    assert.ok(input === '\n'.repeat(600000), `${name}: the input id, byte for byte`);
    assert.equal(c.events[0].data.mlInferenceStream.inputId, 'event-0', name);
    // the event too large for its selection, named
    const e = c.events[2];
    assert.equal(e.data, null, name);
    assert.equal(e.errors.length, 1, name);
    assert.match(e.errors[0].message, /larger than the gateway's outgoing message limit \(GATEWAY_MAX_PAYLOAD_BYTES\)/, name);
    assert.deepEqual(e.errors[0].extensions, { code: 'EVENT_TOO_LARGE', inferenceId: `inf-${M}-3` }, name);
  }
  // a selection that fits gets that event itself
  assert.deepEqual(ids(idOnly), [`inf-${M}-0`, `inf-${M}-1`, `inf-${M}-3`, `inf-${M}-4`]);
  assert.deepEqual(idOnly.errors, []);

  assert.equal(await metric(gw, INVALID) - invalid0, 1, 'the payload one byte over the cap');
  assert.match(gw.log(), /warn .*skipped a payload of 4194305 bytes from the channel \(counted in ml_stream_gateway_payloads_invalid_total\): payload too large/);
  assert.equal(await metric(gw, RENDER_ERRORS) - errors0, 1, 'one rendering, shared by both protocols');
  // two 4 MiB payloads at a time at most, each with its 4x store, its
  // response and the copies on their way out
  console.log(`BUDGET: RSS grew by ${(r.growth / MB).toFixed(1)} MB for ${MAX}-byte payloads`);
  assert.ok(SANITIZED || r.growth <= 64 * MB, `RSS grew by ${(r.growth / MB).toFixed(1)} MB`);
  assert.equal(gw.proc.exitCode, null);
  assert.equal((await fetch(`${gw.http}/healthz`)).status, 200);
  assert.equal(await metric(gw, 'ml_stream_gateway_messages_dropped_total'), 0);
});

// A hostile Redis server (or whoever sits between the gateway and Redis):
// answers the gateway's first command with reply(sock, conn), having shown
// what it got to look (when given), and records each connection. Returns
// { conns, url, close }.
async function hostileRedis(reply, look) {
  const conns = [];
  const server = net.createServer((sock) => {
    const c = { sent: 0, closed: false };
    conns.push(c);
    sock.on('error', () => {});
    sock.on('close', () => { c.closed = true; });
    sock.once('data', (data) => {
      if (look) look(data);
      reply(sock, c);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { conns, url: `redis://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

function peakRss(proc) {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))[1]) * 1024;
}

// The reply never ends: a message whose payload is an array of 65,536
// arrays of 65,536 integers, each 4 bytes on the wire and an object in
// memory. The reader's cap on
// unparsed bytes cannot stop it (each piece is parsed at once); the cap on
// one reply's objects (twice that cap plus 16 MiB) does: the gateway drops
// the connection, stays healthy, its peak memory within 96 MB (the reply
// uncapped would take ~190 MB), and connects again.
test('a Redis reply that never ends is cut off at its objects cap', async () => {
  const CHILD = Buffer.concat([Buffer.from('*65536\r\n'), Buffer.from(':1\r\n'.repeat(65536))]);
  const MAX_CHILDREN = 40; // ~10 MB on the wire, ~190 MB of objects uncapped
  const redisSrv = await hostileRedis(async (sock, c) => {
    // a message whose payload is the never-ending array (kind and channel
    // first, as the subscriber's pub/sub shape check wants)
    sock.write('*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n*65536\r\n');
    while (!c.closed && c.sent < MAX_CHILDREN) {
      if (!sock.write(CHILD)) await new Promise((r) => sock.once('drain', r).once('close', r));
      c.sent++;
    }
  });
  const { conns } = redisSrv;
  const hostile = await startGateway(redisSrv.url, {});
  try {
    await waitFor(() => conns.length >= 2, 20000, 'the gateway to drop the reply and connect again');
    // the peak since the gateway started: the reply may be cut off before
    // a sampler could see it
    const hwm = peakRss(hostile.proc);
    console.log(`BUDGET: a never-ending Redis reply cut off after ${conns[0].sent} of ${MAX_CHILDREN} ` +
                `arrays (${(conns[0].sent * CHILD.length / MB).toFixed(1)} MB sent); peak RSS ${(hwm / MB).toFixed(1)} MB`);
    assert.ok(conns[0].closed);
    assert.ok(conns[0].sent < MAX_CHILDREN, `the gateway read all ${MAX_CHILDREN} arrays`);
    // the log says which limit, not "Out of memory"
    assert.match(hostile.log(), /warn .*redis 127\.0\.0\.1:\d+: a reply took more memory than mlstream allows one/);
    assert.ok(SANITIZED || hwm <= 96 * MB, `peak RSS ${(hwm / MB).toFixed(1)} MB`);
    assert.equal((await fetch(`${hostile.http}/healthz`)).status, 200);
    assert.equal((await fetch(`${hostile.http}/readyz`)).status, 503);
  } finally {
    await hostile.stop();
    redisSrv.close();
  }
});

// The reply claims an array of a billion elements and sends none: its
// element table (8 GB) is refused from the header alone (at most 65,536
// elements), so the gateway drops the connection at once, without the
// allocation, and tries again; it stays healthy and small throughout.
test('a Redis array header claiming a billion elements is refused from the header', async () => {
  const redisSrv = await hostileRedis((sock, c) => {
    sock.write('*1000000000\r\n:1\r\n');
    c.sent = 1;
  });
  const { conns } = redisSrv;
  const hostile = await startGateway(redisSrv.url, {});
  try {
    await waitFor(() => conns.length >= 2 && conns[0].closed, 20000,
                  'the gateway to drop the connection and connect again');
    const hwm = peakRss(hostile.proc);
    console.log(`BUDGET: an array header of 1e9 elements refused; peak RSS ${(hwm / MB).toFixed(1)} MB`);
    assert.ok(SANITIZED || hwm <= 32 * MB, `peak RSS ${(hwm / MB).toFixed(1)} MB`);
    assert.match(hostile.log(), /warn .*redis 127\.0\.0\.1:\d+: a reply announced an array of more than 65,536 elements; retrying/);
    assert.equal((await fetch(`${hostile.http}/healthz`)).status, 200);
    assert.equal((await fetch(`${hostile.http}/readyz`)).status, 503);
  } finally {
    await hostile.stop();
    redisSrv.close();
  }
});

// Bytes the process has read with read(2) so far: its sockets' included
// (libuv and hiredis read them so), whatever the kernel had buffered.
function bytesRead(proc) {
  return Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${proc.pid}/io`, 'utf8'))[1]);
}

// A line that never ends (a status reply of endless "x"): hiredis looks
// for a line's end from its start again on every read, so such a line
// would cost the event loop time in the square of its length up to the
// payload cap (4 MiB: ~0.15 s a connection attempt). The gateway gives up
// after 64 KiB of it, long before the payload cap, on both of its Redis
// readers: the single-node subscriber and a cluster's shard connections
// (here the seed answering the first command). It says why (once, however
// often the server does it), reads no more than a few reads past the
// bound, stays healthy and small, and connects again.
for (const cluster of [false, true]) {
  test(`a Redis reply line that never ends is refused after 64 KiB (${cluster ? 'cluster' : 'single node'})`, async () => {
    const CHUNK = Buffer.alloc(65536, 'x');
    const LIMIT = 4 * MAX; // what the hostile server gives up after
    let go;
    const started = new Promise((r) => { go = r; });
    const redisSrv = await hostileRedis(async (sock, c) => {
      await started;
      sock.write('+');
      while (!c.closed && c.sent < LIMIT) {
        c.sent += CHUNK.length;
        if (!sock.write(CHUNK)) await new Promise((r) => sock.once('drain', r).once('close', r));
      }
    });
    const { conns } = redisSrv;
    const env = cluster ? { REDIS_CLUSTER: 'true', ML_STREAM_REDIS_CHANNEL_MODE: 'per-model' } : {};
    const hostile = await startGateway(redisSrv.url, env);
    try {
      const before = bytesRead(hostile.proc);
      go();
      await waitFor(() => conns.length >= 2 && conns[0].closed, 20000,
                    'the gateway to drop the connection and connect again');
      const read = bytesRead(hostile.proc) - before;
      const hwm = peakRss(hostile.proc);
      console.log(`BUDGET: a never-ending Redis line (${cluster ? 'cluster' : 'single node'}) cut off; ` +
                  `the gateway read ${(read / 1024).toFixed(0)} KiB meanwhile ` +
                  `(${(conns[0].sent / MB).toFixed(2)} MB written); peak RSS ${(hwm / MB).toFixed(1)} MB`);
      const why = cluster
        ? /warn .*redis cluster: .*: a reply line passed 64 KiB without ending; retrying/
        : /warn .*redis 127\.0\.0\.1:\d+: a reply line passed 64 KiB without ending; retrying/;
      assert.match(hostile.log(), why);
      assert.equal(hostile.log().match(/a reply line passed/g).length, 1, 'warned once');
      // given up by the line's bound, not the payload cap's: the first
      // connection, and the second's start, took well under 1 MiB
      assert.doesNotMatch(hostile.log(), /larger than \d+ bytes|over the size limit/);
      assert.ok(read < MB, `the gateway read ${read} bytes`);
      assert.ok(SANITIZED || hwm <= 32 * MB, `peak RSS ${(hwm / MB).toFixed(1)} MB`);
      assert.equal((await fetch(`${hostile.http}/healthz`)).status, 200);
      assert.equal((await fetch(`${hostile.http}/readyz`)).status, 503);
    } finally {
      await hostile.stop();
      redisSrv.close();
    }
  });
}

// Replies in subscribed mode that break the pub/sub shape. Before 5
// December the gateway read them with hiredis' async subscriber, which
// asserts that shape: one 20-byte reply from a hostile Redis aborted the
// gateway. Each is refused with a warning naming it now: the gateway
// stays up and healthy and connects again.
const SHAPES = [
  ['*1\r\n$7\r\nmessage\r\n', /a pub\/sub reply of fewer than three elements/],
  ['*2\r\n:1\r\n:2\r\n', /a pub\/sub reply of fewer than three elements/],
  ['*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\nx\r\n', /a pub\/sub reply whose kind or channel is not a bulk string/],
  ['*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n', /a pub\/sub reply whose kind or channel is not a bulk string/],
  ['+OK\r\n', /a pub\/sub reply that is not an array/],
];
test('pub/sub replies of the wrong shape are refused, not fatal', async () => {
  for (const [bad, why] of SHAPES) {
    const redisSrv = await hostileRedis((sock, c) => {
      // confirm the SUBSCRIBE of the gateway's channel, then misbehave
      const ch = redisSrv.firstChannel;
      sock.write(`*3\r\n$9\r\nsubscribe\r\n$${ch.length}\r\n${ch}\r\n:1\r\n`);
      sock.write(bad.replace('$CH\r\n', `$${ch.length}\r\n${ch}\r\n`));
      c.sent = 1;
    }, (data) => {
      // "*2\r\n$9\r\nSUBSCRIBE\r\n$<n>\r\n<channel>\r\n..."
      const m = /SUBSCRIBE\r\n\$\d+\r\n([^\r]+)\r\n/.exec(data.toString());
      if (m) redisSrv.firstChannel = m[1];
    });
    const { conns } = redisSrv;
    const hostile = await startGateway(redisSrv.url, {});
    try {
      await waitFor(() => conns.length >= 2 && conns[0].closed, 20000,
                    'the gateway to drop the connection and connect again');
      assert.equal(hostile.proc.exitCode, null, hostile.log());
      assert.equal(hostile.proc.signalCode, null, hostile.log());
      assert.match(hostile.log(), new RegExp(`warn .*redis 127\\.0\\.0\\.1:\\d+: ${why.source}; retrying`));
      assert.equal((await fetch(`${hostile.http}/healthz`)).status, 200);
    } finally {
      await hostile.stop();
      redisSrv.close();
    }
  }
});

// A cluster seed that accepts the connection and never says a word (a
// wedged node, or a port that is not Redis at all). Before the PING
// deadline the gateway waited on it for ever: no slot map, never ready,
// though the next seed was fine. Now it gives the seed up after twice
// GATEWAY_REDIS_PING_MS and takes the map from the next one.
test('a silent cluster seed is given up for the next one', { skip: !process.env.REDIS_CLUSTER_URL }, async () => {
  const redisSrv = await hostileRedis(() => {}); // reads, never answers
  const { conns } = redisSrv;
  const real = process.env.REDIS_CLUSTER_URL.replace(/^redis:\/\//, '').split(',')[0];
  const hostile = await startGateway(`${redisSrv.url},${real}`, {
    REDIS_CLUSTER: 'true', ML_STREAM_REDIS_CHANNEL_MODE: 'per-model',
    GATEWAY_REDIS_PING_MS: '300', ML_LOG_LEVEL: 'debug',
  });
  try {
    await waitFor(async () => (await fetch(`${hostile.http}/readyz`)).status === 200, 20000,
                  'the gateway to be ready from the second seed');
    assert.ok(conns.length >= 1 && conns[0].closed, 'the silent seed was given up');
    assert.match(hostile.log(), /slot map from 127\.0\.0\.1:\d+: nothing received in \d+ ms, a PING unanswered/);
    assert.equal(await metric(hostile, 'ml_stream_gateway_redis_connected'), 1);
    assert.ok(await metric(hostile, 'ml_stream_gateway_redis_connection_errors_total') >= 1);
  } finally {
    await hostile.stop();
    redisSrv.close();
  }
});
