// Access control end to end (docs/security.md): static bearer tokens and
// HS256 JWTs (with their audience and issuer) over HTTP,
// graphql-transport-ws (the graphql-ws client) and the legacy graphql-ws
// protocol (subscriptions-transport-ws); tenant isolation of the event
// stream and of mlStreamingStatus; expiry on live connections; /metrics
// behind a token; the origin allowlist; and no secret in the gateway's logs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';

import { MLSTREAM, collector, freePort, gqlPost, modelId, openPublisher, prediction,
         signJwt, sleep, startGateway, startRedis, waitFor } from './helpers.mjs';

const { SubscriptionClient } = pkg;
const T = 'graphql-transport-ws';

const SECRET = 'e2e-jwt-secret-0123456789-abcdefghij-KLMNOP';
const TOKEN1 = 'static-token-one-6f1d2a9c8b7e';
const TOKEN2 = 'static-token-two-0a9b8c7d6e5f';
const LEGACY_TOKEN = 'legacy-single-token-31415926';

const now = () => Math.floor(Date.now() / 1000);
const jwt = (claims = {}, opts = {}) =>
  signJwt({ sub: 'e2e', exp: now() + 3600, ...claims }, opts.secret ?? SECRET, opts.header);
const bearer = (t) => ({ authorization: `Bearer ${t}` });

let redis, gw, pub, dir;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mlstream-auth-'));
  writeFileSync(path.join(dir, 'tokens'), `# e2e\n${TOKEN1}\n\n${TOKEN2}\n`, { mode: 0o600 });
  writeFileSync(path.join(dir, 'jwt'), `${SECRET}\n`, { mode: 0o600 });
  redis = await startRedis();
  gw = await startGateway(redis.url, {
    GATEWAY_AUTH_TOKENS_FILE: path.join(dir, 'tokens'),
    GATEWAY_AUTH_TOKEN: LEGACY_TOKEN,
    GATEWAY_JWT_SECRET_FILE: path.join(dir, 'jwt'),
    GATEWAY_JWT_LEEWAY_SECONDS: '0',
  });
  await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200, 10000, 'ready');
  pub = await openPublisher(redis.url);
});

