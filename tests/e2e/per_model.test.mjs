// Per-model channels (ML_STREAM_REDIS_CHANNEL_MODE=per-model): the gateway
// subscribes only to the channels of the models its clients watch, and to
// the control channel for heartbeats; checked against Redis' own view
// (PUBSUB CHANNELS / NUMSUB) with real graphql-ws clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { CHANNEL, collector, gqlPost, metric, modelId, openPublisher, prediction,
         startGateway, startRedis, waitFor, waitMetric } from './helpers.mjs';

const STREAM = `subscription($m: String!) { mlInferenceStream(modelId: $m) { inferenceId inputId } }`;
const modelChannel = (m) => `${CHANNEL}:{${m}}`;
const CONTROL = `${CHANNEL}:control`;

function redisCli(url, ...args) {
  return execFileSync('redis-cli', ['-u', url, ...args]).toString().trim();
}
// How many subscribers Redis counts on channel.
const numsub = (url, ch) => Number(redisCli(url, 'PUBSUB', 'NUMSUB', ch).split('\n')[1]);

describe('per-model channels', () => {
  let redis, gw, pub;

  before(async () => {
    redis = await startRedis({ private: true });
    gw = await startGateway(redis.url, { ML_STREAM_REDIS_CHANNEL_MODE: 'per-model' });
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
    pub = await openPublisher(redis.url);
  });

  after(async () => {
    pub?.close();
    await gw?.stop();
    await redis?.stop();
  });

  test('only watched models reach the gateway; channels follow subscribers', async () => {
    const watched = modelId('watched');
    const other = modelId('other');
    // before anyone watches: the control channel only
    assert.equal(numsub(redis.url, CONTROL), 1);
    assert.equal(numsub(redis.url, modelChannel(watched)), 0);
    assert.equal(await metric(gw, 'ml_stream_gateway_redis_channels'), 1);

    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    const dispose = client.subscribe({ query: STREAM, variables: { m: watched } }, c.sink);
    await waitFor(() => numsub(redis.url, modelChannel(watched)) === 1, 5000,
                  'the gateway to subscribe to the watched model');
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === 2, 'two channels');

    const before = await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}');
    for (let n = 0; n < 50; n++) {
      assert.equal(await pub.publish(prediction(watched, n), modelChannel(watched)), 1);
      // nobody on this gateway watches other: Redis has no receiver for it
      assert.equal(await pub.publish(prediction(other, n), modelChannel(other)), 0);
      // the single channel is not listened to in this mode
      assert.equal(await pub.publish(prediction(watched, 1000 + n)), 0);
    }
    await waitFor(() => c.events.length === 50, 5000, '50 events');
    assert.deepEqual(c.events.map((e) => e.data.mlInferenceStream.inputId),
                     Array.from({ length: 50 }, (_, n) => `event-${n}`));
    assert.equal(await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}'),
                 before + 50, 'the gateway received the watched model only');

    // heartbeats on the control channel still feed mlStreamingModels
    const hb = JSON.stringify({ type: 'heartbeat', engine_id: 'e2e', models: [other],
                                at: new Date().toISOString() });
    assert.equal(await pub.publish(hb, CONTROL), 1);
    await waitFor(async () => (await gqlPost(gw, { query: '{ mlStreamingModels }' }))
      .body.data.mlStreamingModels.includes(other), 5000, 'the heartbeat\'s model listed');

    // the last subscriber leaves: the gateway unsubscribes
    dispose();
    await waitFor(() => numsub(redis.url, modelChannel(watched)) === 0, 5000,
                  'the gateway to unsubscribe');
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === 1, 'one channel');
    await client.dispose();
  });

  test('subscribe/unsubscribe churn ends in the right state', async () => {
    const model = modelId('churn');
    // many quick joins and leaves: at most one SUBSCRIBE or UNSUBSCRIBE is in
    // flight per channel, and the last word wins
    for (let i = 0; i < 20; i++) {
      const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
      const dispose = client.subscribe({ query: STREAM, variables: { m: model } }, collector().sink);
      await waitFor(async () => (await metric(gw, 'ml_stream_gateway_subscriptions')) >= 1, 5000, 'joined');
      dispose();
      await client.dispose();
    }
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 0, 'all gone');
    await waitFor(() => numsub(redis.url, modelChannel(model)) === 0, 5000, 'unsubscribed');
    // and once more, staying: it receives
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    client.subscribe({ query: STREAM, variables: { m: model } }, c.sink);
    await waitFor(() => numsub(redis.url, modelChannel(model)) === 1, 5000, 'subscribed');
    await pub.publish(prediction(model, 7), modelChannel(model));
    await waitFor(() => c.events.length === 1, 5000, 'the event');
    await client.dispose();
  });

  test('after a Redis restart the gateway subscribes to its models again', async () => {
    const model = modelId('restart');
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    client.subscribe({ query: STREAM, variables: { m: model } }, c.sink);
    await waitFor(() => numsub(redis.url, modelChannel(model)) === 1, 5000, 'subscribed');
    pub.close();
    await redis.stopKeep();
    await waitMetric(gw, 'ml_stream_gateway_redis_connected', (v) => v === 0, 'the outage seen');
    await redis.start();
    await waitFor(() => numsub(redis.url, modelChannel(model)) === 1, 15000, 'subscribed again');
    assert.equal(numsub(redis.url, CONTROL), 1);
    pub = await openPublisher(redis.url);
    await pub.publish(prediction(model, 1), modelChannel(model));
    await waitFor(() => c.events.length === 1, 5000, 'the event after the restart');
    await client.dispose();
  });
});

