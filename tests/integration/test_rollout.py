"""Model rollout on the live stream (docs/models.md, "Versions, canaries and
shadows"), on the real broker and Redis with real torch and TensorFlow
models: a canary takes a sticky share of the inputs, a shadow scores the
same inputs for comparison only, and a promotion by editing model.conf
switches versions between batches, each input scored once by one live
version."""
import collections
import json
import os
import random
import re
import shutil
import socket
import threading

import pytest

from mlshelpers import CHANNEL, Subscriber, metric_sum, produce, redis_addr, wait_for
from test_models import (FIXTURES, Producer, close, collect, model_env, needs_tf, needs_torch,
                         random_rows, reference)

SHADOW_CHANNEL = "ml:stream:shadow"
T = os.path.join(FIXTURES, "torch")
TF = os.path.join(FIXTURES, "tensorflow")


def write_versions(repo, model_id, conf, versions):
    """repo/model_id/model.conf = conf; versions: {name: (conf, artifact
    source, artifact name)}."""
    d = os.path.join(repo, model_id)
    for name, (vconf, src, dst) in versions.items():
        v = os.path.join(d, name)
        os.makedirs(v, exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(v, dst))
        else:
            shutil.copy(src, os.path.join(v, dst))
        with open(os.path.join(v, "model.conf"), "w") as f:
            f.write(vconf)
    write_conf(repo, model_id, conf)


def write_conf(repo, model_id, conf):
    """Replaces model.conf the way a deploy tool does: aside, then rename."""
    path = os.path.join(repo, model_id, "model.conf")
    with open(path + ".tmp", "w") as f:
        f.write(conf)
    os.rename(path + ".tmp", path)


def torch_versions():
    return {"v1": ("framework = torch\n", os.path.join(T, "mlp.pt"), "model.pt"),
            "v2": ("framework = torch\n", os.path.join(T, "mlp_v2.pt"), "model.pt")}


def fnv_fraction(model_id, key):
    """The canary key's fraction, as docs/models.md derives it."""
    h = 14695981039346656037
    for b in model_id.encode() + b"\0" + key.encode():
        h = ((h ^ b) * 1099511628211) & (2 ** 64 - 1)
    for shift, mult in ((33, 0xff51afd7ed558ccd), (33, 0xc4ceb9fe1a85ec53)):
        h ^= h >> shift
        h = (h * mult) & (2 ** 64 - 1)
    h ^= h >> 33
    return (h >> 11) / float(2 ** 53)


def argmax(row):
    return max(range(len(row)), key=lambda i: (row[i], -i))


@needs_torch
def test_canary_takes_a_sticky_share(services, topic, engines, tmp_path):
    """canary_share = 0.2 over 20,000 inputs of 5,000 keys: the canary
    scores 20 % +- 2 %, each key always by the same version (the one the
    documented hash picks), each prediction is its version's output, and
    the realised share is exported."""
    repo = str(tmp_path / "models")
    write_versions(repo, "threat", "serving = v1\ncanary = v2\ncanary_share = 0.2\n",
                   torch_versions())
    rng = random.Random(5)
    n, keys = 20000, 5000
    rows = [random_rows(rng, 1, 3) for _ in range(n)]  # one row per input
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_REPOSITORY": repo,
                                                    "ML_DEFAULT_MODEL_ID": "threat"}))
    eng.wait_ready()
    produce(services, topic, [json.dumps({"input_id": "k%d" % (i % keys), "features": rows[i],
                                          "metadata": {"i": i}})
                              for i in range(n)])
    preds = collect(sub, n, timeout=120)
    assert len(preds) == n
    by_key = collections.defaultdict(set)
    for p in preds:
        by_key[p["input_id"]].add(p["model_version"])
    assert all(len(v) == 1 for v in by_key.values()), "a key saw both versions"
    canary_keys = {k for k, v in by_key.items() if v == {"v2"}}
    assert canary_keys == {"k%d" % i for i in range(keys)
                           if fnv_fraction("threat", "k%d" % i) < 0.2}
    share = sum(1 for p in preds if p["model_version"] == "v2") / n
    assert 0.18 <= share <= 0.22, share
    m = eng.metrics()
    assert abs(metric_sum(m, "ml_stream_canary_realised_share", model_id="threat",
                          version="v2") - share) < 1e-6
    assert metric_sum(m, "ml_stream_canary_inputs_total", model_id="threat", version="v2",
                      role="canary") == round(share * n)
    assert metric_sum(m, "ml_stream_model_version_info", model_id="threat", version="v2",
                      role="canary") == 1
    assert eng.stop() == 0
    sub.close()
    # each prediction is its version's output
    ref = reference("torch", [(os.path.join(T, "mlp.pt"), None, rows),
                              (os.path.join(T, "mlp_v2.pt"), None, rows)])
    v1, v2 = (os.path.join(T, "mlp.pt"), "None"), (os.path.join(T, "mlp_v2.pt"), "None")
    for p in preds:
        i = p["metadata"]["i"]
        want = ref[v2 if p["model_version"] == "v2" else v1][i]
        assert close(p["predictions"], want), (p, want)


