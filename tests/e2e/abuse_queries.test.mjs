// Expensive queries and junk model ids against a real `mlstream gateway`:
// the query cost limit (GATEWAY_MAX_QUERY_COST), the model table's
// eviction and idle expiry (GATEWAY_MAX_MODELS, GATEWAY_MODEL_IDLE_SECONDS),
// the cap on per-model /metrics series (GATEWAY_METRICS_MAX_MODELS), and
// introspection of the specified directives against graphql-js's own.
// Each attack prints its measured figures on lines starting "BUDGET:".
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { buildClientSchema, buildSchema, findBreakingChanges, findDangerousChanges,
         getIntrospectionQuery, printSchema, specifiedDirectives } from 'graphql';

import { gqlPost, healthzProber, metricsText, modelId, openPublisher, prediction,
         rssBytes, startGateway, startRedis, waitFor } from './helpers.mjs';

const MAX_MODELS = 200;
const COST_LIMIT = 50000; // the default
const METRICS_MODELS = 5;
let redis, gw, idleGw, pub;

before(async () => {
  redis = await startRedis();
  gw = await startGateway(redis.url, {
    GATEWAY_MAX_MODELS: String(MAX_MODELS),
    GATEWAY_METRICS_MAX_MODELS: String(METRICS_MODELS),
  });
  idleGw = await startGateway(redis.url, { GATEWAY_MODEL_IDLE_SECONDS: '2' });
  for (const g of [gw, idleGw])
    await waitFor(async () => (await fetch(`${g.http}/readyz`)).status === 200, 10000, 'ready');
  pub = await openPublisher(redis.url);
});

after(async () => {
  pub?.close();
  await gw?.stop();
  await idleGw?.stop();
  await redis?.stop();
});

const models = async (g) => (await gqlPost(g, { query: '{ mlStreamingModels }' })).body.data.mlStreamingModels;

// Publishes one prediction for each of ids and waits until g lists the last.
async function publishAll(ids, g, n = 0) {
  for (const id of ids) await pub.publish(prediction(id, n));
  const last = ids[ids.length - 1];
  await waitFor(async () => (await models(g)).includes(last), 10000, `${last} to be listed`);
}

function aliases(n, field) {
  let q = '{';
  for (let i = 0; i < n; i++) q += ` a${i}: ${field}`;
  return `${q} }`;
}

test('2000 aliases of mlStreamingModels are refused at validation, quickly', async () => {
  // the table full, as in the report that blocked the loop for 68 s
  await publishAll(Array.from({ length: MAX_MODELS }, () => modelId('full')), gw);
  const probe = healthzProber(gw, 1000);
  const q = aliases(2000, 'mlStreamingModels');
  const t0 = performance.now();
  const r = await gqlPost(gw, { query: q });
  const ms = performance.now() - t0;
  const h = await probe.stop();
  assert.equal(r.status, 400);
  assert.equal(r.body.errors[0].message,
               `Operation costs ${2000 * (MAX_MODELS + 1)} field resolutions, more than the limit of ${COST_LIMIT}.`);
  assert.equal(r.body.data, undefined);
  assert.ok(ms < 1000, `answered in ${ms} ms`);
  assert.deepEqual(h.failures, []);
  console.log(`BUDGET: request cost limit ${COST_LIMIT} (GATEWAY_MAX_QUERY_COST default); ` +
              `2000-alias request (${q.length} bytes) refused in ${ms.toFixed(1)} ms`);
  // the same over WebSocket: an error message, the connection lives on
  const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const err = await new Promise((resolve) => {
    client.subscribe({ query: q }, { next: () => {}, error: resolve, complete: () => resolve(null) });
  });
  assert.match(err[0].message, /^Operation costs \d+ field resolutions, more than the limit of 50000\.$/);
  await client.dispose();
});

test('a request just under the cost limit, table full: answered, /healthz within 1 s', async () => {
  assert.equal((await models(gw)).length, MAX_MODELS);
  const n = Math.floor(COST_LIMIT / (MAX_MODELS + 1)); // 248 aliases
  const probe = healthzProber(gw, 1000);
  let worstRequest = 0;
  for (let round = 0; round < 5; round++) {
    const t0 = performance.now();
    const r = await gqlPost(gw, { query: aliases(n, 'mlStreamingModels') });
    worstRequest = Math.max(worstRequest, performance.now() - t0);
    assert.equal(r.status, 200);
    assert.equal(r.body.errors, undefined);
    assert.equal(r.body.data[`a${n - 1}`].length, MAX_MODELS);
  }
  // many status aliases: each O(1) with incremental statistics
  const ids = await models(gw);
  let q = 'query($m: String!) {';
  for (let i = 0; i < 800; i++)
    q += ` s${i}: mlStreamingStatus(modelId: $m) { p95LatencyMs windowSize }`;
  q += ' }';
  const t0 = performance.now();
  const r = await gqlPost(gw, { query: q, variables: { m: ids[0] } });
  worstRequest = Math.max(worstRequest, performance.now() - t0);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.equal(r.body.data.s0.windowSize, 1);
  const h = await probe.stop();
  assert.deepEqual(h.failures, []);
  assert.ok(h.worstMs < 1000);
  console.log(`BUDGET: worst /healthz latency ${h.worstMs.toFixed(1)} ms over ${h.count} probes ` +
              `during requests just under the cost limit (${n} x mlStreamingModels, ${MAX_MODELS} models; ` +
              `800 x mlStreamingStatus); slowest request ${worstRequest.toFixed(1)} ms`);
});

