// Subscriptions end to end: real graphql-ws and subscriptions-transport-ws
// clients against `mlstream gateway` fed by redis-cli PUBLISH; the
// deduplication and latency windows at their settings.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';
import { buildClientSchema, execute, getIntrospectionQuery, parse, validate } from 'graphql';

import { collector, gqlPost, metric, modelId, openPublisher, prediction, publish,
         startGateway, startRedis, waitFor, waitMetric } from './helpers.mjs';

const { SubscriptionClient } = pkg;

const FULL = `subscription Watch($modelId: String!) {
  mlInferenceStream(modelId: $modelId) {
    inferenceId modelId inputId predictions latencyMs receivedAt publishedAt metadata
  }
}`;

let redis, gw, schema;

// What the gateway must deliver for a payload (DESIGN.md sections 4-5).
function expected(p) {
  return {
    inferenceId: p.inference_id ?? p.inferenceId,
    modelId: p.model_id ?? p.modelId,
    inputId: p.input_id ?? p.inputId ?? null,
    predictions: p.predictions,
    latencyMs: p.latency_ms ?? p.latencyMs,
    receivedAt: p.received_at ?? p.receivedAt,
    publishedAt: p.published_at ?? p.publishedAt ?? null,
    metadata: p.metadata ?? null,
  };
}

// Re-executes the document over the received data with the schema the
// gateway introspected: any type the data breaks (a null for a non-null
// field, a wrong scalar) comes back as an error, and the output must equal
// the input.
function checkAgainstSchema(query, variables, data) {
  const document = parse(query);
  assert.deepEqual(validate(schema, document), []);
  const r = execute({ schema, document, rootValue: data, variableValues: variables });
  assert.equal(r.errors, undefined, JSON.stringify(r.errors));
  assert.deepEqual(JSON.parse(JSON.stringify(r.data)), data);
}

async function noSubscriptions() {
  await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 0,
                   'no live subscriptions');
}

before(async () => {
  redis = await startRedis();
  gw = await startGateway(redis.url);
  await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                10000, 'the gateway to be ready');
  const r = await gqlPost(gw, { query: getIntrospectionQuery() });
  assert.equal(r.status, 200);
  schema = buildClientSchema(r.body.data);
});

after(async () => {
  await gw?.stop();
  await redis?.stop();
});

