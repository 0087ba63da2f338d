// Resuming a subscription after a reconnect (mlInferenceStream(after:)):
// real graphql-ws and subscriptions-transport-ws clients against
// `mlstream gateway` fed by a steady stream of Redis PUBLISHes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

import { collector, metric, metricsText, modelId, openPublisher, prediction, seriesValue,
         sleep, startGateway, startRedis, waitFor, waitMetric } from './helpers.mjs';

const { SubscriptionClient } = pkg;

const RESUME = `subscription Resume($modelId: String!, $after: ID) {
  mlInferenceStream(modelId: $modelId, after: $after) {
    inferenceId inputId gap { reason missed since }
  }
}`;

// The sockets a graphql-ws client opened, so that a test can cut one
// without a close frame, as a network failure does.
function trackedWebSocket() {
  const opened = [];
  class Tracked extends WebSocket {
    constructor(...args) {
      super(...args);
      opened.push(this);
    }
  }
  return { Tracked, opened };
}

const number = (ev) => Number(ev.data.mlInferenceStream.inputId.slice('event-'.length));

// Publishes predictions from..to-1 of model at about rate per second.
async function stream(pub, model, from, to, rate) {
  const per10ms = Math.max(1, Math.round(rate / 100));
  const start = performance.now();
  for (let n = from; n < to;) {
    const batch = [];
    for (let i = 0; i < per10ms && n < to; i++, n++) batch.push(pub.publish(prediction(model, n)));
    await Promise.all(batch);
    const due = start + ((n - from) / rate) * 1000;
    if (due > performance.now()) await sleep(due - performance.now());
  }
}

