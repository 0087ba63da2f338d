"""Issue 15's acceptance, end to end with real parts: a real 3-master Redis
Cluster (scripts/services start cluster), two engines in one consumer group
and two gateways, all with REDIS_CLUSTER=true and per-model channels, and
real GraphQL clients (tests/e2e/subscriber.mjs) spread over 50 models:
gateway A's client watches models 0-19, gateway B's 20-39, nobody 40-49.

1. Every subscriber receives every prediction of its models exactly once,
   and nothing of another model.
2. Each gateway receives only its clients' models, by Redis' own stats
   (PUBSUB SHARDCHANNELS / SHARDNUMSUB and CLIENT LIST ssub= on every
   master) and by its own payload counter.
3. The master owning the most watched channels is killed mid-stream: no
   subscriber is lost, the models of the other masters miss nothing, the
   killed master's models miss nothing published after the gateways
   subscribed again, and of what the master published before it died they
   miss at most its last TAIL rounds: a master killed while writing a
   message to its subscribers may reach some and not others, but it never
   skips one message and sends the next. What they miss is printed, and
   everything produced after the re-subscription arrives exactly once.
4. mlStreamingModels / mlStreamingStatus on both gateways know all 50
   models, from both engines' heartbeats.

Needs REDIS_CLUSTER_URL / REDIS_CLUSTER_PORTS; skipped without them. The
killed node is started again at the end (it rejoins as a replica)."""
import collections
import json
import os
import subprocess
import threading
import uuid

import pytest

from mlshelpers import (CHANNEL, FAST_GROUP, ROOT, SERVICES, Gateway, RoundFeeder,
                        ShardSubscriber, client_list, cluster_command, cluster_ok, cluster_owner,
                        cluster_slot_owners, metric_sum, produce, shard_subscribe, wait_for)

NMODELS = 50
WATCH = {"A": range(0, 20), "B": range(20, 40)}   # 40-49: watched by nobody
PHASE1 = 40   # rounds (one input per model each) before the kill
PHASE3 = 10   # rounds after the gateways subscribed again
# Of what the killed master published before it died, a gateway may miss
# what the master had read but not yet written to the gateway's connection:
# one event-loop pass, at most one or two rounds at this pace (one kcat per
# round). More, or a hole before a round it did receive, is a fault.
TAIL = 3
CLUSTER_ENV = {"REDIS_CLUSTER": "true", "ML_STREAM_REDIS_CHANNEL_MODE": "per-model",
               "REDIS_RETRY_MAX_MS": "500"}
CONTROL = CHANNEL + ":control"
TIMEOUT = 120 if os.environ.get("MLS_SANITIZED") == "1" else 60


@pytest.fixture
def cluster(services):
    if not services.get("REDIS_CLUSTER_URL"):
        pytest.skip("REDIS_CLUSTER_URL unset: scripts/services start cluster")
    wait_for(lambda: cluster_ok(services), 60, "every cluster node to say cluster_state:ok")
    return services


def channel(model):
    return "%s:{%s}" % (CHANNEL, model)


def round_lines(models, rounds):
    """One input per model per round, input id <model>/r<round>, keyed by
    the model (kcat -K TAB): all of a model's inputs go to one partition,
    hence one engine, in order."""
    return ["%s\t%s" % (m, json.dumps({"input_id": "%s/r%d" % (m, r), "model_id": m,
                                       "features": [r, i, 1]}))
            for r in rounds for i, m in enumerate(models)]


def produce_rounds(env, topic, models, rounds):
    produce(env, topic, round_lines(models, rounds), key="\t")


def round_of(model, input_id):
    m, r = input_id.rsplit("/r", 1)
    assert m == model, (model, input_id)
    return int(r)