describe('graphql-transport-ws (graphql-ws client)', () => {
  test('receives exactly the predictions of its model, every field right', async () => {
    const model = modelId('exact');
    const other = modelId('other');
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    const dispose = client.subscribe({ query: FULL, variables: { modelId: model } }, c.sink);
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 1, 'the subscription');

    const sent = [
      prediction(model, 1),
      // camelCase keys, no optional fields
      { inferenceId: 'camel-1', modelId: model, predictions: { label: 'threat', score: 0.99 },
        latencyMs: 0.25, receivedAt: '2026-11-26T23:59:59.5+01:00' },
      // a nanosecond timestamp keeps every digit
      prediction(model, 3, { input_id: null, metadata: { ns: 1764201599123456789n } }),
    ];
    await publish(redis.url, prediction(other, 2));
    await publish(redis.url, 'not json at all');
    await publish(redis.url, { type: 'prediction', model_id: model }); // garbage: no fields
    for (const p of sent) {
      const text = JSON.stringify(p, (k, v) => (typeof v === 'bigint' ? `@@${v}@@` : v))
        .replace(/"@@(\d+)@@"/g, '$1');
      assert.equal(await publish(redis.url, text), 1);
    }
    await publish(redis.url, prediction(other, 4));
    await publish(redis.url, prediction(model, 99));

    await waitFor(() => c.events.length >= 4, 10000, 'four events');
    assert.deepEqual(c.errors, []);
    assert.equal(c.events.length, 4, 'nothing else arrived');
    const want = [...sent.map(expected), expected(prediction(model, 99))];
    // JSON.parse cannot hold 1764201599123456789 exactly; compare the raw
    // digits separately below
    want[2].metadata = c.events[2].data.mlInferenceStream.metadata;
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(c.events[i], { data: { mlInferenceStream: want[i] } });
      checkAgainstSchema(FULL, { modelId: model }, c.events[i].data);
    }
    dispose();
    await client.dispose();
    await noSubscriptions();
  });

  test('a 19-digit integer in metadata arrives with every digit', async () => {
    const model = modelId('digits');
    const ws = new WebSocket(gw.ws, 'graphql-transport-ws');
    const raw = [];
    ws.on('message', (d) => raw.push(d.toString()));
    await new Promise((r) => ws.on('open', r));
    ws.send(JSON.stringify({ type: 'connection_init' }));
    ws.send(JSON.stringify({ id: 'd', type: 'subscribe', payload: {
      query: `subscription { mlInferenceStream(modelId: "${model}") { metadata } }` } }));
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 1, 'the subscription');
    await publish(redis.url, `{"model_id":"${model}","inference_id":"x","predictions":[1],` +
      `"latency_ms":1,"received_at":"2026-01-01T00:00:00Z","metadata":{"ns":1764201599123456789}}`);
    await waitFor(() => raw.length >= 2, 10000, 'the event');
    assert.equal(raw[1], '{"id":"d","type":"next","payload":{"data":{"mlInferenceStream":' +
      '{"metadata":{"ns":1764201599123456789}}}}}');
    ws.close();
    await noSubscriptions();
  });

  test('subscribers of the same document share one rendering group', async () => {
    const model = modelId('group');
    const clients = [0, 1, 2].map(() => createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 }));
    const cs = clients.map((cl) => {
      const c = collector();
      cl.subscribe({ query: FULL, variables: { modelId: model } }, c.sink);
      return c;
    });
    // a different selection is its own group
    const c4 = collector();
    clients[0].subscribe({ query: `subscription { mlInferenceStream(modelId: "${model}") { inferenceId } }` }, c4.sink);
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 4, 'four subscriptions');
    assert.equal(await metric(gw, 'ml_stream_gateway_subscription_groups'), 2);
    const sentBefore = await metric(gw, 'ml_stream_gateway_messages_sent_total');
    for (let n = 0; n < 5; n++) await publish(redis.url, prediction(model, n));
    await waitFor(() => cs.every((c) => c.events.length === 5) && c4.events.length === 5,
                  10000, 'five events on every subscription');
    for (const c of cs)
      assert.deepEqual(c.events.map((e) => e.data.mlInferenceStream.inferenceId),
                       [0, 1, 2, 3, 4].map((n) => `inf-${model}-${n}`));
    assert.deepEqual(c4.events[2], { data: { mlInferenceStream: { inferenceId: `inf-${model}-2` } } });
    assert.ok((await metric(gw, 'ml_stream_gateway_messages_sent_total')) >= sentBefore + 20);
    await Promise.all(clients.map((cl) => cl.dispose()));
    await noSubscriptions();
    assert.equal(await metric(gw, 'ml_stream_gateway_subscription_groups'), 0);
  });

  test('status over WebSocket follows predictions and heartbeats', async () => {
    const model = modelId('status');
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
    const query = `query S($m: String!) { mlStreamingStatus(modelId: $m) {
      modelId connected lastHeartbeatAt averageLatencyMs p95LatencyMs windowSize } }`;
    const ask = () => new Promise((resolve, reject) => {
      let out;
      client.subscribe({ query, variables: { m: model } },
                       { next: (v) => { out = v; }, error: reject, complete: () => resolve(out) });
    });
    let r = await ask();
    assert.deepEqual(r, { data: { mlStreamingStatus: {
      modelId: model, connected: true, lastHeartbeatAt: null, averageLatencyMs: null,
      p95LatencyMs: null, windowSize: 0 } } });
    checkAgainstSchema(query, { m: model }, r.data);

    const before = Date.now();
    await publish(redis.url, { type: 'heartbeat', engine_id: 'e2e', at: new Date().toISOString(),
                               models: [model, 'someone-else'] });
    r = await waitFor(async () => {
      const v = await ask();
      return v.data.mlStreamingStatus.lastHeartbeatAt ? v : null;
    }, 10000, 'lastHeartbeatAt');
    const at = Date.parse(r.data.mlStreamingStatus.lastHeartbeatAt);
    assert.ok(at >= before - 1000 && at <= Date.now() + 1000, r.data.mlStreamingStatus.lastHeartbeatAt);
    assert.equal(r.data.mlStreamingStatus.windowSize, 0);

    // latencies 1..20 ms: mean 10.5, nearest-rank p95 19
    for (let n = 1; n <= 20; n++)
      await publish(redis.url, prediction(model, n, { latency_ms: n }));
    r = await waitFor(async () => {
      const v = await ask();
      return v.data.mlStreamingStatus.windowSize === 20 ? v : null;
    }, 10000, 'a window of 20');
    assert.equal(r.data.mlStreamingStatus.averageLatencyMs, 10.5);
    assert.equal(r.data.mlStreamingStatus.p95LatencyMs, 19);
    checkAgainstSchema(query, { m: model }, r.data);
    await client.dispose();
  });
});

