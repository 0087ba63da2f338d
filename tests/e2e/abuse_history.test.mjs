// Adversarial: a publisher on the gateway's channel floods the history of
// recent predictions (mlInferenceStream(after:)) with thousands of model ids
// and more bytes than it may hold. Bounds: GATEWAY_HISTORY_BYTES and 4,096
// models (MLS_HISTORY_MAX_MODELS); the oldest are evicted and counted, a
// new model is never locked out, and resuming still works.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { collector, metric, modelId, openPublisher, prediction, startGateway, startRedis,
         waitFor } from './helpers.mjs';

const BUDGET = 8000000;
const MAX_MODELS = 4096;

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