class Subscriber:
    """One tests/e2e/subscriber.mjs process: one client, one subscription
    per model, on one protocol."""

    def __init__(self, ws_url, models, protocol):
        self.models, self.protocol = set(models), protocol
        self.proc = subprocess.Popen(
            ["node", os.path.join(ROOT, "tests", "e2e", "subscriber.mjs"), ws_url,
             ",".join(models), protocol], stdout=subprocess.PIPE, text=True)
        self.events, self.lock = [], threading.Lock()
        first = json.loads(self.proc.stdout.readline() or "{}")
        assert first == {"ready": True}, (protocol, first)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.events.append(json.loads(line))

    def predictions(self):
        with self.lock:
            return [e for e in self.events if "inputId" in e]

    def others(self):
        """Anything but predictions: errors, a premature end."""
        with self.lock:
            return [e for e in self.events if "inputId" not in e]

    def rounds(self):
        """{model: Counter of rounds received}."""
        out = collections.defaultdict(collections.Counter)
        for e in self.predictions():
            out[e["modelId"]][round_of(e["modelId"], e["inputId"])] += 1
        return out

    def check(self):
        """Fails at once on an error event or an exit."""
        assert self.others() == [] and self.proc.poll() is None, \
            (self.protocol, self.proc.poll(), self.others()[:3])

    def has(self, rounds):
        self.check()
        got = self.rounds()
        return all(set(rounds) <= set(got[m]) for m in self.models)

    def close(self):
        """SIGTERM; the exit status (0 after {"end": true})."""
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(timeout=30)
        self.reader.join(10)
        return rc


# A client per gateway (graphql-transport-ws) that also asks for gap:
# subscriber.mjs prints modelId, inputId and inferenceId only. GAPWATCH is
# [[ws url, [model...]], ...]; one line per event, {"gw": i, ...event}.
GAPWATCH_JS = r"""
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const specs = JSON.parse(process.env.GAPWATCH);
let connected = 0;
const clients = specs.map(([url, models], gw) => {
  const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false,
    on: { connected: () => { if (++connected === specs.length) out({ ready: true }); } } });
  for (const m of models) {
    client.subscribe({ query: `subscription { mlInferenceStream(modelId: ${JSON.stringify(m)}) ` +
                              '{ modelId inputId gap { reason missed since } } }' }, {
      next: (r) => out(r.data ? { gw, ...r.data.mlInferenceStream } : { gw, error: r.errors }),
      error: (e) => { out({ gw, error: String(e?.message ?? e) }); process.exit(1); },
      complete: () => {},
    });
  }
  return client;
});
process.on('SIGTERM', async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  out({ end: true });
  process.exit(0);
});
"""


class GapWatcher(Subscriber):
    """The GAPWATCH_JS clients, one process for every gateway."""

    def __init__(self, specs):
        self.models = {m for _, ms in specs for m in ms}
        self.protocol = "graphql-transport-ws (gap)"
        self.proc = subprocess.Popen(
            ["node", "--input-type=module", "-e", GAPWATCH_JS],
            cwd=os.path.join(ROOT, "tests", "e2e"), stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, GAPWATCH=json.dumps(specs)))
        self.events, self.lock = [], threading.Lock()
        first = json.loads(self.proc.stdout.readline() or "{}")
        assert first == {"ready": True}, first
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()


def spans(rounds):
    """[1, 2, 3, 7, 8] -> "1-3 7-8"."""
    out = []
    for r in rounds:
        if out and r == out[-1][1] + 1:
            out[-1][1] = r
        else:
            out.append([r, r])
    return " ".join("%d-%d" % (a, b) if a != b else "%d" % a for a, b in out)


def shard_rounds(sub, model):
    return {round_of(model, json.loads(p)["input_id"]) for p in sub.raw()}


def shardnumsub(port, channels):
    r = cluster_command(port, "PUBSUB", "SHARDNUMSUB", *channels)
    return {r[i].decode(): int(r[i + 1]) for i in range(0, len(r), 2)}


def shardchannels(port):
    return {c.decode() for c in cluster_command(port, "PUBSUB", "SHARDCHANNELS")}


def masters(env):
    return sorted(set(cluster_slot_owners(env).values()))


