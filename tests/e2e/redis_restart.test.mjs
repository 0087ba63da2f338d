// Redis goes away and comes back: the gateway reports connected=false and
// 503 on /readyz meanwhile, then re-subscribes by itself; clients keep
// their subscriptions and receive what is published afterwards.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

import { collector, gqlPost, metric, modelId, prediction, publish, startGateway,
         startRedis, waitFor, waitMetric } from './helpers.mjs';

const { SubscriptionClient } = pkg;
let redis, gw;

before(async () => {
  // always a private Redis: this test stops it
  redis = await startRedis({ private: true });
  gw = await startGateway(redis.url, { REDIS_RETRY_MAX_MS: '200' });
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
