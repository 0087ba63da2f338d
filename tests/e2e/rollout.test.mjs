// Model versions, canaries and shadow scoring (issue 14), gateway side:
// hand-written heartbeats from two fake engines and predictions carrying
// model_version go through a real redis-server into a real `mlstream
// gateway`; mlModelComparison sums both engines, mlStreamingOverview lists
// loaded-but-idle models with their versions, subscribers receive
// modelVersion, and hostile heartbeats neither crash the gateway nor grow
// its memory past a bound, and are counted.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { collector, gqlPost, metric, modelId, openPublisher, prediction,
         rssBytes, signJwt, sleep, startGateway, startRedis, waitFor } from './helpers.mjs';

const INVALID = 'ml_stream_gateway_heartbeat_entries_invalid_total';
const GARBAGE = 'ml_stream_gateway_payloads_invalid_total';
const STATUS_FIELDS = `modelId framework servingVersion canaryVersion canaryShare
  shadowVersion engines predictionsPerSecond errorsPerSecond windowSize`;
// What the hostile flood may add to the gateway's RSS. The engine table
// holds at most 65,536 loaded entries and 16,384 comparisons (about 80 MB
// if every one is filled); the flood below fills at most 1,024 engines x
// 32 entries, well under that.
const RSS_BOUND = 128 << 20;
// Under AddressSanitizer RSS is mostly shadow memory and quarantine: the
// memory bound is asserted in the normal build only (as abuse_*.test.mjs).
const SANITIZED = process.env.MLS_SANITIZED === '1';

const tag = `${process.pid}`;
const engineA = `fake-engine-a-${tag}`;
const engineB = `fake-engine-b-${tag}`;

// A heartbeat as issue 14's engines publish it.
function heartbeat(engine, { models, loaded, comparisons }) {
  return { type: 'heartbeat', engine_id: engine, at: new Date().toISOString(),
           models, loaded, comparisons };
}

function comparison(model, rows, agreements, sum, counts, servingS, shadowS, calls) {
  return { model_id: model, serving: 'v1', shadow: 'v3', rows, agreements,
           abs_diff_sum: sum, abs_diff_le: [0.1, 1, 10], abs_diff_counts: counts,
           serving_seconds: servingS, serving_calls: calls,
           shadow_seconds: shadowS, shadow_calls: calls };
}

async function gql(gw, query, variables) {
  const r = await gqlPost(gw, { query, variables });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.errors, undefined, r.text);
  return r.body.data;
}