after(async () => {
  pub?.close();
  await gw?.stop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Opens a raw WebSocket (options: ws client options such as headers or
// origin), sends msgs once open, resolves with the close code, reason and
// messages.
function session(url, protocols, msgs, { timeoutMs = 8000, onMessage, options } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, options);
    const got = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(got)}`));
    }, timeoutMs);
    ws.on('open', () => { for (const m of msgs) ws.send(m); });
    ws.on('message', (d) => {
      got.push(d.toString());
      onMessage?.(ws, d.toString(), got);
    });
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString(), got });
    });
    ws.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, reason: e.message, got });
    });
  });
}

const initWith = (payload) => JSON.stringify({ type: 'connection_init', payload });

// A WebSocket class for graphql-ws that sends headers with the upgrade.
const withHeaders = (headers) => class extends WebSocket {
  constructor(url, protocols) { super(url, protocols, { headers }); }
};

// A graphql-ws client (no retries) subscribed to model; resolves with it
// and its collector once the subscription is live, or with the close event
// when the connection is refused.
function wsSubscribe(model, { connectionParams, headers, url = gw.ws, query } = {}) {
  const c = collector();
  let closed = null;
  const client = createClient({
    url,
    webSocketImpl: headers ? withHeaders(headers) : WebSocket,
    retryAttempts: 0,
    lazy: false,
    onNonLazyError: () => {}, // refusals are what some tests expect
    connectionParams,
    on: { closed: (e) => { closed = e; } },
  });
  client.subscribe({ query: query ?? `subscription { mlInferenceStream(modelId: "${model}") { inputId metadata } }` },
                   c.sink);
  return { client, c, closed: () => closed };
}

// Publishes probe events for model until cond() holds (subscriptions go
// live asynchronously; PUBLISH counts gateways, not their clients).
async function probeUntil(model, cond, what) {
  let n = 0;
  await waitFor(async () => {
    if (cond()) return true;
    await pub.publish(prediction(model, 1000 + n++, { input_id: `probe-${n}` }));
    await sleep(50);
    return cond();
  }, 10000, what);
}

async function subscriptions() {
  const m = await (await fetch(`${gw.http}/metrics`)).text();
  return Number(/^ml_stream_gateway_subscriptions (\d+)$/m.exec(m)[1]);
}

const TENANT_QUERY = (m) => `subscription { mlInferenceStream(modelId: "${m}") { inputId metadata } }`;

async function statusOf(model, token) {
  const r = await gqlPost(gw, { query: `{ mlStreamingStatus(modelId: "${model}") { windowSize averageLatencyMs lastHeartbeatAt } mlStreamingModels }` },
                          bearer(token));
  assert.equal(r.status, 200, r.text);
  return r.body.data;
}

describe('HTTP', () => {
  test('/graphql: 401 without a bearer token, with WWW-Authenticate: Bearer', async () => {
    for (const headers of [{}, { authorization: 'Basic dXNlcjpwdw==' }, { authorization: 'Bearer' },
                           { authorization: TOKEN1 }]) {
      const r = await gqlPost(gw, { query: '{ __typename }' }, headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
      assert.match(r.body.errors[0].message, /Authentication required/);
    }
    const g = await fetch(`${gw.http}/graphql?query=%7B__typename%7D`);
    assert.equal(g.status, 401);
  });

  test('/graphql: 403 for a wrong token, expired JWT, wrong alg, forged signature', async () => {
    const bad = {
      unknown: 'not-a-token-we-know',
      expired: jwt({ exp: now() - 5 }),
      notYet: jwt({ nbf: now() + 600 }),
      noExp: signJwt({ sub: 'x' }, SECRET),
      algNone: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${
        Buffer.from(JSON.stringify({ exp: now() + 60 })).toString('base64url')}.`,
      algNoneSigned: jwt({}, { header: { alg: 'none' } }),
      hs512: jwt({}, { header: { alg: 'HS512', typ: 'JWT' } }),
      wrongKey: jwt({}, { secret: 'another-secret-of-enough-length-000000' }),
      staticPlusX: `${TOKEN1}x`,
      tenantsNotArray: jwt({ tenants: 'blue-team' }),
    };
    for (const [name, t] of Object.entries(bad)) {
      const r = await gqlPost(gw, { query: '{ __typename }' }, bearer(t));
      assert.equal(r.status, 403, name);
      assert.equal(r.headers.get('www-authenticate'), null, name);
      assert.match(r.body.errors[0].message, name === 'expired' ? /expired/ : /not accepted/, name);
    }
  });

  test('/graphql: 200 for every kind of good credential', async () => {
    for (const t of [TOKEN1, TOKEN2, LEGACY_TOKEN, jwt(), jwt({ tenants: ['blue-team'] })]) {
      const r = await gqlPost(gw, { query: '{ __typename }' }, { authorization: `bearer  ${t} ` });
      assert.equal(r.status, 200, t.slice(0, 20));
      assert.deepEqual(r.body, { data: { __typename: 'Query' } });
    }
    const g = await fetch(`${gw.http}/graphql?query=%7B__typename%7D`, { headers: bearer(TOKEN2) });
    assert.equal(g.status, 200);
  });

  test('/healthz, /readyz, / and (by default) /metrics need no token; preflights neither', async () => {
    for (const p of ['/healthz', '/readyz', '/', '/metrics'])
      assert.equal((await fetch(`${gw.http}${p}`)).status, 200, p);
    const o = await fetch(`${gw.http}/graphql`, { method: 'OPTIONS' });
    assert.equal(o.status, 204);
    const m = await (await fetch(`${gw.http}/metrics`)).text();
    assert.match(m, /ml_stream_gateway_auth_failures_total\{reason="missing"\} [1-9]/);
    assert.match(m, /ml_stream_gateway_auth_failures_total\{reason="invalid"\} [1-9]/);
    assert.match(m, /ml_stream_gateway_auth_failures_total\{reason="expired"\} [1-9]/);
    assert.match(m, /ml_stream_gateway_auth_failures_total\{reason="not_yet_valid"\} [1-9]/);
  });
});