def shadow_check(services, topic, engines, tmp_path, versions, v1_ref, v2_ref, framework,
                 tolerance=None):
    """serving v1, shadow v2: the live channel carries only v1's
    predictions, the shadow channel v2's, and the comparison's agreement and
    mean difference equal those computed offline from both models."""
    repo = str(tmp_path / "models")
    conf = "serving = v1\nshadow = v2\n"
    if tolerance is not None:
        conf += "shadow_tolerance = %g\n" % tolerance
    write_versions(repo, "fraud", conf, versions)
    rng = random.Random(9)
    n = 3000
    rows = [random_rows(rng, 1, 3) for _ in range(n)]  # one row per input
    live, shadow = Subscriber(services), Subscriber(services, SHADOW_CHANNEL)
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_REPOSITORY": repo,
                                                    "ML_DEFAULT_MODEL_ID": "fraud"}))
    eng.wait_ready()
    produce(services, topic, [json.dumps({"input_id": "s%d" % i, "features": rows[i]})
                              for i in range(n)])
    got = collect(live, n)
    sh = wait_for(lambda: (lambda p: p if len(p) >= n else None)(shadow.payloads("shadow")),
                  60, "%d shadow predictions" % n)
    ref = reference(framework, [(v1_ref[0], v1_ref[1], rows), (v2_ref[0], v2_ref[1], rows)])
    a, b = ref[(v1_ref[0], str(v1_ref[1]))], ref[(v2_ref[0], str(v2_ref[1]))]
    assert len(got) == n and {p["model_version"] for p in got} == {"v1"}
    assert not shadow.payloads("prediction"), "a live prediction on the shadow channel"
    assert len(sh) == n and {p["model_version"] for p in sh} == {"v2"}
    for p in got:
        i = int(p["input_id"][1:])
        assert close(p["predictions"], a[i]), (p, a[i])
    for p in sh:
        i = int(p["input_id"][1:])
        assert close(p["predictions"], b[i]), (p, b[i])
    agree = sum(1 for x, y in zip(a, b) if argmax(x[0]) == argmax(y[0]))
    diffs = [max(abs(u - v) for u, v in zip(x[0], y[0])) for x, y in zip(a, b)]
    m = eng.metrics()
    labels = dict(model_id="fraud", serving="v1", shadow="v2")
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_shadow_rows_total", **labels) == n,
             30, "the comparison to count every row")
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_shadow_agreements_total", **labels) == agree
    mean = metric_sum(m, "ml_stream_shadow_abs_diff_sum", **labels) / n
    assert abs(mean - sum(diffs) / n) < 1e-4 * max(1.0, mean), (mean, sum(diffs) / n)
    assert metric_sum(m, "ml_stream_shadow_call_seconds_count", model_id="fraud",
                      version="v2", role="shadow") >= 1
    # the comparison also goes out in heartbeats, for the gateways
    hb = wait_for(lambda: [h for h in live.payloads("heartbeat")
                           if any(c.get("rows") == n for c in h.get("comparisons", []))],
                  30, "a heartbeat with the whole comparison")
    c = [c for c in hb[-1]["comparisons"] if c["model_id"] == "fraud"][0]
    assert (c["serving"], c["shadow"], c["agreements"]) == ("v1", "v2", agree)
    loaded = [x for x in hb[-1]["loaded"] if x["model_id"] == "fraud"][0]
    assert (loaded["serving"], loaded["shadow"], loaded["canary"]) == ("v1", "v2", None)
    assert eng.stop() == 0
    live.close()
    shadow.close()
    return agree, n