describe('graphql-ws legacy protocol (subscriptions-transport-ws client)', () => {
  test('receives the predictions of its model and stops cleanly', async () => {
    const model = modelId('legacy');
    const client = new SubscriptionClient(gw.ws, { reconnect: false, lazy: false }, WebSocket);
    const c = collector();
    const sub = client.request({ query: FULL, variables: { modelId: model } }).subscribe(c.sink);
    await waitMetric(gw, 'ml_stream_gateway_subscriptions', (v) => v === 1, 'the subscription');
    const p1 = prediction(model, 1);
    const p2 = prediction(model, 2, { metadata: null });
    await publish(redis.url, prediction(modelId('x'), 9));
    await publish(redis.url, p1);
    await publish(redis.url, p2);
    await waitFor(() => c.events.length >= 2, 10000, 'two events');
    assert.deepEqual(c.events, [{ data: { mlInferenceStream: expected(p1) } },
                                { data: { mlInferenceStream: expected(p2) } }]);
    for (const e of c.events) checkAgainstSchema(FULL, { modelId: model }, e.data);
    sub.unsubscribe();
    await noSubscriptions();
    client.close();
  });

  test('a query and errors over the legacy protocol', async () => {
    const client = new SubscriptionClient(gw.ws, { reconnect: false }, WebSocket);
    const one = (req) => new Promise((resolve) => {
      const got = { data: [], errors: [] };
      client.request(req).subscribe({
        next: (v) => got.data.push(v),
        error: (e) => { got.errors.push(e); resolve(got); },
        complete: () => resolve(got),
      });
    });
    let r = await one({ query: '{ mlStreamingStatus(modelId: "q") { modelId connected } }' });
    assert.deepEqual(r.data, [{ data: { mlStreamingStatus: { modelId: 'q', connected: true } } }]);
    r = await one({ query: '{ mlStreamingStatus(modelId: "q") { nope } }' });
    assert.match(JSON.stringify(r), /Cannot query field \\"nope\\" on type \\"MLStreamingStatus\\"/);
    r = await one({ query: 'subscription { mlInferenceStream(' });
    assert.match(JSON.stringify(r.errors), /Syntax Error/);
    client.close();
  });
});

describe('the per-prediction windows: GATEWAY_DEDUPE_WINDOW, ML_LATENCY_WINDOW', () => {
  let small, off, pub;
  const INPUT = `subscription W($m: String!) { mlInferenceStream(modelId: $m) { inputId } }`;

  before(async () => {
    small = await startGateway(redis.url, { GATEWAY_DEDUPE_WINDOW: '8', ML_LATENCY_WINDOW: '5' });
    off = await startGateway(redis.url, { GATEWAY_DEDUPE_WINDOW: '0' });
    for (const g of [small, off])
      await waitFor(async () => (await fetch(`${g.http}/readyz`)).status === 200, 10000, 'ready');
    pub = await openPublisher(redis.url);
  });

  after(async () => {
    pub?.close();
    await small?.stop();
    await off?.stop();
  });

  // Subscribes on g; resolves with the client and the collected inputIds.
  async function watch(g, model) {
    const client = createClient({ url: g.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    const subs = await metric(g, 'ml_stream_gateway_subscriptions');
    client.subscribe({ query: INPUT, variables: { m: model } }, c.sink);
    await waitMetric(g, 'ml_stream_gateway_subscriptions', (v) => v === subs + 1, 'the subscription');
    return { client, ids: () => c.events.map((e) => e.data.mlInferenceStream.inputId) };
  }

  test('a repeat within the window is dropped; one far past it is delivered again', async () => {
    const model = modelId('dedupe');
    const w = await watch(small, model);
    const dropped = await metric(small, 'ml_stream_gateway_duplicates_dropped_total');
    for (const n of [1, 2, 3]) await pub.publish(prediction(model, n));
    await pub.publish(prediction(model, 1)); // two later predictions: remembered
    for (let n = 4; n <= 40; n++) await pub.publish(prediction(model, n));
    await pub.publish(prediction(model, 1)); // 39 later: the 8-id window forgot it
    await pub.publish(prediction(model, 41));
    const want = [1, 2, 3, ...Array.from({ length: 37 }, (_, i) => 4 + i), 1, 41].map((n) => `event-${n}`);
    await waitFor(() => w.ids().at(-1) === 'event-41', 10000, 'the last event');
    assert.deepEqual(w.ids(), want);
    assert.equal(await metric(small, 'ml_stream_gateway_duplicates_dropped_total'), dropped + 1);
    await w.client.dispose();
  });

  test('GATEWAY_DEDUPE_WINDOW=0 delivers a repeat', async () => {
    const model = modelId('nodedupe');
    const w = await watch(off, model);
    for (const n of [1, 1, 2]) await pub.publish(prediction(model, n));
    await waitFor(() => w.ids().at(-1) === 'event-2', 10000, 'the last event');
    assert.deepEqual(w.ids(), ['event-1', 'event-1', 'event-2']);
    assert.equal(await metric(off, 'ml_stream_gateway_duplicates_dropped_total'), 0);
    await w.client.dispose();
  });

  test('the latency status covers the last ML_LATENCY_WINDOW predictions', async () => {
    const model = modelId('window');
    // latencies 1..20 ms; the window holds 16..20: mean 18, nearest-rank p95 20
    for (let n = 1; n <= 20; n++) await pub.publish(prediction(model, n, { latency_ms: n }));
    const q = `{ mlStreamingStatus(modelId: "${model}") { windowSize averageLatencyMs p95LatencyMs } }`;
    const r = await waitFor(async () => {
      const s = (await gqlPost(small, { query: q })).body.data.mlStreamingStatus;
      return s.averageLatencyMs === 18 ? s : null;
    }, 10000, 'the window to move on');
    assert.deepEqual(r, { windowSize: 5, averageLatencyMs: 18, p95LatencyMs: 20 });
  });
});
