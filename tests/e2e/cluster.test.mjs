// Redis Cluster (REDIS_CLUSTER=true): the gateway SSUBSCRIBEs to the
// channels of the models its clients watch on the masters that own their
// slots, and follows a failover without dropping its clients. Checked
// against the cluster's own view (PUBSUB SHARDCHANNELS on each master) with
// real graphql-ws clients and a real 3-master cluster:
//   MLSTREAM_SERVICES_DIR=... scripts/services start cluster
//   source <(MLSTREAM_SERVICES_DIR=... scripts/services env)
// Skipped when REDIS_CLUSTER_URL is unset. The test kills one master and
// starts it again afterwards (it comes back as a replica).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

import { CHANNEL, SERVICES, collector, metric, modelId, prediction, startGateway,
         waitFor, waitMetric } from './helpers.mjs';

const CLUSTER_URL = process.env.REDIS_CLUSTER_URL;
const PORTS = (process.env.REDIS_CLUSTER_PORTS || '').split(',').filter(Boolean).map(Number);
const STREAM = `subscription($m: String!) { mlInferenceStream(modelId: $m) { inferenceId modelId inputId gap { reason } } }`;
const modelChannel = (m) => `${CHANNEL}:{${m}}`;
const CONTROL = `${CHANNEL}:control`;