describe('resume after reconnect', () => {
  let redis, gw, small, pub;

  before(async () => {
    redis = await startRedis();
    gw = await startGateway(redis.url);
    // a history of about 300 predictions of prediction()'s size
    small = await startGateway(redis.url, { GATEWAY_HISTORY_BYTES: '200000' });
    for (const g of [gw, small])
      await waitFor(async () => (await fetch(`${g.http}/readyz`)).status === 200,
                    10000, 'the gateway to be ready');
    pub = await openPublisher(redis.url);
  });

  after(async () => {
    pub?.close();
    await gw?.stop();
    await small?.stop();
    await redis?.stop();
  });

  test('a socket cut for 2 s during a 5k/s stream: every event once, in order', async () => {
    const model = modelId('resume');
    const total = 20000;
    const { Tracked, opened } = trackedWebSocket();
    const first = collector();
    const client1 = createClient({ url: gw.ws, webSocketImpl: Tracked, retryAttempts: 0, lazy: false,
                                  onNonLazyError: () => {} });
    client1.subscribe({ query: RESUME, variables: { modelId: model } }, first.sink);
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v >= 1, 'the subscription');

    const streaming = stream(pub, model, 0, total, 5000);
    await waitFor(() => first.events.length >= 3000, 20000, '3000 events before the cut');
    opened[0].terminate();
    await waitFor(() => first.errors.length > 0 || first.completed, 5000, 'the client to see the cut');
    const cutAt = first.events.length;
    await sleep(2000);
    assert.ok(cutAt < total, 'the cut came before the end of the stream');

    const last = first.events[first.events.length - 1].data.mlInferenceStream.inferenceId;
    const second = collector();
    const client2 = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    client2.subscribe({ query: RESUME, variables: { modelId: model, after: last } }, second.sink);
    await streaming;
    await waitFor(() => cutAt + second.events.length >= total, 30000,
                  `all ${total} events`);
    await sleep(200); // nothing more may follow
    await client2.dispose();

    assert.ok(first.errors.length > 0, 'the first client saw its socket fail');
    assert.deepEqual(second.errors, []);
    const got = [...first.events, ...second.events].map(number);
    assert.equal(got.length, total, 'no event twice');
    for (let i = 0; i < total; i++) assert.equal(got[i], i, `event ${i} in its place`);
    for (const ev of second.events) assert.equal(ev.data.mlInferenceStream.gap, null);
    assert.ok(second.events.length > 5000, 'the replay covered the 2 s of the cut');
    assert.ok(await metric(gw, 'ml_stream_gateway_replayed_total') >= 2 * 5000 - 1000);
  });

  test('a cursor older than the history: the first event reports the gap', async () => {
    const model = modelId('gap');
    await stream(pub, model, 0, 2000, 5000);
    await waitFor(async () => (await metric(small, 'ml_stream_gateway_history_evicted_total')) > 1000,
                  10000, 'the small history to evict');
    // the bound holds: 2000 predictions went through a 200,000-byte history
    assert.ok(await metric(small, 'ml_stream_gateway_history_bytes') <= 200000);
    assert.ok(await metric(small, 'ml_stream_gateway_history_predictions') < 2000);
    const gapsBefore = await metric(small, 'ml_stream_gateway_resume_gaps_total');
    // subscriptions-transport-ws, the other protocol
    const client = new SubscriptionClient(small.ws, { reconnect: false, lazy: false }, WebSocket);
    const c = collector();
    const sub = client.request({ query: RESUME, variables: { modelId: model, after: `inf-${model}-5` } })
      .subscribe(c.sink);
    await waitFor(() => c.events.length > 0 && number(c.events[c.events.length - 1]) === 1999,
                  10000, 'the replay to reach the newest event');
    const firstEv = c.events[0].data.mlInferenceStream;
    assert.equal(firstEv.gap.reason, 'CURSOR_UNKNOWN');
    assert.equal(firstEv.gap.missed, null, 'how many is unknown');
    assert.match(firstEv.gap.since, /^\d{4}-\d\d-\d\dT/);
    const nums = c.events.map(number);
    const oldest = nums[0];
    assert.ok(oldest > 5 && oldest < 1999, `the replay starts at the oldest held (${oldest})`);
    assert.deepEqual(nums, Array.from({ length: 2000 - oldest }, (_, i) => oldest + i));
    for (const ev of c.events.slice(1)) assert.equal(ev.data.mlInferenceStream.gap, null);
    assert.equal(await metric(small, 'ml_stream_gateway_resume_gaps_total'), gapsBefore + 1);
    // then live
    await pub.publish(prediction(model, 2000));
    await waitFor(() => number(c.events[c.events.length - 1]) === 2000, 5000, 'the live event');
    sub.unsubscribe();
    client.close();
  });

  test('an unknown cursor for a model with nothing held: the next event says so', async () => {
    const model = modelId('fresh');
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    const resumes = await metric(gw, 'ml_stream_gateway_resumes_total');
    client.subscribe({ query: RESUME, variables: { modelId: model, after: 'never-seen' } }, c.sink);
    await waitMetric(gw, 'ml_stream_gateway_resumes_total', (v) => v > resumes, 'the resume');
    await pub.publish(prediction(model, 1));
    await pub.publish(prediction(model, 2));
    await waitFor(() => c.events.length === 2, 5000, 'two events');
    assert.deepEqual(c.events[0].data.mlInferenceStream.gap,
                     { reason: 'CURSOR_UNKNOWN', missed: null, since: null });
    assert.equal(c.events[1].data.mlInferenceStream.gap, null);
    await client.dispose();
  });

  test('subscribers that differ only in their cursor share one rendering, each replay its own', async () => {
    const model = modelId('shared');
    for (let n = 1; n <= 10; n++) await pub.publish(prediction(model, n));
    const groups0 = await metric(gw, 'ml_stream_gateway_subscription_groups');
    const subs0 = await metric(gw, 'ml_stream_gateway_subscriptions');
    const clients = [];
    const sub = (variables) => {
      const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
      const c = collector();
      client.subscribe({ query: RESUME, variables }, c.sink);
      clients.push(client);
      return c;
    };
    const a = sub({ modelId: model, after: `inf-${model}-3` });
    const b = sub({ modelId: model, after: `inf-${model}-7` });
    const live = sub({ modelId: model });
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === subs0 + 3, 'three subscriptions');
    await waitFor(() => a.events.length === 7 && b.events.length === 3, 5000, 'both replays');
    assert.equal(await metric(gw, 'ml_stream_gateway_subscription_groups'), groups0 + 1,
                 'one group for the three');
    await pub.publish(prediction(model, 11));
    await waitFor(() => a.events.length === 8 && b.events.length === 4 && live.events.length === 1,
                  5000, 'the live event at all three');
    assert.deepEqual(a.events.map(number), [4, 5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual(b.events.map(number), [8, 9, 10, 11]);
    assert.deepEqual(live.events.map(number), [11]);
    for (const c of [a, b, live]) assert.ok(c.events.every((e) => e.data.mlInferenceStream.gap === null));
    for (const client of clients) await client.dispose();
  });

  test('GATEWAY_HISTORY_MAX_AGE_MS: predictions leave the history by age; a resume then reports the gap', async () => {
    const aged = await startGateway(redis.url, { GATEWAY_HISTORY_MAX_AGE_MS: '3000' });
    try {
      await waitFor(async () => (await fetch(`${aged.http}/readyz`)).status === 200,
                    10000, 'the gateway to be ready');
      const model = modelId('aged');
      for (let n = 1; n <= 5; n++) await pub.publish(prediction(model, n));
      // the bytes the five hold, read in the same scrape that counts them
      const held = await waitFor(async () => {
        const t = await metricsText(aged);
        return seriesValue(t, 'ml_stream_gateway_history_predictions') === 5 &&
               seriesValue(t, 'ml_stream_gateway_history_bytes');
      }, 5000, 'five held');
      // with room to spare by bytes, age alone empties the history
      await waitMetric(aged, 'ml_stream_gateway_history_predictions', (v) => v === 0,
                       'the five to age out', 10000);
      assert.equal(await metric(aged, 'ml_stream_gateway_history_evicted_total'), 5);
      const left = await metric(aged, 'ml_stream_gateway_history_bytes');
      assert.ok(left < held / 5, `${left} bytes left of ${held}: no prediction's`);
      const client = createClient({ url: aged.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
      const c = collector();
      const resumes = await metric(aged, 'ml_stream_gateway_resumes_total');
      client.subscribe({ query: RESUME, variables: { modelId: model, after: `inf-${model}-2` } }, c.sink);
      await waitMetric(aged, 'ml_stream_gateway_resumes_total', (v) => v > resumes, 'the resume');
      await pub.publish(prediction(model, 6));
      await waitFor(() => c.events.length === 1, 5000, 'the live event');
      assert.equal(number(c.events[0]), 6);
      assert.deepEqual(c.events[0].data.mlInferenceStream.gap,
                       { reason: 'CURSOR_UNKNOWN', missed: null, since: null });
      await client.dispose();
    } finally {
      await aged.stop();
    }
  });

  test('a gateway without history refuses after: with an error, not silence', async () => {
    const off = await startGateway(redis.url, { GATEWAY_HISTORY_BYTES: '0' });
    try {
      await waitFor(async () => (await fetch(`${off.http}/readyz`)).status === 200,
                    10000, 'the gateway to be ready');
      const client = createClient({ url: off.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
      const c = collector();
      client.subscribe({ query: RESUME, variables: { modelId: modelId('off'), after: 'x' } }, c.sink);
      await waitFor(() => c.errors.length > 0, 5000, 'the error');
      assert.match(JSON.stringify(c.errors[0]), /GATEWAY_HISTORY_BYTES=0/);
      await client.dispose();
    } finally {
      await off.stop();
    }
  });
});