@needs_torch
def test_shadow_is_compared_and_never_live_torch(services, topic, engines, tmp_path):
    agree, n = shadow_check(services, topic, engines, tmp_path, torch_versions(),
                            (os.path.join(T, "mlp.pt"), None),
                            (os.path.join(T, "mlp_v2.pt"), None), "torch")
    assert 0 < agree < n, "the fixtures' versions must differ on some inputs"


@needs_tf
def test_shadow_and_versions_tensorflow(services, topic, engines, tmp_path):
    """The same with TensorFlow SavedModels: v2 publishes the probabilities
    of v1's scores, so they always agree on the arg-max but differ in value."""
    versions = {"v1": ("framework = tensorflow\n", os.path.join(TF, "mlp"), "saved_model"),
                "v2": ("framework = tensorflow\noutput = probs\n", os.path.join(TF, "twoout"),
                       "saved_model")}
    agree, n = shadow_check(services, topic, engines, tmp_path, versions,
                            (os.path.join(TF, "mlp"), None),
                            (os.path.join(TF, "twoout"), "probs"), "tensorflow")
    assert agree == n


class ShadowReplyHolder:
    """A TCP proxy to Redis that forwards everything, except Redis' replies
    on the first connection that publishes to the shadow channel: those it
    holds back, so what the engine sent there is published and never
    acknowledged. cut() closes that connection."""

    def __init__(self, env):
        self.target = redis_addr(env)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = None
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            conn = {"client": client, "server": socket.create_connection(self.target),
                    "hold": False}
            threading.Thread(target=self._pump, args=(conn, "client", "server"),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, "server", "client"),
                             daemon=True).start()

    def _pump(self, conn, src, dst):
        while True:
            try:
                data = conn[src].recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                self._close(conn)
                return
            if src == "client" and SHADOW_CHANNEL.encode() in data:
                with self.lock:
                    if self.held is None:
                        self.held = conn
                        conn["hold"] = True
            if src == "server" and conn["hold"]:
                continue
            try:
                conn[dst].sendall(data)
            except OSError:
                self._close(conn)
                return

    def _close(self, conn):
        for k in ("client", "server"):
            try:
                conn[k].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self._close(self.held)

    def close(self):
        self.listener.close()


def test_shadow_predictions_are_published_at_most_once(services, topic, engines, tmp_path):
    """The engine's connection for shadow predictions is lost after Redis
    published a batch of them but before the engine read Redis' replies
    (read with the next batch's): on the next connection that batch is not
    published again, and the live stream still gets every input."""
    repo = tmp_path / "models"
    for v in ("a", "b"):
        (repo / "m" / v).mkdir(parents=True)
        (repo / "m" / v / "model.conf").write_text("framework = identity\n")
    (repo / "m" / "model.conf").write_text("serving = a\nshadow = b\n")
    live, shadow = Subscriber(services), Subscriber(services, SHADOW_CHANNEL)
    proxy = ShadowReplyHolder(services)
    host, _ = redis_addr(services)
    # the first 200 inputs are one batch: one shadow publish, unacknowledged
    eng = engines(topic=topic, extra_env={"ML_MODEL_REPOSITORY": str(repo),
                                          "ML_DEFAULT_MODEL_ID": "m",
                                          "REDIS_URL": "redis://%s:%d/0" % (host, proxy.port),
                                          "ML_BATCH_MAX_MESSAGES": "200",
                                          "ML_BATCH_MAX_WAIT_US": "500000"})
    eng.wait_ready()
    sent = []

    def send(*ids):
        produce(services, topic, [json.dumps({"input_id": i, "features": [1]}) for i in ids])
        sent.extend(ids)

    def ids(sub, kind):
        return collections.Counter(p["input_id"] for p in sub.payloads(kind))

    send(*("a%d" % i for i in range(200)))
    wait_for(lambda: len(ids(shadow, "shadow")) == 200, 60, "the first shadow predictions")
    assert proxy.held is not None
    proxy.cut()
    send(*("b%d" % i for i in range(200)))
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_shadow_unpublished_total") >= 1,
             60, "the engine to find its shadow connection gone")
    # a second later shadow predictions are published again, on a new
    # connection: one input at a time until one arrives
    wait_for(lambda: send("c%d" % len(sent)) or any(i[0] == "c" for i in ids(shadow, "shadow")),
             60, "shadow predictions after the lost connection")
    wait_for(lambda: set(ids(live, "prediction")) >= set(sent), 60, "every live prediction")
    repeats = [i for i, k in ids(shadow, "shadow").items() if k > 1]
    assert not repeats, "shadow predictions published twice: %s" % repeats[:10]
    assert eng.stop() == 0
    live.close()
    shadow.close()
    proxy.close()