describe('graphql-transport-ws', () => {
  test('refused credentials close with 4403 Forbidden', async () => {
    const cases = {
      none: initWith(undefined),
      empty: initWith({}),
      wrong: initWith({ Authorization: 'Bearer wrong' }),
      expired: initWith({ Authorization: `Bearer ${jwt({ exp: now() - 1 })}` }),
      algNone: initWith({ headers: { Authorization: `Bearer ${jwt({}, { header: { alg: 'none' } })}` } }),
      wrongKey: initWith({ authorization: `Bearer ${jwt({}, { secret: 'x'.repeat(40) })}` }),
      notString: initWith({ Authorization: 42 }),
    };
    for (const [name, m] of Object.entries(cases)) {
      const r = await session(gw.ws, T, [m]);
      assert.equal(r.code, 4403, name);
      // the reason says why, never what was presented
      assert.match(r.reason, /^Forbidden: (missing credential|invalid credential|token expired)$/, name);
      assert.deepEqual(r.got, [], name);
    }
    // the graphql-ws client sees the same
    const s = wsSubscribe('m', { connectionParams: { Authorization: 'Bearer wrong' } });
    await waitFor(() => s.c.errors.length, 5000, 'the refusal');
    assert.equal(s.c.errors[0].code, 4403);
    await s.client.dispose();
  });

  test('good credentials in connectionParams, headers.Authorization or the upgrade request', async () => {
    const model = modelId('ws-ok');
    const subs = [
      wsSubscribe(model, { connectionParams: { Authorization: `Bearer ${TOKEN1}` } }),
      wsSubscribe(model, { connectionParams: { headers: { Authorization: `Bearer ${jwt()}` } } }),
      wsSubscribe(model, { connectionParams: { token: LEGACY_TOKEN } }),
      wsSubscribe(model, { headers: bearer(jwt()) }),
    ];
    await probeUntil(model, () => subs.every((s) => s.c.events.length >= 1), 'events on every client');
    for (const s of subs) await s.client.dispose();
    // a refused upgrade credential is not rescued by a good payload
    const r = await session(gw.ws, T, [initWith({ Authorization: `Bearer ${TOKEN1}` })],
                            { options: { headers: bearer('wrong') } });
    assert.equal(r.code, 4403);
  });

  test('a JWT that expires closes its live connection with 4403', async () => {
    const t0 = performance.now();
    const r = await session(gw.ws, T, [initWith({ Authorization: `Bearer ${jwt({ exp: now() + 2 })}` })],
                            { timeoutMs: 10000 });
    assert.equal(r.code, 4403);
    assert.equal(r.reason, 'Forbidden: token expired');
    assert.deepEqual(r.got, ['{"type":"connection_ack"}']);
    assert.ok(Math.round(performance.now() - t0) >= 900, `closed after ${Math.round(performance.now() - t0)} ms`);
  });
});