def check_shard_subscriptions(env, models, gateways, watched_by):
    """Redis' own view, on every master: each watched model's channel lives
    only at its slot's owner, with exactly one subscriber (its gateway);
    the unwatched models' channels have none; each gateway holds one
    connection per master it needs (CLIENT LIST, name mlstream-gateway),
    whose ssub= is the number of its channels there. Returns {channel:
    owner}."""
    chans = [channel(m) for m in models]
    owner = {c: cluster_owner(env, c) for c in chans + [CONTROL]}
    ours = set(chans)
    for p in masters(env):
        held = shardchannels(p)
        want = {channel(m) for m in watched_by if owner[channel(m)] == p}
        assert held & ours == want, (p, sorted(held & ours ^ want))
        counts = shardnumsub(p, chans + [CONTROL])
        for m in models:
            c = channel(m)
            expect = 1 if m in watched_by and owner[c] == p else 0
            assert counts[c] == expect, (p, m, counts[c], "gateway %s" % watched_by.get(m))
        assert counts[CONTROL] == (len(gateways) if owner[CONTROL] == p else 0), (p, counts)
        conns = [c for c in client_list(p) if c.get("name") == "mlstream-gateway"
                 and int(c["ssub"]) > 0]
        for name, gw in gateways.items():
            local = gw.local_ports()
            mine = [c for c in conns if c["port"] in local]
            expect = sum(1 for m, g in watched_by.items()
                         if g == name and owner[channel(m)] == p) + (owner[CONTROL] == p)
            if expect:
                assert len(mine) == 1, (name, p, mine)
                assert int(mine[0]["ssub"]) == expect, (name, p, mine[0])
                assert int(mine[0]["sub"]) == 0 and int(mine[0]["psub"]) == 0, mine[0]
            else:
                assert mine == [], (name, p, mine)
        # every gateway connection holding shard channels is one of the two
        assert len(conns) == sum(1 for gw in gateways.values()
                                 for c in conns if c["port"] in gw.local_ports()), conns
    return owner


STATUS = "%s: mlStreamingStatus(modelId: %s) { modelId connected lastHeartbeatAt windowSize }"


