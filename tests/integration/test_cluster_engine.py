"""mlstream engine on a real Redis Cluster (REDIS_CLUSTER=true): each
model's predictions go with SPUBLISH to the shard that owns the model's
channel, heartbeats to the control channel, and a master killed mid-stream
costs the engine a pause, not its life.

Needs the cluster of `scripts/services start cluster` (REDIS_CLUSTER_URL,
REDIS_CLUSTER_PORTS); skipped without it."""
import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from mlshelpers import (CHANNEL, MLSTREAM, SERVICES, RoundFeeder, cluster_command, cluster_ok,
                        cluster_owner, cluster_ports, cluster_slot_owners, http_get, metric_sum,
                        produce, shard_subscribe,
                        wait_for)

NMODELS = 50
CLUSTER_ENV = {"REDIS_CLUSTER": "true", "ML_STREAM_REDIS_CHANNEL_MODE": "per-model",
               "REDIS_RETRY_MAX_MS": "500"}
SENTINEL = '{"type":"sentinel"}'


@pytest.fixture
def cluster(services):
    if not services.get("REDIS_CLUSTER_URL"):
        pytest.skip("REDIS_CLUSTER_URL unset: scripts/services start cluster")
    wait_for(lambda: cluster_ok(services), 60, "every cluster node to say cluster_state:ok")
    return services


def cluster_engine(engines, env, topic, engine_id):
    extra = dict(CLUSTER_ENV, REDIS_URL=env["REDIS_CLUSTER_URL"], ML_ENGINE_ID=engine_id)
    return engines(topic=topic, extra_env=extra)


def model_ids():
    run = uuid.uuid4().hex[:6]
    return ["cl%s-%02d" % (run, i) for i in range(NMODELS)]


def channel(model):
    return "%s:{%s}" % (CHANNEL, model)


def round_lines(models, r):
    """One input per model, input id <model>/r<r>."""
    return [json.dumps({"input_id": "%s/r%d" % (m, r), "model_id": m,
                        "features": [r, i, 1]}) for i, m in enumerate(models)]


def rounds_of(sub, model):
    """The rounds of the predictions sub received, in arrival order; every
    one must be model's."""
    out = []
    for p in sub.payloads():
        assert p["model_id"] == model, (sub.channel, p)
        m, r = p["input_id"].rsplit("/r", 1)
        assert m == model, (sub.channel, p)
        out.append(int(r))
    return out


def drain(subs):
    """Waits until each subscriber has read everything published on its
    channel so far: a sentinel published now arrives after it."""
    for s in subs:
        cluster_command(s.port, "SPUBLISH", s.channel, SENTINEL)
    wait_for(lambda: all(SENTINEL.encode() in s.raw() for s in subs), 30,
             "the sentinel on every channel")


def counters(eng):
    m = eng.metrics()
    return {"moved": metric_sum(m, "ml_stream_redis_cluster_redirects_total", kind="moved"),
            "ask": metric_sum(m, "ml_stream_redis_cluster_redirects_total", kind="ask"),
            "refreshes": metric_sum(m, "ml_stream_redis_cluster_map_refreshes_total"),
            "errors": metric_sum(m, "ml_stream_redis_cluster_connection_errors_total"),
            "connected": metric_sum(m, "ml_stream_redis_connected")}


def test_predictions_reach_their_models_shard(cluster, topic, engines):
    """50 models over the 3 shards: each listener, subscribed at the master
    that owns its model's slot, receives exactly that model's predictions;
    heartbeats arrive on the control channel."""
    models = model_ids()
    subs = {m: shard_subscribe(cluster, channel(m)) for m in models}
    assert len({s.port for s in subs.values()}) == 3, "the models span every shard"
    control = shard_subscribe(cluster, CHANNEL + ":control")
    engine_id = "cl-" + uuid.uuid4().hex[:8]
    eng = cluster_engine(engines, cluster, topic, engine_id)
    eng.wait_ready()
    log = eng.output()
    seeds = cluster["REDIS_CLUSTER_URL"][len("redis://"):].split("/")[0]
    assert "redis cluster: %d seed node(s) from REDIS_URL: %s" % (
        len(seeds.split(",")), seeds.replace(",", ", ")) in log
    rounds = 8
    produce(cluster, topic, [l for r in range(rounds) for l in round_lines(models, r)])
    wait_for(lambda: all(len(s.raw()) >= rounds for s in subs.values()), 120,
             "%d predictions on each model's channel" % rounds)
    beat = wait_for(lambda: [b for b in control.payloads("heartbeat")
                             if b["engine_id"] == engine_id and set(models) <= set(b["models"])],
                    30, "a heartbeat naming all 50 models on the control channel")
    assert beat
    c = counters(eng)
    assert c["connected"] == 1 and c["refreshes"] >= 1, c
    if shutil.which("promtool"):
        status, text = http_get(eng.url("/metrics"))
        assert status == 200, status
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    assert eng.stop() == 0
    drain(list(subs.values()))
    for m, s in subs.items():
        assert sorted(rounds_of(s, m)) == list(range(rounds)), m
        assert s.raw()[-1] == SENTINEL.encode(), "nothing but predictions of %s" % m
        assert len(s.raw()) == rounds + 1, m
    for s in (*subs.values(), control):
        s.close()


