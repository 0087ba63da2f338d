// Redis goes away and comes back: the gateway reports connected=false and
// 503 on /readyz meanwhile, then re-subscribes by itself; clients keep
// their subscriptions and receive what is published afterwards. The same
// when Redis stops answering without closing anything (SIGSTOP: what a
// host gone without a RST or a dropped NAT entry looks like to the
// gateway).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

import { collector, gqlPost, metric, modelId, prediction, publish, startGateway,
         startRedis, waitFor, waitMetric } from './helpers.mjs';

const { SubscriptionClient } = pkg;
const PING_MS = 300;
let redis, gw;

before(async () => {
  // always a private Redis: this test stops it
  redis = await startRedis({ private: true });
  gw = await startGateway(redis.url, { REDIS_RETRY_MAX_MS: '200',
                                      GATEWAY_REDIS_PING_MS: String(PING_MS) });
});

after(async () => {
  await gw?.stop();
  await redis?.stop();
});

async function connected() {
  const r = await gqlPost(gw, { query: '{ mlStreamingStatus(modelId: "any") { connected } }' });
  assert.equal(r.status, 200);
  return r.body.data.mlStreamingStatus.connected;
}

test('subscriptions resume after a Redis restart; connected goes false then true', async () => {
  const model = modelId('restart');
  const query = `subscription { mlInferenceStream(modelId: "${model}") { inferenceId gap { reason missed since } } }`;
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const c = collector();
  client.subscribe({ query }, c.sink);
  const legacy = new SubscriptionClient(gw.ws, { reconnect: false }, WebSocket);
  const l = collector();
  legacy.request({ query }).subscribe(l.sink);
  await waitFor(connected, 10000, 'connected');
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 2, 'two subscriptions');

  await publish(redis.url, prediction(model, 1));
  await waitFor(() => c.events.length === 1 && l.events.length === 1, 10000, 'the first event');

  await redis.stopKeep();
  await waitFor(async () => (await connected()) === false, 10000, 'connected: false');
  assert.equal((await fetch(`${gw.http}/readyz`)).status, 503);
  assert.equal(await metric(gw, 'ml_stream_gateway_redis_connected'), 0);

  await redis.start();
  await waitFor(connected, 15000, 'connected: true again');
  assert.equal((await fetch(`${gw.http}/readyz`)).status, 200);
  assert.equal(await metric(gw, 'ml_stream_gateway_redis_connected'), 1);

  // the gateway re-subscribed; the clients stayed, and the first event
  // after it says that what Redis carried meanwhile may be missing
  const back = Date.now();
  assert.equal(await publish(redis.url, prediction(model, 2)), 1);
  assert.equal(await publish(redis.url, prediction(model, 3)), 1);
  await waitFor(() => c.events.length === 3 && l.events.length === 3, 10000, 'two more events');
  const got = c.events.map((e) => e.data.mlInferenceStream);
  assert.deepEqual(got.map((e) => e.inferenceId),
                   [`inf-${model}-1`, `inf-${model}-2`, `inf-${model}-3`]);
  assert.equal(got[0].gap, null);
  assert.equal(got[1].gap.reason, 'UPSTREAM_LOST');
  assert.equal(got[1].gap.missed, null);
  assert.ok(Date.parse(got[1].gap.since) <= back, `re-subscribed at ${got[1].gap.since}`);
  assert.equal(got[2].gap, null, 'the gap is reported once');
  assert.deepEqual(l.events, c.events);
  assert.deepEqual(c.errors, []);
  await client.dispose();
  legacy.close();
});

// redis-server's pid, from the file scripts/services keeps ("pid starttime").
function redisPid() {
  return Number(readFileSync(path.join(redis.dir, 'redis', 'pid'), 'utf8').split(/\s/)[0]);
}

// Redis answers PINGs: how many it has answered so far.
function pings() {
  const stdout = execFileSync('redis-cli', ['-u', redis.url, 'INFO', 'commandstats']).toString();
  const m = /cmdstat_ping:calls=(\d+)/.exec(stdout);
  return m ? Number(m[1]) : 0;
}

test('a Redis that stops answering is given up within twice GATEWAY_REDIS_PING_MS, and resumed', async () => {
  const model = modelId('silent');
  const query = `subscription { mlInferenceStream(modelId: "${model}") { inferenceId gap { reason } } }`;
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const c = collector();
  client.subscribe({ query }, c.sink);
  await waitFor(connected, 10000, 'connected');
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 1, 'the subscription');
  await publish(redis.url, prediction(model, 1));
  await waitFor(() => c.events.length === 1, 10000, 'the first event');

  // idle, the connection is kept alive by PINGs that nothing else sees
  const errors0 = await metric(gw, 'ml_stream_gateway_redis_connection_errors_total');
  const pinged0 = pings();
  await waitFor(async () => pings() >= pinged0 + 3, 10000, 'three PINGs answered');
  assert.equal(await metric(gw, 'ml_stream_gateway_redis_connection_errors_total'), errors0,
               'answered PINGs cost no reconnect');
  assert.equal(await connected(), true);

  const pid = redisPid();
  process.kill(pid, 'SIGSTOP');
  const stopped = performance.now();
  let noticed;
  try {
    // the kernel still holds the connection open; only silence tells
    await waitFor(async () => (await connected()) === false, 10000, 'connected: false');
    noticed = Math.round(performance.now() - stopped);
    assert.equal((await fetch(`${gw.http}/readyz`)).status, 503);
    assert.equal(await metric(gw, 'ml_stream_gateway_redis_connected'), 0);
    assert.ok(await metric(gw, 'ml_stream_gateway_redis_connection_errors_total') > errors0);
    assert.match(gw.log(), /warn .*redis 127\.0\.0\.1:\d+: nothing received in \d+ ms, a PING unanswered; retrying/);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  console.log(`BUDGET: a silent Redis given up ${noticed} ms after it stopped (GATEWAY_REDIS_PING_MS=${PING_MS})`);

  await waitFor(connected, 15000, 'connected: true again');
  assert.equal((await fetch(`${gw.http}/readyz`)).status, 200);
  assert.equal(await publish(redis.url, prediction(model, 2)), 1);
  await waitFor(() => c.events.length === 2, 10000, 'the event after');
  const got = c.events.map((e) => e.data.mlInferenceStream);
  assert.deepEqual(got.map((e) => e.inferenceId), [`inf-${model}-1`, `inf-${model}-2`]);
  assert.equal(got[1].gap.reason, 'UPSTREAM_LOST');
  assert.deepEqual(c.errors, []);
  await client.dispose();
});