// Adversarial: one client subscribes to more distinct models than the
// gateway may watch. Each watched model costs a Redis channel; the bound
// is GATEWAY_MAX_WATCHED_MODELS, over all clients.
test('a client watching thousands of models is held to GATEWAY_MAX_WATCHED_MODELS', async () => {
  const MAX = 20;
  const redis = await startRedis({ private: true });
  const gw = await startGateway(redis.url, {
    ML_STREAM_REDIS_CHANNEL_MODE: 'per-model',
    GATEWAY_MAX_WATCHED_MODELS: String(MAX),
    GATEWAY_MAX_OPERATIONS: '1000',
  });
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
  try {
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
    const models = Array.from({ length: 500 }, (_, i) => modelId(`many${i}`));
    const sinks = models.map((m) => {
      const c = collector();
      client.subscribe({ query: STREAM, variables: { m } }, c.sink);
      return c;
    });
    // refused as an execution result: {errors: [...]}, then complete
    const isRefused = (c) => c.completed && c.events.length === 1 && c.events[0].errors;
    await waitFor(() => sinks.filter(isRefused).length === models.length - MAX,
                  15000, 'every subscription past the limit refused');
    const refused = sinks.filter(isRefused);
    assert.match(JSON.stringify(refused[0].events[0].errors), /GATEWAY_MAX_WATCHED_MODELS/);
    assert.equal(await metric(gw, 'ml_stream_gateway_models_refused_total'), models.length - MAX);
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === MAX + 1,
                     `control + ${MAX} model channels`);
    const channels = redisCli(redis.url, 'PUBSUB', 'CHANNELS', `${CHANNEL}:*`).split('\n');
    assert.equal(channels.length, MAX + 1, 'Redis holds no more of our channels');
    // a model that is watched already is still served, beyond the limit
    const watched = models[sinks.findIndex((c) => !isRefused(c))];
    const again = collector();
    client.subscribe({ query: STREAM, variables: { m: watched } }, again.sink);
    const pub = await openPublisher(redis.url);
    await pub.publish(prediction(watched, 1), modelChannel(watched));
    await waitFor(() => again.events.length === 1, 5000, 'the event at the extra subscriber');
    assert.deepEqual(again.errors, []);
    pub.close();
    console.log(`BUDGET: ${models.length} models asked on one connection: ${MAX} watched, ` +
                `${models.length - MAX} refused, ${channels.length} Redis channels`);
  } finally {
    await client.dispose();
    await gw.stop();
    await redis.stop();
  }
});