@pytest.mark.parametrize("mode", ["single", "per-model"])
def test_shadow_channel_is_ml_stream_shadow_channel(services, topic, engines, tmp_path, mode):
    """ML_STREAM_SHADOW_CHANNEL names where shadow predictions go (in the
    per-model mode, the prefix of the model's channel); nothing goes to the
    default shadow channel, and the live stream is unchanged."""
    repo = tmp_path / "models"
    for v in ("a", "b"):
        (repo / "m" / v).mkdir(parents=True)
        (repo / "m" / v / "model.conf").write_text("framework = identity\n")
    (repo / "m" / "model.conf").write_text("serving = a\nshadow = b\n")
    ours = "ops:shadow:" + topic[-6:]

    def channel(prefix):
        return prefix + ":{m}" if mode == "per-model" else prefix
    live = Subscriber(services, channel(CHANNEL))
    shadow = Subscriber(services, channel(ours))
    default = Subscriber(services, channel(SHADOW_CHANNEL))
    eng = engines(topic=topic, extra_env={"ML_MODEL_REPOSITORY": str(repo),
                                          "ML_DEFAULT_MODEL_ID": "m",
                                          "ML_STREAM_SHADOW_CHANNEL": ours,
                                          "ML_STREAM_REDIS_CHANNEL_MODE": mode})
    eng.wait_ready()
    n = 50
    produce(services, topic, [json.dumps({"input_id": "x%d" % i, "features": [i]})
                              for i in range(n)])
    want = {"x%d" % i for i in range(n)}
    wait_for(lambda: {p["input_id"] for p in shadow.payloads("shadow")} == want, 60,
             "every shadow prediction on %s" % channel(ours))
    wait_for(lambda: {p["input_id"] for p in live.payloads("prediction")} == want, 60,
             "every live prediction")
    assert {p["model_version"] for p in shadow.payloads("shadow")} == {"b"}
    assert not shadow.payloads("prediction")
    assert eng.stop() == 0
    assert default.raw() == [], "shadow predictions on the default channel"
    for sub in (live, shadow, default):
        sub.close()