describe('model versions, canary and shadow', () => {
  let redis, gw, pub;
  const live = modelId('live');
  const idle = modelId('idle');

  // Both engines serve live (v1, canary v2 at 25 %, shadow v3) and idle
  // (a content hash); counters as given.
  const beat = (engine, preds, errs, cmp) => pub.publish(heartbeat(engine, {
    models: [live, idle],
    loaded: [
      { model_id: live, framework: 'torch', serving: 'v1', canary: 'v2',
        canary_share: 0.25, shadow: 'v3', predictions: preds, errors: errs },
      { model_id: idle, framework: 'tensorflow', serving: '0123456789abcdef',
        canary: null, canary_share: null, shadow: null, predictions: 0, errors: 0 },
    ],
    comparisons: [cmp],
  }));
  const cmpA = comparison(live, 1000, 950, 12.5, [500, 375, 100, 25], 0.5, 0.75, 100);
  const cmpB = comparison(live, 3000, 2850, 37.5, [1500, 1125, 300, 75], 1.5, 2.25, 300);

  before(async () => {
    redis = await startRedis();
    gw = await startGateway(redis.url);
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
    pub = await openPublisher(redis.url);
  });

  after(async () => {
    pub?.close();
    await gw?.stop();
    await redis?.stop();
  });

  // when the first round of heartbeats went out (for the rates' bounds)
  let round1 = [0, 0];

  test('mlModelComparison sums both engines exactly', async () => {
    round1[0] = Date.now();
    assert.equal(await beat(engineA, 1000, 10, cmpA), 1);
    assert.equal(await beat(engineB, 5000, 0, cmpB), 1);
    round1[1] = Date.now();
    const q = `query($m: String!) { mlModelComparison(modelId: $m) { modelId servingVersion
      shadowVersion rows agreementRate meanAbsDiff p95AbsDiff servingLatencyMs
      shadowLatencyMs engines } }`;
    const [c] = await waitFor(async () => {
      const d = await gql(gw, q, { m: live });
      return d.mlModelComparison[0]?.engines === 2 && d.mlModelComparison;
    }, 5000, 'both engines in the comparison');
    assert.equal(c.modelId, live);
    assert.equal(c.servingVersion, 'v1');
    assert.equal(c.shadowVersion, 'v3');
    assert.equal(c.rows, 4000);
    assert.equal(c.agreementRate, 0.95);
    assert.equal(c.meanAbsDiff, 0.0125);
    // 95 % of 4000 = 3800: 300 rows into the 400 of (1, 10]
    assert.equal(c.p95AbsDiff, 7.75);
    assert.ok(Math.abs(c.servingLatencyMs - 5) < 1e-9, String(c.servingLatencyMs));
    assert.ok(Math.abs(c.shadowLatencyMs - 7.5) < 1e-9, String(c.shadowLatencyMs));
    // a model nobody shadows
    assert.deepEqual((await gql(gw, q, { m: idle })).mlModelComparison, []);
  });

  test('mlStreamingOverview lists loaded-but-idle models with versions and rates', async () => {
    const q = `{ mlStreamingOverview { ${STATUS_FIELDS} } }`;
    const d = await gql(gw, q);
    const ids = d.mlStreamingOverview.map((s) => s.modelId);
    assert.deepEqual(ids, [...ids].sort(), 'sorted by modelId');
    const byId = Object.fromEntries(d.mlStreamingOverview.map((s) => [s.modelId, s]));
    assert.deepEqual(byId[idle], {
      modelId: idle, framework: 'tensorflow', servingVersion: '0123456789abcdef',
      canaryVersion: null, canaryShare: null, shadowVersion: null, engines: 2,
      predictionsPerSecond: null, errorsPerSecond: null, windowSize: 0,
    });
    assert.equal(byId[live].servingVersion, 'v1');
    assert.equal(byId[live].canaryVersion, 'v2');
    assert.equal(byId[live].canaryShare, 0.25);
    assert.equal(byId[live].shadowVersion, 'v3');
    assert.equal(byId[live].engines, 2);
    assert.equal(byId[live].predictionsPerSecond, null, 'one heartbeat each: rate unknown');

    // a second round of heartbeats one second later: +1000 and +3000
    // predictions, +2 errors
    await sleep(1000);
    const round2 = [Date.now()];
    await beat(engineA, 2000, 12, cmpA);
    await beat(engineB, 8000, 0, cmpB);
    round2[1] = Date.now();
    const s = await waitFor(async () => {
      const st = (await gql(gw, `query($m: String!) { mlStreamingStatus(modelId: $m) {
        ${STATUS_FIELDS} } }`, { m: live })).mlStreamingStatus;
      return st.predictionsPerSecond != null && st.errorsPerSecond != null && st;
    }, 5000, 'the rates');
    // the interval is the gateway's (when it received each heartbeat):
    // between what the two rounds allow, give or take 50 ms of delivery
    const longest = (round2[1] - round1[0] + 50) / 1000;
    const shortest = (round2[0] - round1[1] - 50) / 1000;
    const within = (v, amount) => v >= amount / longest && v <= amount / shortest;
    assert.ok(within(s.predictionsPerSecond, 4000),
              `predictionsPerSecond ${s.predictionsPerSecond}: 4000 over ${shortest}..${longest} s`);
    assert.ok(within(s.errorsPerSecond, 2),
              `errorsPerSecond ${s.errorsPerSecond}: 2 over ${shortest}..${longest} s`);
  });

  test('subscribers receive modelVersion; history replays it', async () => {
    const client = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const c = collector();
    const dispose = client.subscribe({
      query: `subscription($m: String!) { mlInferenceStream(modelId: $m) { inferenceId modelVersion } }`,
      variables: { m: live },
    }, c.sink);
    // the subscription is live once a first prediction arrives (each try
    // a new inference id: repeats would be dropped as duplicates)
    let warm = 100;
    await waitFor(async () => {
      await pub.publish(prediction(live, ++warm, { model_version: 'v1' }));
      return c.events.length > 0;
    }, 5000, 'the subscription');
    await waitFor(() => c.events.some((e) => e.data.mlInferenceStream.inferenceId ===
                                        `inf-${live}-${warm}`), 5000, 'the last warm-up');
    const start = c.events.length;
    await pub.publish(prediction(live, 1, { model_version: 'v2' }));
    await pub.publish(prediction(live, 2, { modelVersion: 'v1' }));
    await pub.publish(prediction(live, 3));
    await waitFor(() => c.events.length >= start + 3, 5000, 'three predictions');
    assert.deepEqual(c.events.slice(start, start + 3).map((e) => e.data.mlInferenceStream),
                     [{ inferenceId: `inf-${live}-1`, modelVersion: 'v2' },
                      { inferenceId: `inf-${live}-2`, modelVersion: 'v1' },
                      { inferenceId: `inf-${live}-3`, modelVersion: null }]);
    dispose();

    // a resumed subscription replays the history with the versions
    const r = collector();
    const dispose2 = client.subscribe({
      query: `subscription($m: String!, $a: ID) { mlInferenceStream(modelId: $m, after: $a) {
        inferenceId modelVersion } }`,
      variables: { m: live, a: `inf-${live}-${warm}` },
    }, r.sink);
    await waitFor(() => r.events.length >= 3, 5000, 'the replay');
    assert.deepEqual(r.events.slice(0, 2).map((e) => e.data.mlInferenceStream.modelVersion),
                     ['v2', 'v1']);
    dispose2();
    await client.dispose();
  });

  test('hostile heartbeats: no crash, bounded memory, counted', async () => {
    const pid = gw.proc.pid;
    const invalid0 = (await metric(gw, INVALID)) ?? 0;
    const garbage0 = (await metric(gw, GARBAGE)) ?? 0;
    const base = rssBytes(pid);
    const huge = 'x'.repeat(1 << 20);
    const ints = new Array(100000).fill(1);
    let expected = 0;
    const send = async (hb, skipped) => {
      await pub.publish(typeof hb === 'string' ? hb : JSON.stringify(hb));
      expected += skipped;
    };
    // wrong types: each entry, or each field that is not an array, counts
    await send(heartbeat('h1', { loaded: 'x', comparisons: 7 }), 2);
    await send(heartbeat('h1', { loaded: [1, 'a', null, [], { model_id: 5 },
      { model_id: 'm', serving: 1 }, { model_id: 'm', canary_share: 'x' },
      { model_id: 'm', predictions: -1 }] }), 8);
    await send(heartbeat('h1', { comparisons: [{ model_id: 'm', serving: 'a', shadow: 'b',
      rows: 'x', agreements: 1, abs_diff_sum: 0 }, { model_id: 'm', serving: 'a', shadow: 'b',
      rows: 1, agreements: 1, abs_diff_sum: 0, abs_diff_le: ints, abs_diff_counts: [...ints, 1] }] }), 2);
    // 100,000-element arrays
    await send(heartbeat('h2', { loaded: ints, comparisons: ints }), 200000);
    await send(heartbeat('h3', { loaded: Array.from({ length: 100000 }, (_, i) => ({ model_id: `m${i}` })) }),
               100000 - 256);
    // huge strings: as the engine id, a model id, a version
    await send(heartbeat(huge, { loaded: [{ model_id: 'm' }] }), 2);
    await send(heartbeat('h4', { loaded: [{ model_id: huge }, { model_id: 'm', serving: huge }] }), 2);
    await send({ type: 'heartbeat', engine_id: 'h5', models: huge }, 0); // garbage payload
    // many engines, each with many valid entries: the engine table's caps
    const entries = Array.from({ length: 32 }, (_, i) => ({ model_id: `flood-${i}`, serving: 'v1' }));
    for (let i = 0; i < 1500; i++)
      await send(heartbeat(`flood-engine-${tag}-${i}`, { loaded: entries }), 0);
    // last: once its bad entry is counted, the gateway has read everything
    await send(heartbeat('h-last', { loaded: [1] }), 1);

    await waitFor(async () => (await metric(gw, INVALID)) - invalid0 >= expected, 20000,
                  'the hostile entries to be counted');
    assert.equal((await metric(gw, INVALID)) - invalid0, expected);
    assert.equal((await metric(gw, GARBAGE)) - garbage0, 1);
    const growth = rssBytes(pid) - base;
    if (!SANITIZED)
      assert.ok(growth < RSS_BOUND, `RSS grew by ${growth} bytes (bound ${RSS_BOUND})`);
    console.log(`# hostile heartbeats: RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
    assert.ok((await metric(gw, 'ml_stream_gateway_engines')) <= 1024);

    // still serving: status, overview and a fresh heartbeat's comparison
    const d = await gql(gw, `{ mlStreamingOverview { modelId engines } }`);
    assert.ok(Array.isArray(d.mlStreamingOverview));
    await beat(engineA, 3000, 12, cmpA);
    await waitFor(async () => (await gql(gw, `query($m: String!) { mlModelComparison(modelId: $m) {
      rows } }`, { m: live })).mlModelComparison.length === 1, 5000, 'the fresh heartbeat');
    assert.equal(gw.proc.exitCode, null, 'the gateway is running');
  });
});

// Tenant scoping (docs/security.md): versions are engine-level like
// heartbeats; the engines' counters and comparisons count every tenant's
// inputs, so a tenant-scoped caller gets null rates and no comparison, and
// the overview lists only what mlStreamingModels lists for it.
describe('model versions under tenant-scoped tokens', () => {
  const SECRET = 'rollout-e2e-secret-0123456789abcdef0123';
  const jwt = (claims) => signJwt({ sub: 'e2e', exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, SECRET);
  let redis, gw, pub;

  before(async () => {
    redis = await startRedis();
    gw = await startGateway(redis.url, { GATEWAY_JWT_SECRET: SECRET });
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  10000, 'the gateway to be ready');
    pub = await openPublisher(redis.url);
  });

  after(async () => {
    pub?.close();
    await gw?.stop();
    await redis?.stop();
  });

  test('versions for everyone; rates and comparisons only for unrestricted callers', async () => {
    const announced = modelId('announced');
    const blueOnly = modelId('blue');
    const engine = `tenant-engine-${tag}`;
    const cmp = comparison(announced, 100, 90, 1, [50, 40, 10, 0], 0.1, 0.2, 10);
    const loaded = (n) => [{ model_id: announced, framework: 'torch', serving: 'v1', canary: null,
                             canary_share: null, shadow: 'v3', predictions: n, errors: 0 }];
    await pub.publish(heartbeat(engine, { models: [announced], loaded: loaded(10), comparisons: [cmp] }));
    await sleep(300);
    await pub.publish(heartbeat(engine, { models: [announced], loaded: loaded(40), comparisons: [cmp] }));
    await pub.publish(prediction(blueOnly, 1, { metadata: { tenant: 'blue-team' } }));
    const ask = async (token, query, variables) => {
      const r = await gqlPost(gw, { query, variables }, { Authorization: `Bearer ${token}` });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.errors, undefined, r.text);
      return r.body.data;
    };
    const all = jwt({});
    const red = jwt({ tenants: ['red-team'] });
    const OVERVIEW = '{ mlStreamingOverview { modelId servingVersion shadowVersion engines predictionsPerSecond } }';
    const COMPARE = 'query($m: String!) { mlModelComparison(modelId: $m) { rows engines } }';
    const full = await waitFor(async () => {
      const d = await ask(all, OVERVIEW);
      const a = d.mlStreamingOverview.find((s) => s.modelId === announced);
      return a?.predictionsPerSecond != null && d.mlStreamingOverview.some((s) => s.modelId === blueOnly) && d;
    }, 5000, 'the overview');
    assert.ok(full.mlStreamingOverview.find((s) => s.modelId === announced).predictionsPerSecond > 0);
    assert.deepEqual((await ask(all, COMPARE, { m: announced })).mlModelComparison, [{ rows: 100, engines: 1 }]);

    const scoped = (await ask(red, OVERVIEW)).mlStreamingOverview;
    assert.ok(!scoped.some((s) => s.modelId === blueOnly), 'another tenant\'s model stays hidden');
    assert.deepEqual(scoped.find((s) => s.modelId === announced),
                     { modelId: announced, servingVersion: 'v1', shadowVersion: 'v3', engines: 1,
                       predictionsPerSecond: null });
    assert.deepEqual((await ask(red, COMPARE, { m: announced })).mlModelComparison, []);
  });
});
