// Adversarial: a publisher on the gateway's channel floods the history of
// recent predictions (mlInferenceStream(after:)) with thousands of model ids
// and more bytes than it may hold. Bounds: GATEWAY_HISTORY_BYTES and 4,096
// models (MLS_HISTORY_MAX_MODELS); the oldest are evicted and counted, a
// new model is never locked out, and resuming still works.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { collector, healthzProber, metric, modelId, openPublisher, prediction, rawWebSocket,
         rssSampler, startGateway, startRedis, waitFor } from './helpers.mjs';

const BUDGET = 8000000;
const MAX_MODELS = 4096;
const MB = 1024 * 1024;
// Under AddressSanitizer RSS is mostly shadow memory and quarantine: the
// memory bound is asserted in the normal build only.
const SANITIZED = process.env.MLS_SANITIZED === '1';

test('the history holds its byte and model bounds under a flood', async () => {
  const redis = await startRedis({ private: true });
  const gw = await startGateway(redis.url, { GATEWAY_HISTORY_BYTES: String(BUDGET) });
  const pub = await openPublisher(redis.url);
  try {
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
    // 5,000 model ids: past the model bound
    const flood = 5000;
    for (let i = 0; i < flood; i += 500)
      await Promise.all(Array.from({ length: 500 },
                                   (_, k) => pub.publish(prediction(`flood-${i + k}`, 1))));
    await waitFor(async () => (await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}')) >= flood,
                  20000, 'the flood received');
    assert.equal(await metric(gw, 'ml_stream_gateway_history_predictions'), MAX_MODELS);
    assert.equal(await metric(gw, 'ml_stream_gateway_history_evicted_total'), flood - MAX_MODELS);
    assert.equal(await metric(gw, 'ml_stream_gateway_history_refused_total'), 0);

    // then more bytes than the budget, for one model
    const model = modelId('bytes');
    const big = 'x'.repeat(2000);
    const n = 6000; // ~2.3 KB each: ~14 MB
    for (let i = 0; i < n; i += 500)
      await Promise.all(Array.from({ length: 500 },
                                   (_, k) => pub.publish(prediction(model, i + k, { metadata: { pad: big } }))));
    await waitFor(async () => (await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}')) >= flood + n,
                  20000, 'the second flood received');
    const bytes = await metric(gw, 'ml_stream_gateway_history_bytes');
    assert.ok(bytes <= BUDGET, `history ${bytes} bytes, budget ${BUDGET}`);
    assert.ok(await metric(gw, 'ml_stream_gateway_history_evicted_total') > flood - MAX_MODELS);

    // resuming after a held prediction still replays to the newest
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    client.subscribe({
      query: 'subscription($m: String!, $a: ID) { mlInferenceStream(modelId: $m, after: $a) { inputId gap { reason } } }',
      variables: { m: model, a: `inf-${model}-${n - 100}` },
    }, c.sink);
    await waitFor(() => c.events.length === 99, 10000, 'the 99 predictions after the cursor');
    assert.equal(c.events[0].data.mlInferenceStream.inputId, `event-${n - 99}`);
    assert.equal(c.events[0].data.mlInferenceStream.gap, null);
    await client.dispose();
    console.log(`BUDGET: history ${bytes} of ${BUDGET} bytes after ${flood} models and ` +
                `~${Math.round(n * 2.3 / 1000)} MB of one model`);
  } finally {
    pub.close();
    await gw.stop();
    await redis.stop();
  }
});

// A client that resumes from far back and then never reads: the replay
// fills at most half of its send queue and waits; the client is not
// closed for it, the gateway's memory does not grow with the history it
// still owes, other subscribers of the model get their live events, and
// once the client reads again it receives the whole replay and the live
// events after it, in order, each once.
test('a resuming client that never reads holds only its own replay', async () => {
  const redis = await startRedis({ private: true });
  const gw = await startGateway(redis.url, {});
  const pub = await openPublisher(redis.url);
  const model = modelId('stalled');
  const pad = 'p'.repeat(1000);
  const backlog = 20000; // ~20 MB of frames owed to the stalled client
  const live = 2000;
  let ws;
  try {
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
    for (let i = 0; i < backlog; i += 500)
      await Promise.all(Array.from({ length: 500 },
                                   (_, k) => pub.publish(prediction(model, i + k, { metadata: { pad } }))));
    await waitFor(async () => (await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}')) >= backlog,
                  30000, 'the backlog received');

    ws = await rawWebSocket(gw.port, 'graphql-transport-ws');
    assert.equal(ws.status, 101);
    await ws.send(JSON.stringify({ type: 'connection_init' }));
    await waitFor(() => ws.frames.length >= 1, 5000, 'connection_ack');
    const rss = rssSampler(gw.proc.pid);
    const probe = healthzProber(gw, 1000);
    await ws.send(JSON.stringify({
      id: 'r', type: 'subscribe',
      payload: { query: `subscription { mlInferenceStream(modelId: "${model}", after: "inf-${model}-0") { inputId metadata } }` },
    }));
    ws.pause(); // from here on, never read

    // the model's other subscriber gets every live event meanwhile
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    client.subscribe({ query: `subscription { mlInferenceStream(modelId: "${model}") { inputId } }` }, c.sink);
    await waitFor(async () => (await metric(gw, 'ml_stream_gateway_subscriptions')) >= 2,
                  10000, 'both subscriptions active');
    for (let i = backlog; i < backlog + live; i += 500)
      await Promise.all(Array.from({ length: 500 },
                                   (_, k) => pub.publish(prediction(model, i + k, { metadata: { pad } }))));
    await waitFor(() => c.events.length === live, 20000, `the ${live} live events at the reading subscriber`);
    assert.equal(c.events[0].data.mlInferenceStream.inputId, `event-${backlog}`);
    const h = await probe.stop();
    const r = rss.stop();
    const replayedWhileStalled = await metric(gw, 'ml_stream_gateway_replayed_total');
    assert.equal(await metric(gw, 'ml_stream_gateway_connections_closed_total{reason="send_queue_bytes"}'), 0,
                 'the stalled client is not closed for its send queue');
    assert.ok(replayedWhileStalled < backlog, `replayed ${replayedWhileStalled} of ${backlog - 1} while stalled`);
    assert.ok(SANITIZED || r.growth <= 64 * MB, `RSS grew by ${(r.growth / MB).toFixed(1)} MB`);
    assert.deepEqual(h.failures, [], 'every /healthz answered 200 within 1 s');

    // reading again: the whole replay, then the live events, each once
    ws.resume();
    const want = backlog - 1 + live;
    const nexts = () => ws.frames.filter((f) => f.data.includes('"type":"next"'));
    await waitFor(() => nexts().length >= want, 60000, `${want} events at the resumed client`);
    const ids = nexts().map((f) => JSON.parse(f.data.toString()).payload.data.mlInferenceStream.inputId);
    assert.equal(ids.length, want);
    ids.forEach((id, i) => assert.equal(id, `event-${i + 1}`));
    console.log(`BUDGET: a stalled resuming client: ${replayedWhileStalled} of ${backlog - 1} replayed ` +
                `while it did not read; RSS growth ${(r.growth / MB).toFixed(1)} MB; worst /healthz ` +
                `${h.worstMs.toFixed(1)} ms`);
    await client.dispose();
  } finally {
    ws?.sock.destroy();
    pub.close();
    await gw.stop();
    await redis.stop();
  }
});