@needs_torch
def test_promote_mid_stream_scores_each_input_once(services, topic, engines, tmp_path):
    """serving v1 with shadow v2, then model.conf says serving v2 while
    10,000 inputs flow: each input is scored exactly once by exactly one live
    version, per partition all of v1 comes before all of v2, and the switch
    shows in the log and the metrics."""
    repo = str(tmp_path / "models")
    write_versions(repo, "threat", "serving = v1\nshadow = v2\n", torch_versions())
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_REPOSITORY": repo,
                                                    "ML_DEFAULT_MODEL_ID": "threat",
                                                    "ML_MODEL_POLL_INTERVAL_MS": "100"}))
    eng.wait_ready()
    n = 10000
    prod = Producer(services, topic, n, 8.0)
    prod.start()
    wait_for(lambda: len(sub.payloads()) > 1000, 60, "the first predictions")
    write_conf(repo, "threat", "serving = v2\n")
    wait_for(lambda: "switched: serving v2 (was v1)" in eng.output(), 30, "the switch")
    prod.join(120)
    assert prod.error is None, prod.error
    preds = collect(sub, n, timeout=120)
    ids = collections.Counter(p["input_id"] for p in preds)
    assert len(ids) == n and max(ids.values()) == 1, "each input exactly once"
    ref = reference("torch", [(os.path.join(T, "mlp.pt"), None, prod.rows),
                              (os.path.join(T, "mlp_v2.pt"), None, prod.rows)])
    v1, v2 = (os.path.join(T, "mlp.pt"), "None"), (os.path.join(T, "mlp_v2.pt"), "None")
    seq = collections.defaultdict(list)
    for p in sorted(preds, key=lambda p: p["kafka"]["offset"]):
        i = int(p["input_id"][1:])
        want = ref[v1 if p["model_version"] == "v1" else v2][i]
        assert close(p["predictions"], want), (p, want)
        seq[p["kafka"]["partition"]].append(p["model_version"])
    counts = collections.Counter(p["model_version"] for p in preds)
    assert counts["v1"] > 0 and counts["v2"] > 0, counts
    for part, versions in seq.items():
        s = "".join("1" if v == "v1" else "2" for v in versions)
        assert re.fullmatch(r"1*2*", s), "partition %d went back to v1" % part
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_model_version_info", model_id="threat", version="v2",
                      role="serving") == 1
    assert metric_sum(m, "ml_stream_model_version_info", model_id="threat", version="v1",
                      role="serving") == 0
    assert metric_sum(m, "ml_stream_model_version_info", model_id="threat", version="v2",
                      role="shadow") == 0
    assert eng.stop() == 0
    sub.close()


def test_a_missing_version_keeps_the_old_one_serving(services, topic, engines, tmp_path):
    """model.conf naming a version that is not there: the load fails with a
    message naming it, and the versions before keep serving."""
    repo = str(tmp_path / "models")
    write_versions(repo, "echo", "serving = a\n",
                   {"a": ("framework = identity\n", os.devnull, "unused")})
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_REPOSITORY": repo,
                                                    "ML_DEFAULT_MODEL_ID": "echo",
                                                    "ML_MODEL_POLL_INTERVAL_MS": "100"}))
    eng.wait_ready()
    write_conf(repo, "echo", "serving = a\ncanary = b\ncanary_share = 0.5\n")
    wait_for(lambda: "version b:" in eng.output(), 30, "the failed load")
    assert "load failed, the previous version keeps serving" in eng.output()
    produce(services, topic, [json.dumps({"input_id": "e%d" % i, "features": [i]})
                              for i in range(100)])
    preds = collect(sub, 100)
    assert {p["model_version"] for p in preds} == {"a"}
    assert metric_sum(eng.metrics(), "ml_stream_model_load_failures_total",
                      model_id="echo") >= 1
    assert eng.stop() == 0
    sub.close()


def test_heartbeats_list_every_loaded_model(services, topic, engines, tmp_path):
    """Models that saw no traffic yet are in the heartbeats too, with their
    versions and counts, so that gateways list them (mlStreamingModels)."""
    repo = str(tmp_path / "models")
    write_versions(repo, "idle", "serving = a\n",
                   {"a": ("framework = identity\n", os.devnull, "unused")})
    os.makedirs(os.path.join(repo, "busy"))
    write_conf(repo, "busy", "framework = identity\n")
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_REPOSITORY": repo,
                                                    "ML_HEARTBEAT_INTERVAL_MS": "200"}))
    eng.wait_ready()
    produce(services, topic, [json.dumps({"model_id": "busy", "input_id": "b%d" % i,
                                          "features": [i]}) for i in range(10)])
    collect(sub, 10)
    hb = wait_for(lambda: [h for h in sub.payloads("heartbeat")
                           if any(x["model_id"] == "busy" and x["predictions"] == 10
                                  for x in h.get("loaded", []))],
                  30, "a heartbeat counting busy's predictions")[-1]
    assert sorted(hb["models"]) == ["busy", "idle"]
    loaded = {x["model_id"]: x for x in hb["loaded"]}
    assert loaded["idle"] == {"model_id": "idle", "framework": "identity", "serving": "a",
                              "canary": None, "canary_share": None, "shadow": None,
                              "predictions": 0, "errors": 0}
    assert loaded["busy"]["serving"] is None  # identity: no artifact, no version
    assert eng.stop() == 0
    sub.close()