test('junk model ids fill the table; a real model still shows correct status', async () => {
  const rss0 = rssBytes(gw.proc.pid);
  const junk = Array.from({ length: 20 * MAX_MODELS }, () => modelId('junk'));
  await publishAll(junk, gw);
  const real = modelId('real');
  for (let i = 0; i < 8; i++) await pub.publish(prediction(real, i)); // latency 1 + i/4
  const q = `{ mlStreamingStatus(modelId: "${real}") { windowSize averageLatencyMs p95LatencyMs lastHeartbeatAt } }`;
  const s = await waitFor(async () => {
    const st = (await gqlPost(gw, { query: q })).body.data.mlStreamingStatus;
    return st.windowSize === 8 ? st : null;
  }, 10000, 'the real model\'s window');
  assert.equal(s.averageLatencyMs, 1 + 3.5 / 4);
  assert.equal(s.p95LatencyMs, 1 + 7 / 4);
  assert.ok(s.lastHeartbeatAt);
  const listed = await models(gw);
  assert.equal(listed.length, MAX_MODELS);
  assert.ok(listed.includes(real));
  // /metrics: at most GATEWAY_METRICS_MAX_MODELS models have series, the
  // rest are summed into model_id="__other__"
  const text = await metricsText(gw);
  const ids = new Set([...text.matchAll(/^ml_stream_gateway_window_size\{model_id="([^"]*)"\}/mg)].map((m) => m[1]));
  assert.ok(ids.has('__other__'));
  assert.ok(ids.size <= METRICS_MODELS + 1, [...ids].join(','));
  assert.ok(ids.has(real), 'the most recently active model has its own series');
  assert.match(text, /^ml_stream_gateway_models_forgotten_total\{reason="evicted"\} [1-9]/m);
  const growth = rssBytes(gw.proc.pid) - rss0;
  console.log(`BUDGET: model table cap ${MAX_MODELS} (GATEWAY_MAX_MODELS, default 10000); ` +
              `${junk.length} junk ids: RSS growth ${(growth / 1024).toFixed(0)} KiB; ` +
              `per-model /metrics series: ${ids.size - 1} models + __other__ (GATEWAY_METRICS_MAX_MODELS)`);
});

test('an idle model leaves mlStreamingModels; one with a subscriber stays', async () => {
  const idle = modelId('idle');
  const watched = modelId('watched');
  const client = createClient({ url: idleGw.ws, webSocketImpl: WebSocket, retryAttempts: 0 });
  const got = [];
  client.subscribe({ query: `subscription { mlInferenceStream(modelId: "${watched}") { inputId } }` },
                   { next: (v) => got.push(v), error: () => {}, complete: () => {} });
  let probe = 0; // a new inference id each time: the gateway drops repeats
  await waitFor(async () => {
    await pub.publish(prediction(watched, probe++));
    return got.length > 0;
  }, 10000, 'the subscription');
  await publishAll([idle], idleGw);
  const t0 = performance.now();
  await waitFor(async () => !(await models(idleGw)).includes(idle), 10000, `${idle} to expire`);
  const gone = Math.round(performance.now() - t0);
  assert.ok(gone >= 1000, `expired after ${gone} ms; the idle time is 2 s`);
  const st = (await gqlPost(idleGw, { query: `{ mlStreamingStatus(modelId: "${idle}") { windowSize lastHeartbeatAt } }` }))
    .body.data.mlStreamingStatus;
  assert.deepEqual(st, { windowSize: 0, lastHeartbeatAt: null });
  assert.ok((await models(idleGw)).includes(watched), 'a model with a live subscriber is kept');
  await client.dispose();
  console.log(`BUDGET: idle model forgotten ${gone} ms after it was listed (GATEWAY_MODEL_IDLE_SECONDS=2)`);
});

test('introspected directives agree with graphql-js\'s specified directives', async () => {
  const r = await gqlPost(gw, { query: getIntrospectionQuery({ descriptions: true,
    specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true,
    inputValueDeprecation: true, experimentalDirectiveDeprecation: true }) });
  assert.equal(r.status, 200);
  assert.equal(r.body.errors, undefined);
  const ours = buildClientSchema(r.body.data);
  // graphql-js's schema for the same SDL (its own specified directives)
  const ref = buildSchema(printSchema(ours));
  assert.deepEqual(findBreakingChanges(ref, ours), []);
  assert.deepEqual(findBreakingChanges(ours, ref), []);
  assert.deepEqual(findDangerousChanges(ref, ours), []);
  assert.deepEqual(findDangerousChanges(ours, ref), []);
  const shape = (d) => ({
    name: d.name,
    isRepeatable: d.isRepeatable,
    locations: [...d.locations].sort(),
    args: d.args.map((a) => `${a.name}: ${a.type} = ${JSON.stringify(a.defaultValue)}`),
  });
  for (const d of specifiedDirectives) {
    const o = ours.getDirective(d.name);
    assert.ok(o, `@${d.name} is missing`);
    assert.deepEqual(shape(o), shape(d));
  }
  const dep = r.body.data.__schema.directives.find((d) => d.name === 'deprecated');
  assert.deepEqual([...dep.locations].sort(),
                   ['ARGUMENT_DEFINITION', 'DIRECTIVE_DEFINITION', 'ENUM_VALUE',
                    'FIELD_DEFINITION', 'INPUT_FIELD_DEFINITION']);
  assert.ok(r.body.data.__schema.directives.every((d) => d.isDeprecated === false));
});