describe('legacy graphql-ws (subscriptions-transport-ws)', () => {
  test('refused credentials: connection_error, then close 4403', async () => {
    const r = await session(gw.ws, 'graphql-ws', [initWith({ authorization: 'Bearer nope' })]);
    assert.equal(r.code, 4403);
    assert.deepEqual(JSON.parse(r.got[0]), { type: 'connection_error',
                                            payload: { message: 'Prohibited connection!' } });
    // the real client reports it to connectionCallback
    const err = await new Promise((resolve) => {
      const client = new SubscriptionClient(gw.ws, {
        reconnect: false,
        connectionParams: { authorization: `Bearer ${jwt({ exp: now() - 100 })}` },
        connectionCallback: (e) => { resolve(e); client.close(); },
      }, WebSocket);
    });
    assert.equal(err.message, 'Prohibited connection!');
    // start before connection_init is refused, the connection stays
    const s = await session(gw.ws, 'graphql-ws', [JSON.stringify({ id: '1', type: 'start', payload: {
      query: 'subscription { mlInferenceStream(modelId: "m") { inputId } }' } })],
    { onMessage: (ws) => ws.close(1000) });
    assert.equal(s.code, 1000);
    assert.match(s.got[0], /Unauthorized/);
  });

  test('good credentials receive events; expiry sends connection_error and closes', async () => {
    const model = modelId('legacy-ok');
    const client = new SubscriptionClient(gw.ws, {
      reconnect: false, connectionParams: { Authorization: `Bearer ${jwt()}` },
    }, WebSocket);
    const c = collector();
    client.request({ query: TENANT_QUERY(model) }).subscribe(c.sink);
    await probeUntil(model, () => c.events.length >= 1, 'an event');
    client.close();
    const r = await session(gw.ws, 'graphql-ws',
                            [initWith({ Authorization: `Bearer ${jwt({ exp: now() + 2 })}` })],
                            { timeoutMs: 10000 });
    assert.equal(r.code, 4403);
    assert.equal(JSON.parse(r.got.at(-1)).type, 'connection_error');
    assert.match(r.got.at(-1), /Token expired/);
  });
});