def test_acceptance_two_engines_two_gateways_50_models(cluster, topic, engines):
    run = uuid.uuid4().hex[:6]
    models = ["acc%s-%02d" % (run, i) for i in range(NMODELS)]
    watched_by = {models[i]: g for g, r in WATCH.items() for i in r}
    gw_env = dict(CLUSTER_ENV, REDIS_URL=cluster["REDIS_CLUSTER_URL"])
    # After the failover the engines drain their lag in a burst: thousands
    # of events for one client at once. A client slower than that loses
    # events by design (GATEWAY_SEND_QUEUE, messages_dropped_total); that
    # is not what this test is about, so the queues hold the whole burst
    # (and the test checks that nothing was dropped).
    gw_env_queues = dict(gw_env, GATEWAY_SEND_QUEUE="200000",
                         GATEWAY_SEND_QUEUE_BYTES=str(256 << 20))
    gateways, subs, shard_subs = {}, {}, []
    stream, victim, killed = None, None, False
    try:
        # --- two gateways, a client on each watching its 20 models
        for name in WATCH:
            gateways[name] = Gateway(cluster, gw_env_queues)
        for gw in gateways.values():
            wait_for(gw.ready, TIMEOUT, "gateway /readyz")
        for (name, gw), protocol in zip(gateways.items(), ("graphql-transport-ws", "graphql-ws")):
            subs[name] = Subscriber(gw.ws, [models[i] for i in WATCH[name]], protocol)
        for name, gw in gateways.items():
            wait_for(lambda: subs[name].check() or
                     gw.metric("ml_stream_gateway_subscriptions") == 20 and
                     gw.metric("ml_stream_gateway_redis_channels") == 21, TIMEOUT,
                     "gateway %s: 20 subscriptions, control + 20 channels" % name)

        # --- two engines, one group, two partitions each
        group = "g-acc-" + topic
        engine_ids = ["acc-%s-%d" % (run, i) for i in range(2)]
        eng = [engines(topic=topic, group=group,
                       extra_env=dict(FAST_GROUP, **gw_env, ML_ENGINE_ID=eid,
                                      ML_LOG_LEVEL="warn"))
               for eid in engine_ids]
        for e in eng:
            e.wait_ready(TIMEOUT)
        wait_for(lambda: all(metric_sum(e.metrics(), "ml_stream_kafka_assigned_partitions") == 2
                             for e in eng), TIMEOUT, "both engines to hold two partitions")

        # --- phase 1: every subscriber gets its models' predictions once
        phase1 = range(PHASE1)
        produce_rounds(cluster, topic, models, phase1)
        for name, s in subs.items():
            wait_for(lambda: s.has(phase1), TIMEOUT, "phase 1 at subscriber %s" % name)
        for name, s in subs.items():
            got = s.rounds()
            assert set(got) == s.models, (name, set(got) ^ s.models)
            for m, c in got.items():
                assert c == collections.Counter(phase1), (name, m, c - collections.Counter(phase1))
            assert s.others() == [], (name, s.others())

        # --- each gateway's inbound traffic is its clients' models only
        owner = check_shard_subscriptions(cluster, models, gateways, watched_by)
        for name, gw in gateways.items():
            assert gw.metric("ml_stream_gateway_payloads_total", type="prediction") == \
                20 * PHASE1, name

        # --- phase 2: the master with the most watched channels dies mid-stream
        per_master = collections.Counter(owner[channel(m)] for m in watched_by)
        victim = per_master.most_common(1)[0][0]
        affected = sorted(m for m in watched_by if owner[channel(m)] == victim)
        print("masters: watched channels per master %s; killing %d (%d watched channels%s)" % (
            dict(per_master), victim, len(affected),
            ", the control channel too" if owner[CONTROL] == victim else ""))
        # what the victim publishes until it dies, as a plain subscriber sees it
        before_kill = {m: ShardSubscriber(victim, channel(m)) for m in affected}
        shard_subs.extend(before_kill.values())
        resubs = {n: gw.metric("ml_stream_gateway_redis_resubscribes_total")
                  for n, gw in gateways.items()}
        hit = {watched_by[m] for m in affected}
        if owner[CONTROL] == victim:
            hit = set(gateways)
        # a second client per gateway, on the affected models and two others
        # each, that also asks for gap (a second watcher of a model adds no
        # Redis subscription)
        gap_models = {n: [m for m in affected if watched_by[m] == n] +
                      [m for m in models if watched_by.get(m) == n and m not in affected][:2]
                      for n in gateways}
        gapwatch = GapWatcher([[gateways[n].ws, ms] for n, ms in gap_models.items()])
        subs["gap"] = gapwatch
        for name, gw in gateways.items():
            wait_for(lambda: gapwatch.check() or gw.metric("ml_stream_gateway_subscriptions") ==
                     20 + len(gap_models[name]), TIMEOUT,
                     "the gap watcher's subscriptions on gateway %s" % name)
            assert gw.metric("ml_stream_gateway_redis_channels") == 21, name
        stream = RoundFeeder(
            lambda n: produce_rounds(cluster, topic, models, [n]), PHASE1)
        wait_for(lambda: all(s.has([PHASE1, PHASE1 + 1]) for s in subs.values()), TIMEOUT,
                 "phase 2 flowing to every subscriber")
        subprocess.run([SERVICES, "cluster-kill", str(victim)], env=cluster, check=True,
                       capture_output=True, timeout=60)
        killed = True
        killed_at = stream.next
        wait_for(lambda: victim not in cluster_slot_owners(cluster).values()
                 and cluster_ok(cluster), TIMEOUT, "a replica promoted in place of %d" % victim)
        new_owner = {m: cluster_owner(cluster, channel(m)) for m in affected}
        assert victim not in new_owner.values()

        def resubscribed():
            for n in hit:
                gw = gateways[n]
                if gw.metric("ml_stream_gateway_redis_resubscribes_total") <= resubs[n] or \
                        not gw.ready():
                    return False
            for m in affected:
                if shardnumsub(new_owner[m], [channel(m)])[channel(m)] != 1:
                    return False
            return True
        wait_for(resubscribed, TIMEOUT, "the gateways subscribed again at the promoted replica")
        resubscribed_at = stream.next
        # what the new owner publishes from now on, as a plain subscriber sees it
        after_resub = {m: ShardSubscriber(new_owner[m], channel(m)) for m in affected}
        shard_subs.extend(after_resub.values())
        wait_for(lambda: all(len(s.raw()) >= 2 for s in after_resub.values()), TIMEOUT,
                 "phase 2 at the promoted replica")
        end2 = stream.finish()

        # --- phase 3: every model again, after the re-subscription
        phase3 = range(end2, end2 + PHASE3)
        produce_rounds(cluster, topic, models, phase3)
        for name, s in subs.items():
            wait_for(lambda: s.has(phase3), TIMEOUT,
                     "phase 3 at subscriber %s" % name)
        wait_for(lambda: all(set(phase3) <= shard_rounds(s, m) for m, s in after_resub.items()),
                 TIMEOUT, "phase 3 at the plain subscribers of the new owners")
        wait_for(lambda: all(s.closed for s in before_kill.values()), TIMEOUT,
                 "the plain subscribers of the killed master to see it gone")
        print("phase 2: rounds %d-%d; kill at round ~%d, gateways subscribed again by round ~%d"
              % (PHASE1, end2 - 1, killed_at, resubscribed_at))
        for name, gw in gateways.items():
            print("gateway %s (%s): %d prediction payloads, %d duplicates dropped, "
                  "%d events dropped (slow client), %d channel(s) subscribed again; %s" % (
                name, gw.log.name, gw.metric("ml_stream_gateway_payloads_total", type="prediction"),
                gw.metric("ml_stream_gateway_duplicates_dropped_total"),
                gw.metric("ml_stream_gateway_messages_dropped_total"),
                gw.metric("ml_stream_gateway_redis_resubscribes_total")
                - resubs[name], "; ".join(l.split("redis cluster: ", 1)[1]
                                          for l in gw.output().splitlines()
                                          if "redis cluster: " in l)))

        for name, gw in gateways.items():
            assert gw.metric("ml_stream_gateway_messages_dropped_total") == 0, name
        end = end2 + PHASE3
        phase2 = set(range(PHASE1, end2))
        missed_by = {}
        for name, s in subs.items():
            first = PHASE1 if s is gapwatch else 0
            everything = set(range(first, end))
            assert s.proc.poll() is None, "subscriber %s exited %s" % (name, s.proc.returncode)
            assert s.others() == [], (name, s.others())
            got = s.rounds()
            assert set(got) == s.models, (name, set(got) ^ s.models)
            for m, c in got.items():
                twice = [r for r, k in c.items() if k > 1]
                assert not twice, "%s: %s rounds %s delivered twice" % (name, m, twice[:5])
                assert set(c) <= everything, (m, set(c) - everything)
                missed = everything - set(c)
                arrivals = [round_of(m, e["inputId"]) for e in s.predictions()
                            if e["modelId"] == m]
                if m not in affected:
                    if missed:
                        print("%s: rounds in arrival order: %s" % (m, spans(arrivals)))
                    assert not missed, "%s missed %s" % (m, sorted(missed))
                    continue
                pre, post = shard_rounds(before_kill[m], m), shard_rounds(after_resub[m], m)
                if s is not gapwatch:
                    print("%s (gateway %s): missed %d of %d phase-2 predictions%s; a plain "
                          "subscriber saw %d published before the kill, %d after the "
                          "re-subscription" % (
                              m, name, len(missed), len(phase2),
                              " (rounds %d-%d)" % (min(missed), max(missed)) if missed else "",
                              len(pre & phase2), len(post & phase2)))
                assert pre & phase2, "the kill came mid-stream for %s" % m
                if missed & (pre | post):
                    print("%s: rounds in arrival order: %s" % (m, spans(arrivals)))
                assert missed <= phase2, (m, sorted(missed - phase2))
                lost_pre, got_pre = missed & pre, set(c) & pre
                if lost_pre:
                    assert min(lost_pre) > max(got_pre, default=-1) and len(lost_pre) <= TAIL, \
                        "%s: published before the kill, missed: %s (more than the " \
                        "master's last %d rounds, or a hole)" % (m, sorted(lost_pre), TAIL)
                assert not missed & post, \
                    "%s: published after the re-subscription, missed: %s" % (
                        m, sorted(missed & post))
                # two clients of one gateway miss the same: what its Redis
                # subscription missed
                assert missed_by.setdefault(m, missed) == missed, (m, missed_by[m], missed)
        # The first prediction of a model after the gateway subscribed again
        # to its channel carries gap { reason: UPSTREAM_LOST } (only the gap
        # watcher asks for it), nothing is missing after it, and models whose
        # channel stayed where it was carry none.
        for m in gapwatch.models:
            seq = [e for e in gapwatch.predictions() if e["modelId"] == m]
            gaps = [(i, e) for i, e in enumerate(seq) if e.get("gap")]
            if m not in affected:
                assert gaps == [], (m, gaps)
                continue
            assert len(gaps) == 1, (m, gaps)
            i, e = gaps[0]
            assert e["gap"]["reason"] == "UPSTREAM_LOST" and e["gap"]["since"], (m, e)
            r = round_of(m, e["inputId"])
            assert all(x < r for x in missed_by[m]), (m, sorted(missed_by[m]), e)
            assert all(round_of(m, x["inputId"]) < r for x in seq[:i]), (m, e)
        for name, gw in gateways.items():
            assert gw.proc.poll() is None, gw.output()
            assert "re-placed" in gw.output() or name not in hit, gw.output()

        # --- both gateways know all 50 models, from both engines' heartbeats
        control = shard_subscribe(cluster, CONTROL)
        shard_subs.append(control)
        def beats():
            out = collections.defaultdict(set)
            for b in control.payloads("heartbeat"):
                out[b["engine_id"]] |= set(b["models"]) & set(models)
            return out
        hb = wait_for(lambda: (lambda b: set(engine_ids) <= set(b) and
                               set().union(*b.values()) == set(models) and b)(beats()),
                      TIMEOUT, "heartbeats of both engines naming all 50 models")
        for name, gw in gateways.items():
            unwatched = set(models) - {m for m, g in watched_by.items() if g == name}
            # the models this gateway learns of from heartbeats only come
            # from both engines (each model's inputs go to one partition)
            for eid in engine_ids:
                assert hb[eid] & unwatched, (name, eid, sorted(hb[eid]))
            wait_for(lambda: set(models) <= set(gw.graphql("{ mlStreamingModels }")
                                                ["mlStreamingModels"]),
                     TIMEOUT, "gateway %s to list all 50 models" % name)
            q = "{ %s }" % " ".join(STATUS % ("m%d" % i, json.dumps(m))
                                    for i, m in enumerate(models))
            status = gw.graphql(q)
            for i, m in enumerate(models):
                st = status["m%d" % i]
                assert st["modelId"] == m and st["connected"] is True, st
                assert st["lastHeartbeatAt"], st
                # the latency window holds the predictions it received
                assert (st["windowSize"] > 0) == (watched_by.get(m) == name), (name, st)

        # --- clean stops
        for name, s in subs.items():
            assert s.close() == 0, name
            assert s.others() == [{"end": True}], (name, s.others())
        for name, gw in gateways.items():
            assert gw.stop() == 0, gw.output()
        for e in eng:
            assert e.stop() == 0, e.output()
    finally:
        if stream:
            stream.halt.set()
            stream.join(120)
        for s in subs.values():
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        for s in shard_subs:
            s.close()
        for gw in gateways.values():
            gw.kill()
        if killed:
            subprocess.run([SERVICES, "cluster-start-node", str(victim)], env=cluster,
                           check=True, capture_output=True, timeout=120)
            wait_for(lambda: cluster_ok(cluster), 60, "the cluster whole again")