def test_master_killed_mid_stream(cluster, topic, engines):
    """A master dies while predictions stream: the engine stays up, waits
    out the failover, and publishes to the promoted replica; listeners that
    subscribe again at the new owner receive the later predictions, the
    other shards' listeners never miss one."""
    models = model_ids()
    subs = {m: shard_subscribe(cluster, channel(m)) for m in models}
    by_master = {}
    for m, s in subs.items():
        by_master.setdefault(s.port, []).append(m)
    victim = max(by_master, key=lambda p: len(by_master[p]))
    affected = set(by_master[victim])
    others = [m for m in models if m not in affected]
    eng = cluster_engine(engines, cluster, topic, "cl-" + uuid.uuid4().hex[:8])
    eng.wait_ready()
    stream = RoundFeeder(lambda n: produce(cluster, topic, round_lines(models, n)))
    killed = False
    try:
        wait_for(lambda: all(len(s.raw()) >= 2 for s in subs.values()), 120,
                 "the stream flowing to every model")
        before = counters(eng)
        subprocess.run([SERVICES, "cluster-kill", str(victim)], env=cluster, check=True,
                       capture_output=True, timeout=60)
        killed = True
        wait_for(lambda: victim not in cluster_slot_owners(cluster).values()
                 and cluster_ok(cluster), 60, "a replica promoted in place of %d" % victim)
        mark = stream.next
        # the other shards' listeners see rounds produced after the failover
        wait_for(lambda: eng.proc.poll() is not None or
                 all(max(rounds_of(subs[m], m), default=-1) >= mark for m in others),
                 120, "predictions after the failover on the other shards")
        assert eng.proc.poll() is None, eng.output()
        wait_for(lambda: all(subs[m].closed for m in affected), 30,
                 "the dead master's listeners disconnected")
        again = {m: shard_subscribe(cluster, channel(m)) for m in affected}
        assert victim not in {s.port for s in again.values()}
        resubscribed = stream.next
        # the promoted replica gets the predictions of rounds produced now
        wait_for(lambda: eng.proc.poll() is not None or
                 all(max(rounds_of(again[m], m), default=-1) >= resubscribed + 2
                     for m in affected),
                 120, "predictions at the promoted replica")
        assert eng.proc.poll() is None, eng.output()
        total = stream.finish()
        after = counters(eng)
        assert after["refreshes"] > before["refreshes"], (before, after)
        assert after["errors"] > before["errors"], (before, after)
        assert after["connected"] == 1, after
        assert eng.stop() == 0
        drain([s for m, s in subs.items() if m not in affected] + list(again.values()))
        for m in others:
            # a batch the dead master failed is sent again in whole: other
            # shards may see a prediction twice, never miss one
            assert set(rounds_of(subs[m], m)) == set(range(total)), m
        for m in affected:
            lost_sub = rounds_of(subs[m], m)
            assert set(lost_sub) <= set(range(total)), m
            got = rounds_of(again[m], m)
            assert set(got) <= set(range(total)), m
            # rounds begun after the new subscription; a batch sent again
            # after a failed flush may repeat one
            later = {r for r in got if r > resubscribed}
            assert later == set(range(resubscribed + 1, total)), m
    finally:
        stream.halt.set()
        if killed:
            subprocess.run([SERVICES, "cluster-start-node", str(victim)], env=cluster,
                           check=True, capture_output=True, timeout=120)
            wait_for(lambda: cluster_ok(cluster), 60, "the cluster whole again")
        for s in subs.values():
            s.close()


