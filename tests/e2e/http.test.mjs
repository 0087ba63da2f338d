// GraphQL over HTTP, introspection and the operational routes of
// `mlstream gateway`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { buildClientSchema, getIntrospectionQuery, printSchema } from 'graphql';

import { gqlPost, metricsText, modelId, prediction, publish, sharedGateway,
         waitFor } from './helpers.mjs';

const shared = sharedGateway();

test('introspection satisfies getIntrospectionQuery() + buildClientSchema()', async () => {
  const r = await gqlPost(shared.gw, { query: getIntrospectionQuery({ descriptions: true,
    specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true,
    inputValueDeprecation: true }) });
  assert.equal(r.status, 200);
  assert.equal(r.type, 'application/graphql-response+json');
  assert.equal(r.body.errors, undefined);
  const schema = buildClientSchema(r.body.data);
  // the contract of DESIGN.md section 5, field by field
  const want = {
    Query: { mlStreamingStatus: 'MLStreamingStatus!' },
    Subscription: { mlInferenceStream: 'MLStreamingPrediction!' },
    MLStreamingPrediction: { inferenceId: 'ID!', modelId: 'String!', inputId: 'String',
      predictions: 'JSON!', latencyMs: 'Float!', receivedAt: 'DateTime!',
      publishedAt: 'DateTime', metadata: 'JSON' },
    MLStreamingStatus: { modelId: 'String!', connected: 'Boolean!',
      lastHeartbeatAt: 'DateTime', averageLatencyMs: 'Float', p95LatencyMs: 'Float',
      windowSize: 'Int!' },
  };
  for (const [type, fields] of Object.entries(want)) {
    const t = schema.getType(type);
    assert.ok(t, type);
    for (const [f, ty] of Object.entries(fields)) {
      assert.equal(String(t.getFields()[f]?.type), ty, `${type}.${f}`);
    }
  }
  for (const root of ['mlStreamingStatus', 'mlInferenceStream']) {
    const f = (root === 'mlStreamingStatus' ? schema.getQueryType() : schema.getSubscriptionType())
      .getFields()[root];
    assert.deepEqual(f.args.map((a) => `${a.name}: ${a.type}`),
                     root === 'mlStreamingStatus' ? ['modelId: String!'] : ['modelId: String!', 'after: ID']);
  }
  assert.equal(schema.getType('DateTime').specifiedByURL,
               'https://scalars.graphql.org/andimarek/date-time');
  assert.match(printSchema(schema), /scalar JSON/);
  assert.equal(schema.getQueryType().name, 'Query');
  assert.equal(schema.getSubscriptionType().name, 'Subscription');
});

test('status over HTTP POST and GET', async () => {
  const model = modelId('http');
  await publish(shared.redis.url, prediction(model, 1, { latency_ms: 4 }));
  const query = 'query S($m: String!) { mlStreamingStatus(modelId: $m) { modelId connected averageLatencyMs p95LatencyMs windowSize lastHeartbeatAt } }';
  const r = await waitFor(async () => {
    const x = await gqlPost(shared.gw, { query, variables: { m: model }, operationName: 'S' });
    return x.body?.data?.mlStreamingStatus?.windowSize === 1 ? x : null;
  }, 10000, 'the prediction in the window');
  assert.equal(r.status, 200);
  const s = r.body.data.mlStreamingStatus;
  assert.equal(s.modelId, model);
  assert.equal(s.connected, true);
  assert.equal(s.averageLatencyMs, 4);
  assert.equal(s.p95LatencyMs, 4);
  assert.ok(Date.parse(s.lastHeartbeatAt) > Date.now() - 60000);

  const url = new URL(`${shared.gw.http}/graphql`);
  url.searchParams.set('query', query);
  url.searchParams.set('variables', JSON.stringify({ m: model }));
  url.searchParams.set('operationName', 'S');
  const g = await fetch(url, { headers: { accept: 'application/json' } });
  assert.equal(g.status, 200);
  assert.equal(g.headers.get('content-type'), 'application/json');
  assert.deepEqual((await g.json()).data.mlStreamingStatus, s);
});