describe('tenant isolation', () => {
  test('each subscriber receives exactly its tenants\' events, one render per group', async () => {
    const model = modelId('tenants');
    const q = TENANT_QUERY(model);
    // what earlier tests opened is gone (they dispose their clients)
    await waitFor(async () => (await subscriptions()) === 0, 10000, 'no subscriptions');
    const subs0 = 0;
    const clients = {
      blue: wsSubscribe(model, { query: q, connectionParams: { Authorization: `Bearer ${jwt({ tenants: ['blue-team'] })}` } }),
      red: wsSubscribe(model, { query: q, connectionParams: { Authorization: `Bearer ${jwt({ tenants: ['red-team'] })}` } }),
      both: wsSubscribe(model, { query: q, headers: bearer(jwt({ tenants: ['red-team', 'blue-team', 'red-team'] })) }),
      none: wsSubscribe(model, { query: q, connectionParams: { Authorization: `Bearer ${jwt({ tenants: [] })}` } }),
      noClaim: wsSubscribe(model, { query: q, connectionParams: { Authorization: `Bearer ${jwt()}` } }),
      static: wsSubscribe(model, { query: q, connectionParams: { Authorization: `Bearer ${TOKEN2}` } }),
    };
    const legacy = new SubscriptionClient(gw.ws, {
      reconnect: false, connectionParams: { authorization: `Bearer ${jwt({ tenants: ['red-team'] })}` },
    }, WebSocket);
    const legacyRed = collector();
    legacy.request({ query: q }).subscribe(legacyRed.sink);
    await waitFor(async () => (await subscriptions()) === subs0 + 7, 10000, 'seven subscribers');

    // interleaved: blue, red, no tenant, null metadata, other tenants
    const kinds = [
      { tenant: 'blue-team' }, { tenant: 'red-team' }, { source: 'x' }, null,
      { tenant: 'green' }, { tenant: 'Blue-Team' }, { tenant: 7 }, { tenant: 'red-team' },
    ];
    const sent = [];
    for (let i = 0; i < 48; i++) {
      const metadata = kinds[i % kinds.length];
      const p = prediction(model, i, { input_id: `t-${i}`, metadata, latency_ms: metadata?.tenant === 'blue-team' ? 10 : 500 });
      sent.push({ id: `t-${i}`, tenant: typeof metadata?.tenant === 'string' ? metadata.tenant : null });
      await pub.publish(p);
    }
    const ids = (pred) => sent.filter(pred).map((s) => s.id);
    const want = {
      blue: ids((s) => s.tenant === 'blue-team'),
      red: ids((s) => s.tenant === 'red-team'),
      both: ids((s) => s.tenant === 'blue-team' || s.tenant === 'red-team'),
      none: [],
      noClaim: ids(() => true),
      static: ids(() => true),
    };
    await waitFor(() => clients.static.c.events.length === 48 && clients.noClaim.c.events.length === 48,
                  10000, 'every event on the unrestricted clients');
    await waitFor(() => legacyRed.events.length === want.red.length, 10000, 'legacy red');
    await sleep(300); // anything misrouted would have arrived by now
    for (const [name, s] of Object.entries(clients)) {
      const got = s.c.events.map((e) => e.data.mlInferenceStream.inputId).filter((id) => id.startsWith('t-'));
      assert.deepEqual(got, want[name], name);
      assert.deepEqual(s.c.errors, [], name);
      for (const e of s.c.events) {
        const t = e.data.mlInferenceStream.metadata?.tenant;
        if (name === 'blue') assert.equal(t, 'blue-team');
        if (name === 'red') assert.equal(t, 'red-team');
      }
    }
    assert.deepEqual(legacyRed.events.map((e) => e.data.mlInferenceStream.inputId), want.red);
    // one group for the seven subscribers (the same document), rendered once
    // per event however many tenant slices see it
    const m = await (await fetch(`${gw.http}/metrics`)).text();
    assert.match(m, /^ml_stream_gateway_subscription_groups 1$/m);
    assert.match(m, /^ml_stream_gateway_subscriptions 7$/m);

    // mlStreamingStatus keeps to the caller's tenants
    const blue = await statusOf(model, jwt({ tenants: ['blue-team'] }));
    assert.equal(blue.mlStreamingStatus.windowSize, want.blue.length);
    assert.equal(blue.mlStreamingStatus.averageLatencyMs, 10);
    const all = await statusOf(model, TOKEN1);
    assert.equal(all.mlStreamingStatus.windowSize, 48);
    assert.ok(all.mlStreamingModels.includes(model));
    const green = await statusOf(model, jwt({ tenants: ['nobody-here'] }));
    assert.deepEqual(green.mlStreamingStatus, { windowSize: 0, averageLatencyMs: null, lastHeartbeatAt: null });
    assert.ok(!green.mlStreamingModels.includes(model));
    // ... and a heartbeat naming the model is engine-level: everyone sees it
    await pub.publish({ type: 'heartbeat', engine_id: 'e2e', at: new Date().toISOString(), models: [model] });
    await waitFor(async () => (await statusOf(model, jwt({ tenants: ['nobody-here'] }))).mlStreamingStatus.lastHeartbeatAt,
                  5000, 'the heartbeat');

    for (const s of Object.values(clients)) await s.client.dispose();
    legacy.close();
  });

  test('GATEWAY_JWT_REQUIRE_TENANTS refuses JWTs without the claim', async () => {
    const req = await startGateway(redis.url, {
      GATEWAY_JWT_SECRET: SECRET,
      GATEWAY_JWT_REQUIRE_TENANTS: '1',
      GATEWAY_JWT_TENANT_CLAIM: 'orgs',
    });
    try {
      let r = await gqlPost(req, { query: '{ __typename }' }, bearer(jwt()));
      assert.equal(r.status, 403);
      r = await gqlPost(req, { query: '{ __typename }' }, bearer(jwt({ tenants: ['a'] })));
      assert.equal(r.status, 403);
      r = await gqlPost(req, { query: '{ __typename }' }, bearer(jwt({ orgs: ['a'] })));
      assert.equal(r.status, 200);
      const s = await session(req.ws, T, [initWith({ Authorization: `Bearer ${jwt()}` })]);
      assert.equal(s.code, 4403);
      const m = await (await fetch(`${req.http}/metrics`)).text();
      assert.match(m, /ml_stream_gateway_auth_failures_total\{reason="no_tenant_claim"\} [1-9]/);
    } finally {
      await req.stop();
    }
  });

  test('GATEWAY_JWT_AUDIENCE and GATEWAY_JWT_ISSUER refuse tokens meant for others', async () => {
    const a = await startGateway(redis.url, {
      GATEWAY_JWT_SECRET: SECRET,
      GATEWAY_JWT_AUDIENCE: 'mlstream',
      GATEWAY_JWT_ISSUER: 'https://idp.example.com',
      ML_LOG_LEVEL: 'debug',
    });
    try {
      const good = { aud: 'mlstream', iss: 'https://idp.example.com' };
      const refused = [{}, { aud: 'mlstream' }, { iss: good.iss },
                       { ...good, aud: 'mlstream-dev' }, { ...good, aud: ['grafana', 'other'] },
                       { ...good, aud: 7 }, { ...good, iss: 'https://idp.example.com/' },
                       { ...good, iss: 'https://evil.example.com' }];
      for (const claims of refused) {
        const r = await gqlPost(a, { query: '{ __typename }' }, bearer(jwt(claims)));
        assert.equal(r.status, 403, JSON.stringify(claims));
      }
      for (const claims of [good, { ...good, aud: ['grafana', 'mlstream'] }]) {
        const r = await gqlPost(a, { query: '{ __typename }' }, bearer(jwt(claims)));
        assert.equal(r.status, 200, JSON.stringify(claims));
      }
      // on WebSockets too: a token for another audience is closed with 4403
      let s = await session(a.ws, T, [initWith({ Authorization: `Bearer ${jwt({ ...good, aud: 'other' })}` })]);
      assert.equal(s.code, 4403);
      s = await session(a.ws, T, [initWith({ Authorization: `Bearer ${jwt(good)}` })],
                        { onMessage: (ws) => ws.close(1000) });
      assert.deepEqual([s.code, s.got], [1000, ['{"type":"connection_ack"}']]);
      const m = await (await fetch(`${a.http}/metrics`)).text();
      assert.match(m, new RegExp(`ml_stream_gateway_auth_failures_total\\{reason="invalid"\\} ${refused.length + 1}\\n`));
      // the operator is told which claim did not match
      assert.match(a.log(), /aud claim does not name the configured audience/);
      assert.match(a.log(), /iss claim is not the configured issuer/);
    } finally {
      await a.stop();
    }
  });
});