def test_stopped_master_keeps_the_engine_not_ready_until_it_answers(cluster, topic, engines):
    """The master that owns the control channel is stopped (SIGSTOP: its
    kernel still accepts connections) and, with a long node timeout, not
    failed over, so the other masters' slot maps still name it. An idle
    engine finds it by its heartbeat and stays not ready while it is
    stopped (a reconnect counts only once every master answers a PING),
    holding the input that comes meanwhile; once the master answers again
    the engine is ready by itself and every prediction arrives."""
    models = model_ids()
    subs = {m: shard_subscribe(cluster, channel(m)) for m in models}
    victim = cluster_owner(cluster, CHANNEL + ":control")
    ports = cluster_ports(cluster)
    timeouts = {p: cluster_command(p, "CONFIG", "GET", "cluster-node-timeout")[1]
                for p in ports}
    pid = int(dict(l.split(":", 1) for l in cluster_command(
        victim, "INFO", "server").decode().splitlines() if ":" in l)["process_id"])
    eng = cluster_engine(engines, cluster, topic, "cl-" + uuid.uuid4().hex[:8])
    eng.wait_ready()

    def readyz():
        return http_get(eng.url("/readyz"))[0]

    stopped = False
    try:
        for p in ports:
            cluster_command(p, "CONFIG", "SET", "cluster-node-timeout", "120000")
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        # a heartbeat a second, each waiting at most 5 s for its reply
        wait_for(lambda: readyz() == 503, 30, "/readyz 503 with master %d stopped" % victim)
        produce(cluster, topic, round_lines(models, 0))
        # reconnects (backoff up to REDIS_RETRY_MAX_MS 500) get a map from
        # the other masters, which names the stopped one: two reply
        # deadlines and more, and the engine must not call itself ready
        held_until = time.monotonic() + 12
        while time.monotonic() < held_until:
            assert readyz() == 503, "ready with master %d stopped" % victim
            assert eng.proc.poll() is None, eng.output()
            time.sleep(0.1)
        os.kill(pid, signal.SIGCONT)
        stopped = False
        wait_for(lambda: readyz() == 200, 30, "/readyz 200 with master %d back" % victim)
        wait_for(lambda: all(len(s.raw()) >= 1 for s in subs.values()), 60,
                 "the input produced while the master was stopped, on every channel")
        assert "still down: redis %s:%d:" % ("127.0.0.1", victim) in eng.output()
        assert eng.stop() == 0
        drain(list(subs.values()))
        for m, s in subs.items():
            assert set(rounds_of(s, m)) == {0}, m
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        for p, t in timeouts.items():
            cluster_command(p, "CONFIG", "SET", "cluster-node-timeout", t)
        for s in subs.values():
            s.close()


def test_cluster_needs_per_model_channels():
    """REDIS_CLUSTER=true with the single channel is refused at start."""
    env = dict(os.environ, REDIS_URL="redis://127.0.0.1:1,127.0.0.1:2",
               REDIS_CLUSTER="true", ML_STREAM_REDIS_CHANNEL_MODE="single",
               KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", ML_PROMETHEUS_PORT="0")
    r = subprocess.run([MLSTREAM, "engine"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "REDIS_CLUSTER=true" in r.stderr, r.stderr
    assert "ML_STREAM_REDIS_CHANNEL_MODE=per-model" in r.stderr, r.stderr


def test_seed_list_logged_without_password(cluster, topic, engines):
    """The start log names the seeds as host:port; a password in REDIS_URL
    appears nowhere, not even in the AUTH error the cluster answers."""
    url = cluster["REDIS_CLUSTER_URL"].replace("redis://", "redis://:s3cr3t-pw@")
    eng = engines(topic=topic, extra_env=dict(CLUSTER_ENV, REDIS_URL=url))
    wait_for(lambda: eng.proc.poll() is not None or "still down" in eng.output(), 60,
             "the engine retrying the cluster that refuses AUTH")
    assert eng.proc.poll() is None, eng.output()
    log = eng.output()
    assert "redis cluster: 3 seed node(s) from REDIS_URL: 127.0.0.1:" in log, log
    assert "AUTH" in log, log
    assert "s3cr3t-pw" not in log, log