test('errors: bad documents, unknown fields, missing variables', async () => {
  let r = await gqlPost(shared.gw, { query: '{ mlStreamingStatus(modelId: "x") {' });
  assert.equal(r.status, 400);
  assert.match(r.body.errors[0].message, /^Syntax Error: /);
  assert.ok(r.body.errors[0].locations?.[0].line >= 1);
  assert.equal(r.body.data, undefined);

  r = await gqlPost(shared.gw, { query: '{ mlStreamingStatus(modelId: "x") { nope } }' });
  assert.equal(r.status, 400);
  assert.equal(r.body.errors[0].message, 'Cannot query field "nope" on type "MLStreamingStatus".');
  assert.deepEqual(r.body.errors[0].locations, [{ line: 1, column: 37 }]);

  r = await gqlPost(shared.gw, { query: 'query($m: String!) { mlStreamingStatus(modelId: $m) { modelId } }' });
  assert.equal(r.status, 400);
  assert.equal(r.body.errors[0].message, 'Variable "$m" of required type "String!" was not provided.');

  r = await gqlPost(shared.gw, { query: '{ mlStreamingStatus { modelId } }' });
  assert.equal(r.status, 400);
  assert.match(r.body.errors[0].message, /argument "modelId" of type "String!" is required/);

  // the same with legacy application/json: 200 and the same errors
  r = await gqlPost(shared.gw, { query: '{ mlStreamingStatus(modelId: "x") { nope } }' },
                    { accept: 'application/json' });
  assert.equal(r.status, 200);
  assert.equal(r.type, 'application/json');
  assert.equal(r.body.errors[0].message, 'Cannot query field "nope" on type "MLStreamingStatus".');
});

test('GraphQL-over-HTTP status codes', async () => {
  let r = await gqlPost(shared.gw, '{"query": ');
  assert.equal(r.status, 400);
  assert.ok(r.body.errors[0].message);
  r = await gqlPost(shared.gw, { query: 7 });
  assert.equal(r.status, 400);
  r = await gqlPost(shared.gw, { query: '{ __typename }' }, { 'content-type': 'text/plain' });
  assert.equal(r.status, 415);
  r = await gqlPost(shared.gw, { query: '{ __typename }' }, { accept: 'text/html' });
  assert.equal(r.status, 406);
  const put = await fetch(`${shared.gw.http}/graphql`, { method: 'PUT', body: '{}' });
  assert.equal(put.status, 405);
  assert.match(put.headers.get('allow'), /GET, POST/);
  const sub = new URL(`${shared.gw.http}/graphql`);
  sub.searchParams.set('query', 'subscription { mlInferenceStream(modelId: "m") { inferenceId } }');
  const g = await fetch(sub);
  assert.equal(g.status, 405);
  r = await gqlPost(shared.gw, { query: 'x'.repeat(300000) });
  assert.equal(r.status, 413);
  r = await gqlPost(shared.gw, { query: '{ __typename }' });
  assert.deepEqual(r.body, { data: { __typename: 'Query' } });
});

test('/metrics passes promtool check metrics and has the gateway series', async () => {
  const text = await metricsText(shared.gw);
  for (const name of ['ml_stream_gateway_connections', 'ml_stream_gateway_subscriptions',
                      'ml_stream_gateway_messages_sent_total',
                      'ml_stream_gateway_messages_dropped_total',
                      'ml_stream_gateway_redis_connected', 'ml_stream_gateway_payloads_invalid_total',
                      'ml_stream_gateway_window_latency_seconds'])
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  assert.match(text, /^ml_stream_gateway_redis_connected 1$/m);
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text });
  if (promtool.error) {
    assert.equal(promtool.error.code, 'ENOENT');
    return; // no promtool here: format checked above only
  }
  assert.equal(promtool.status, 0, `${promtool.stdout}${promtool.stderr}`);
});

test('/healthz, /readyz, / and unknown paths', async () => {
  let r = await fetch(`${shared.gw.http}/healthz`);
  assert.equal(r.status, 200);
  r = await fetch(`${shared.gw.http}/readyz`);
  assert.equal(r.status, 200);
  r = await fetch(`${shared.gw.http}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  assert.match(await r.text(), /\/graphql/);
  r = await fetch(`${shared.gw.http}/nope`);
  assert.equal(r.status, 404);
});

test('a port in use is a clear error naming GATEWAY_PORT', async () => {
  const { spawnSync: run } = await import('node:child_process');
  const p = run(process.env.MLSTREAM_BIN || 'mlstream', ['gateway'], {
    env: { ...process.env, REDIS_URL: shared.redis.url, GATEWAY_HOST: '127.0.0.1',
           GATEWAY_PORT: String(shared.gw.port) },
    encoding: 'utf8', timeout: 10000 });
  assert.equal(p.status, 2);
  assert.match(p.stderr, new RegExp(`127\\.0\\.0\\.1:${shared.gw.port}: port already in use`));
  assert.match(p.stderr, /GATEWAY_PORT/);
  assert.match(p.stderr, /--gateway-port/);
});