function cli(port, ...args) {
  return execFileSync('redis-cli', ['-p', String(port), ...args],
                      { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
}
// The ports of the running masters (a killed node does not answer).
function masters() {
  return PORTS.filter((p) => {
    try { return cli(p, 'ROLE').split('\n')[0] === 'master'; } catch { return false; }
  });
}
// The master port that owns channel's slot, from CLUSTER NODES.
function owner(channel) {
  const [any] = masters();
  const slot = Number(cli(any, 'CLUSTER', 'KEYSLOT', channel));
  for (const line of cli(any, 'CLUSTER', 'NODES').split('\n')) {
    const f = line.split(' ');
    if (!f[2].split(',').includes('master') || f[2].includes('fail')) continue;
    for (const r of f.slice(8)) {
      const [lo, hi = lo] = r.split('-').map(Number);
      if (slot >= lo && slot <= hi) return Number(f[1].split(':')[1].split('@')[0]);
    }
  }
  throw new Error(`no master owns the slot of ${channel}`);
}
// The shard channels each running master holds, of those in wanted.
function shardChannels(names) {
  const held = {};
  for (const p of masters()) {
    held[p] = cli(p, 'PUBSUB', 'SHARDCHANNELS').split('\n').filter((c) => names.includes(c));
  }
  return held;
}
// Where channel is subscribed: the master ports that hold it.
const holders = (ch, names) => Object.entries(shardChannels(names))
  .filter(([, chs]) => chs.includes(ch)).map(([p]) => Number(p));
// SPUBLISH through any running master, following MOVED (-c); the receivers.
function spublish(model, n) {
  const [p] = masters();
  return Number(execFileSync('redis-cli', ['-c', '-p', String(p), 'SPUBLISH', modelChannel(model),
                                           JSON.stringify(prediction(model, n))]).toString().trim());
}
const inputs = (c, m) => c.events.filter((e) => e.data.mlInferenceStream.modelId === m)
  .map((e) => e.data.mlInferenceStream.inputId);

describe('Redis Cluster', { skip: !CLUSTER_URL && 'REDIS_CLUSTER_URL is unset' }, () => {
  let gw;
  let killed = null;

  before(async () => {
    gw = await startGateway(CLUSTER_URL, {
      REDIS_CLUSTER: 'true',
      ML_STREAM_REDIS_CHANNEL_MODE: 'per-model',
      REDIS_RETRY_MAX_MS: '500',
    });
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  15000, 'the gateway to be ready');
  });

  after(async () => {
    await gw?.stop();
    if (killed) execFileSync(SERVICES, ['cluster-start-node', String(killed)]);
  });

  test('shard subscriptions follow watched models and survive a failover', async () => {
    // a, b on two different masters; c and d anywhere; d is never watched
    const pick = (pred) => {
      for (;;) {
        const m = modelId('cluster');
        if (pred(owner(modelChannel(m)))) return m;
      }
    };
    const a = pick(() => true);
    const b = pick((p) => p !== owner(modelChannel(a)));
    const c = pick(() => true);
    const d = pick(() => true);
    const names = [a, b, c, d].map(modelChannel);
    const gone = (ch) => holders(ch, names).length === 0;

    // the control channel on its owner, named so that operators find it
    await waitFor(() => cli(owner(CONTROL), 'CLIENT', 'LIST').includes('name=mlstream-gateway'),
                  5000, 'a connection named mlstream-gateway on the control channel\'s owner');
    assert.ok(cli(owner(CONTROL), 'PUBSUB', 'SHARDCHANNELS').split('\n').includes(CONTROL));
    assert.deepEqual(shardChannels(names), Object.fromEntries(masters().map((p) => [p, []])),
                     'nothing subscribed before anyone watches');

    const client = (m) => {
      const cl = createClient({ url: gw.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
      const col = collector();
      const dispose = cl.subscribe({ query: STREAM, variables: { m } }, col.sink);
      return { cl, col, dispose };
    };
    const ca = client(a);
    const cb = client(b);
    const cc = client(c);
    const cab = client(a); // a second watcher of a
    const sinks = [ca, cb, cc, cab];
    for (const m of [a, b, c]) {
      await waitFor(() => holders(modelChannel(m), names).length === 1, 10000,
                    `the gateway to SSUBSCRIBE to ${m}`);
      assert.deepEqual(holders(modelChannel(m), names), [owner(modelChannel(m))],
                       `${m} on the master that owns its slot`);
    }
    assert.ok(gone(modelChannel(d)), 'the unwatched model is subscribed nowhere');
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === 4, 'control + 3 channels');

    const preds = await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}');
    for (let n = 0; n < 5; n++) {
      for (const m of [a, b, c]) assert.equal(spublish(m, n), 1, `one receiver of ${m}`);
      assert.equal(spublish(d, n), 0, 'no receiver of the unwatched model');
    }
    const five = Array.from({ length: 5 }, (_, n) => `event-${n}`);
    await waitFor(() => sinks.every((s) => s.col.events.length === 5), 5000, '5 events each');
    assert.deepEqual(inputs(ca.col, a), five);
    assert.deepEqual(inputs(cab.col, a), five);
    assert.deepEqual(inputs(cb.col, b), five);
    assert.deepEqual(inputs(cc.col, c), five);
    assert.equal(await metric(gw, 'ml_stream_gateway_payloads_total{type="prediction"}'), preds + 15,
                 'the gateway received the watched models only');

    // the last watcher of c leaves: its channel is gone from its owner
    cc.dispose();
    await waitFor(() => gone(modelChannel(c)), 5000, 'the gateway to SUNSUBSCRIBE from c');
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === 3, 'control + 2 channels');
    // one of a's two watchers leaves: a stays
    cab.dispose();
    await waitFor(async () => (await metric(gw, 'ml_stream_gateway_subscriptions')) === 2, 5000,
                  'two subscriptions left');
    assert.equal(holders(modelChannel(a), names).length, 1);

    // failover: the master of a's channel dies, its replica takes over
    const resubs = await metric(gw, 'ml_stream_gateway_redis_resubscribes_total');
    const oldOwner = owner(modelChannel(a));
    const bOwner = owner(modelChannel(b));
    killed = oldOwner;
    execFileSync(SERVICES, ['cluster-kill', String(oldOwner)]);
    await waitFor(() => {
      const h = holders(modelChannel(a), names);
      return h.length === 1 && h[0] !== oldOwner;
    }, 30000, 'a\'s channel subscribed again on the promoted replica');
    assert.deepEqual(holders(modelChannel(a), names), [owner(modelChannel(a))]);
    assert.deepEqual(holders(modelChannel(b), names), [bOwner], 'b stayed where it was');
    await waitMetric(gw, 'ml_stream_gateway_redis_resubscribes_total', (v) => v > resubs,
                     'the re-placement counted');
    await waitFor(async () => (await fetch(`${gw.http}/readyz`)).status === 200,
                  15000, 'the gateway ready again');
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === 3, 'control + 2 channels');

    // the clients never left: they receive what comes after the failover
    assert.equal(spublish(a, 100), 1);
    assert.equal(spublish(b, 100), 1);
    await waitFor(() => ca.col.events.length === 6 && cb.col.events.length === 6, 10000,
                  'the events after the failover');
    assert.deepEqual(inputs(ca.col, a), [...five, 'event-100']);
    assert.deepEqual(inputs(cb.col, b), [...five, 'event-100']);
    // a's channel was lost and made again: its first event says so; b's
    // was never lost
    const gapOf = (col, i) => col.events[i].data.mlInferenceStream.gap;
    assert.equal(gapOf(ca.col, 5)?.reason, 'UPSTREAM_LOST');
    assert.equal(gapOf(cb.col, 5), null);
    assert.ok(ca.col.events.slice(0, 5).every((e) => e.data.mlInferenceStream.gap === null));
    assert.deepEqual([...ca.col.errors, ...cb.col.errors], []);
    assert.equal(ca.col.completed || cb.col.completed, false);
    // re-placements are gathered for 200 ms into one line
    await waitFor(() => /re-placed \d+ channel\(s\) from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+/
      .test(gw.log()), 5000, 'the re-placement logged');

    // a manual failover (CLUSTER FAILOVER on b's replica): the old master
    // stays up, turns replica and unsubscribes us itself (sunsubscribe)
    const bReplica = Number(cli(bOwner, 'ROLE').split('\n')[3]);
    const resubs2 = await metric(gw, 'ml_stream_gateway_redis_resubscribes_total');
    assert.equal(cli(bReplica, 'CLUSTER', 'FAILOVER'), 'OK');
    await waitFor(() => {
      const h = holders(modelChannel(b), names);
      return h.length === 1 && h[0] === bReplica;
    }, 30000, 'b\'s channel subscribed on its new master');
    await waitMetric(gw, 'ml_stream_gateway_redis_resubscribes_total', (v) => v > resubs2,
                     'the re-placement counted');
    assert.equal(spublish(b, 101), 1);
    await waitFor(() => cb.col.events.length === 7, 10000, 'the event after the manual failover');
    assert.deepEqual(inputs(cb.col, b), [...five, 'event-100', 'event-101']);
    assert.equal(gapOf(cb.col, 6)?.reason, 'UPSTREAM_LOST', 'the slot left its node: a gap');

    // the last watchers leave: nothing of ours stays subscribed
    ca.dispose();
    cb.dispose();
    await waitFor(() => names.every(gone), 5000, 'every model channel unsubscribed');
    await waitMetric(gw, 'ml_stream_gateway_redis_channels', (v) => v === 1, 'the control channel');
    for (const s of sinks) await s.cl.dispose();

    execFileSync(SERVICES, ['cluster-start-node', String(killed)]);
    killed = null;
  });

  // Adversarial: whoever can SPUBLISH on a watched channel sends a message
  // far over GATEWAY_MAX_PAYLOAD_BYTES. The node connection is dropped at
  // the cap (unparsed input is never held past it), its channels are
  // placed again, the client stays and hears of the gap.
  test('an oversized message on a shard drops that connection at the cap, not the client', async () => {
    const small = await startGateway(CLUSTER_URL, {
      REDIS_CLUSTER: 'true',
      ML_STREAM_REDIS_CHANNEL_MODE: 'per-model',
      REDIS_RETRY_MAX_MS: '500',
      GATEWAY_MAX_PAYLOAD_BYTES: '65536',
    });
    const cl = createClient({ url: small.ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    try {
      await waitFor(async () => (await fetch(`${small.http}/readyz`)).status === 200,
                    15000, 'the gateway to be ready');
      const m = modelId('huge');
      const col = collector();
      cl.subscribe({ query: STREAM, variables: { m } }, col.sink);
      await waitMetric(small, 'ml_stream_gateway_redis_channels', (v) => v === 2, 'control + m');
      assert.equal(spublish(m, 1), 1);
      await waitFor(() => col.events.length === 1, 5000, 'the first event');

      const resubs = await metric(small, 'ml_stream_gateway_redis_resubscribes_total');
      const huge = JSON.stringify(prediction(m, 2, { metadata: { pad: 'x'.repeat(400000) } }));
      const [p] = masters();
      execFileSync('redis-cli', ['-c', '-p', String(p), '-x', 'SPUBLISH', modelChannel(m)],
                   { input: huge });
      await waitFor(() => /larger than \d+ bytes \(GATEWAY_MAX_PAYLOAD_BYTES\)/.test(small.log()),
                    10000, 'the oversized message refused');
      await waitMetric(small, 'ml_stream_gateway_redis_resubscribes_total', (v) => v > resubs,
                       'the channel placed again', 15000);
      await waitMetric(small, 'ml_stream_gateway_redis_channels', (v) => v === 2, 'control + m again');
      assert.equal(spublish(m, 3), 1);
      await waitFor(() => col.events.length === 2, 5000, 'the event after the drop');
      assert.deepEqual(inputs(col, m), ['event-1', 'event-3']);
      assert.equal(col.events[1].data.mlInferenceStream.gap?.reason, 'UPSTREAM_LOST');
      assert.deepEqual(col.errors, []);
      console.log(`BUDGET: a ${huge.length}-byte shard message against GATEWAY_MAX_PAYLOAD_BYTES 65536: ` +
                  'connection dropped, channel placed again, client kept');
    } finally {
      await cl.dispose();
      await small.stop();
    }
  });
});