test('GATEWAY_METRICS_AUTH=1 puts /metrics behind a token that sees every tenant', async () => {
  const m = await startGateway(redis.url, {
    GATEWAY_AUTH_TOKENS: TOKEN1,
    GATEWAY_JWT_SECRET: SECRET,
    GATEWAY_METRICS_AUTH: '1',
  });
  try {
    let r = await fetch(`${m.http}/metrics`);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Bearer');
    r = await fetch(`${m.http}/metrics`, { headers: bearer('wrong') });
    assert.equal(r.status, 403);
    r = await fetch(`${m.http}/metrics`, { headers: bearer(jwt({ tenants: ['blue-team'] })) });
    assert.equal(r.status, 403);
    r = await fetch(`${m.http}/metrics`, { headers: bearer(jwt()) });
    assert.equal(r.status, 200);
    r = await fetch(`${m.http}/metrics`, { headers: bearer(TOKEN1) });
    assert.equal(r.status, 200);
    assert.match(await r.text(), /ml_stream_gateway_auth_failures_total\{reason="invalid"\} 2/);
    for (const p of ['/healthz', '/readyz'])
      assert.equal((await fetch(`${m.http}${p}`)).status, 200, p);
  } finally {
    await m.stop();
  }
});

describe('origin allowlist', () => {
  let o;
  before(async () => {
    o = await startGateway(redis.url, {
      GATEWAY_ALLOWED_ORIGINS: ' https://App.Example.com , http://localhost:3000/ ',
    });
  });
  after(async () => { await o?.stop(); });

  const upgrade = (origin) => session(o.ws, T, [JSON.stringify({ type: 'connection_init' })], {
    options: origin === undefined ? {} : { origin },
    onMessage: (ws) => ws.close(1000),
  });

  test('browser upgrades from listed origins (any case) and programs without Origin get in', async () => {
    for (const origin of [undefined, 'https://app.example.com', 'HTTPS://APP.EXAMPLE.COM',
                          'http://localhost:3000']) {
      const r = await upgrade(origin);
      assert.equal(r.code, 1000, String(origin));
      assert.deepEqual(r.got, ['{"type":"connection_ack"}']);
    }
  });

  test('other origins are refused at the upgrade', async () => {
    for (const origin of ['https://evil.example.com', 'null', 'http://app.example.com',
                          'https://app.example.com.evil.com', 'https://app.example.com:8443',
                          'https://app.example.com/', 'https://app.example.co',
                          'https://app.example.com, https://evil.example.com',
                          `https://${'a'.repeat(250)}.example.com`]) {
      const r = await upgrade(origin);
      assert.equal(r.code, -1, origin);
      assert.match(r.reason, /403/, origin);
    }
    const m = await (await fetch(`${o.http}/metrics`)).text();
    assert.match(m, /ml_stream_gateway_connections_rejected_total\{reason="origin"\} 9/);
  });

  test('HTTP: CORS headers for listed origins, 403 for others', async () => {
    let r = await gqlPost(o, { query: '{ __typename }' }, { origin: 'https://app.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example.com');
    assert.equal(r.headers.get('vary'), 'Origin');
    for (const origin of ['https://evil.example.com', 'null', `https://${'a'.repeat(300)}.example.com`]) {
      r = await gqlPost(o, { query: '{ __typename }' }, { origin });
      assert.equal(r.status, 403, origin.slice(0, 30));
      assert.equal(r.headers.get('access-control-allow-origin'), null);
    }
    const p = await fetch(`${o.http}/graphql`, { method: 'OPTIONS', headers: {
      origin: 'http://localhost:3000', 'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type' } });
    assert.equal(p.status, 204);
    assert.match(p.headers.get('access-control-allow-headers'), /authorization/);
  });

  test('a value that is not an origin stops the gateway at start-up', () => {
    const r = spawnSync(MLSTREAM, ['gateway'], {
      env: { ...process.env, REDIS_URL: redis.url, GATEWAY_PORT: '0',
             GATEWAY_ALLOWED_ORIGINS: 'https://ok.example.com,app.example.com/path' },
      encoding: 'utf8', timeout: 10000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /GATEWAY_ALLOWED_ORIGINS .*"app\.example\.com\/path" is not an origin/);
  });
});

describe('secrets', () => {
  // A Redis with a password, so that REDIS_URL carries a secret too.
  const PASSWORD = 'r3d!s p@ss/w:rd%';
  let pwRedis, pwUrl;
  before(async () => {
    const port = await freePort();
    pwRedis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
                                     '--appendonly', 'no', '--requirepass', PASSWORD],
                    { stdio: 'ignore' });
    pwUrl = `redis://:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}/0`;
    await waitFor(async () => {
      const p = await openPublisher(pwUrl).catch(() => null);
      p?.close();
      return p;
    }, 10000, 'the password-protected redis');
  });
  after(() => { pwRedis?.kill('SIGTERM'); });

  test('nothing secret reaches the log, even at debug level', async () => {
    const tokFile = path.join(dir, 'tokens2');
    writeFileSync(tokFile, `${TOKEN2}\n`, { mode: 0o644 }); // world-readable: warned about
    const presented = {
      good: jwt({ tenants: ['blue-team'] }),
      expired: jwt({ exp: now() - 100 }), // past the default 30 s leeway
      forged: jwt({}, { secret: 'forger-secret-0000000000000000000000' }),
      unknown: 'presented-but-unknown-token-9f8e7d',
    };
    const s = await startGateway(pwUrl, {
      ML_LOG_LEVEL: 'debug',
      GATEWAY_AUTH_TOKENS: TOKEN1,
      GATEWAY_AUTH_TOKENS_FILE: tokFile,
      GATEWAY_AUTH_TOKEN: LEGACY_TOKEN,
      GATEWAY_JWT_SECRET: SECRET,
    });
    try {
      await waitFor(async () => (await fetch(`${s.http}/readyz`)).status === 200, 10000, 'ready (AUTH worked)');
      for (const t of [...Object.values(presented), TOKEN1, TOKEN2, LEGACY_TOKEN]) {
        await gqlPost(s, { query: '{ __typename }' }, bearer(t));
        await session(s.ws, T, [initWith({ Authorization: `Bearer ${t}` })],
                      { onMessage: (ws) => ws.close(1000) });
        await session(s.ws, 'graphql-ws', [initWith({ authorization: t })],
                      { onMessage: (ws, m) => { if (JSON.parse(m).type !== 'ka') ws.close(1000); } });
        await session(s.ws, T, [initWith({})], { options: { headers: bearer(t) }, onMessage: (ws) => ws.close(1000) });
      }
    } finally {
      await s.stop();
    }
    const log = s.log();
    assert.match(log, /credential refused \(expired\)/); // debug lines were on
    assert.match(log, /tokens2 is readable by every user/);
    const secrets = [SECRET, TOKEN1, TOKEN2, LEGACY_TOKEN, PASSWORD, encodeURIComponent(PASSWORD),
                     ...Object.values(presented)];
    for (const x of secrets) {
      assert.ok(!log.includes(x), `the log contains a secret (${x.slice(0, 6)}...)`);
      // nor a recognisable piece of one
      assert.ok(!log.includes(x.slice(0, 16)), `the log contains part of a secret (${x.slice(0, 6)}...)`);
    }
  });

  test('start-up errors name the setting, never its value', () => {
    const run = (extra) => spawnSync(MLSTREAM, ['gateway'], {
      env: { ...process.env, REDIS_URL: pwUrl, GATEWAY_PORT: '0', ...extra },
      encoding: 'utf8', timeout: 10000 });
    let r = run({ GATEWAY_JWT_SECRET: 'too-short-secret-value' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /GATEWAY_JWT_SECRET: an HS256 secret must have at least 32 bytes/);
    assert.ok(!r.stderr.includes('too-short-secret-value'));
    r = run({ GATEWAY_AUTH_TOKENS: `${TOKEN1},bad token-value-here` });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /GATEWAY_AUTH_TOKENS item 2: a token may only hold printable ASCII/);
    assert.ok(!r.stderr.includes('token-value-here') && !r.stderr.includes(TOKEN1));
    r = run({ GATEWAY_JWT_SECRET: SECRET, GATEWAY_JWT_SECRET_FILE: path.join(dir, 'jwt') });
    assert.notEqual(r.status, 0);
    assert.ok(!r.stderr.includes(SECRET));
    r = run({ GATEWAY_AUTH_TOKENS_FILE: path.join(dir, 'missing') });
    assert.match(r.stderr, /GATEWAY_AUTH_TOKENS_FILE: cannot open .*missing/);
    // security settings that would silently do nothing are errors
    r = run({ GATEWAY_METRICS_AUTH: '1' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /GATEWAY_METRICS_AUTH=1 needs credentials/);
    r = run({ GATEWAY_AUTH_TOKENS: TOKEN1, GATEWAY_JWT_REQUIRE_TENANTS: '1' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /GATEWAY_JWT_REQUIRE_TENANTS.*need GATEWAY_JWT_SECRET/);
  });
});
