"""Model adapters and the model repository end to end: a real Kafka broker,
a real Redis, `mlstream engine`, and the frameworks' own Python output as
the reference (Debian's python3-torch under /usr/bin/python3; tensorflow-cpu
in the virtualenv scripts/bootstrap makes).

Frameworks this build lacks (MLS_FRAMEWORKS, set by ctest) are skipped.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from mlshelpers import (MLSTREAM, ROOT, Subscriber, consume_all, free_port, metric_sum, produce,
                        wait_for)

FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TORCH_PY = "/usr/bin/python3"
CACHE = os.environ.get("MLSTREAM_CACHE", os.path.expanduser("~/.cache/mlstream"))
TF_PY = os.environ.get("MLS_TF_PYTHON", os.path.join(CACHE, "tf-venv", "bin", "python"))
FRAMEWORKS = set(filter(None, os.environ.get("MLS_FRAMEWORKS", "identity,torch").split(",")))
TOL = 1e-5

needs_torch = pytest.mark.skipif("torch" not in FRAMEWORKS, reason="torch adapter not built")
needs_tf = pytest.mark.skipif("tensorflow" not in FRAMEWORKS or not os.path.exists(TF_PY),
                              reason="tensorflow adapter or its virtualenv missing")


def model_env(extra=None):
    """Engine settings for these tests."""
    env = {"ML_BATCH_MAX_WAIT_US": "2000", "ML_MODEL_THREADS": "1"}
    env.update(extra or {})
    return env


_TORCH_REF = r"""
import json, sys, torch
req = json.load(sys.stdin)
torch.set_num_threads(1)
out = {}
for path, output, batches in req:
    m = torch.jit.load(path).eval()
    res = []
    with torch.no_grad():
        for rows in batches:
            r = m(torch.tensor(rows, dtype=torch.float32))
            if isinstance(r, (tuple, list)):
                r = r[int(output or 0)]
            elif isinstance(r, dict):
                r = r[output]
            if r.dim() == 1:
                r = r.unsqueeze(1)
            res.append(r.float().tolist())
    out[path + "|" + str(output)] = res
json.dump(out, sys.stdout)
"""

_TF_REF = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
req = json.load(sys.stdin)
out = {}
for path, output, batches in req:
    f = tf.saved_model.load(path).signatures["serving_default"]
    name = list(f.structured_input_signature[1].keys())[0]
    res = []
    for rows in batches:
        r = f(**{name: tf.constant(rows, dtype=tf.float32)})
        key = output or list(r.keys())[0]
        res.append(r[key].numpy().tolist())
    out[path + "|" + str(output)] = res
json.dump(out, sys.stdout)
"""


def reference(framework, jobs):
    """The framework's own outputs: jobs is [(path, output, [rows, ...])];
    returns {(path, output): [outputs per rows]}."""
    py, script = (TORCH_PY, _TORCH_REF) if framework == "torch" else (TF_PY, _TF_REF)
    r = subprocess.run([py, "-c", script], input=json.dumps(jobs), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return {tuple(k.split("|", 1)): v for k, v in json.loads(r.stdout).items()}


def close(a, b, tol=TOL):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if abs(x - y) > tol * max(1.0, abs(y)):
                return False
    return True


def random_rows(rng, n, width):
    return [[round(rng.uniform(-3, 3), 4) for _ in range(width)] for _ in range(n)]


def collect(sub, n, timeout=90):
    return wait_for(lambda: (lambda p: p if len(p) >= n else None)(sub.payloads()),
                    timeout, "%d predictions" % n)


def by_input_id(preds):
    out = {}
    for p in preds:
        assert p["input_id"] not in out, "scored twice: %s" % p["input_id"]
        out[p["input_id"]] = p
    return out


def run_reference_check(services, topic, engines, framework, path, n=600, output=None):
    """The engine's predictions for n random inputs equal the framework's
    own, for the model's only output or the one ML_MODEL_OUTPUT names."""
    rng = random.Random(7)
    sub = Subscriber(services)
    batches = [random_rows(rng, 1 + i % 3, 3) for i in range(n)]
    produce(services, topic, [json.dumps({"input_id": "r%d" % i, "model_id": "m",
                                          "features": rows})
                              for i, rows in enumerate(batches)])
    env = {"ML_MODEL_FRAMEWORK": framework, "ML_MODEL_PATH": path}
    if output is not None:
        env["ML_MODEL_OUTPUT"] = output
    eng = engines(topic=topic, extra_env=model_env(env))
    eng.wait_ready()
    preds = by_input_id(collect(sub, n))
    ref = reference(framework, [(path, output, batches)])[(path, str(output))]
    for i, rows in enumerate(batches):
        got = preds["r%d" % i]["predictions"]
        assert close(got, ref[i]), (i, rows, got, ref[i])
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_model_info", model_id="*", framework=framework) == 1
    assert metric_sum(m, "ml_stream_model_call_seconds_count", model_id="*") >= 1
    assert eng.stop() == 0
    sub.close()


@needs_torch
def test_torch_predictions_match_pytorch(services, topic, engines):
    run_reference_check(services, topic, engines, "torch",
                        os.path.join(FIXTURES, "torch", "mlp.pt"))


@needs_tf
def test_tensorflow_predictions_match_tensorflow(services, topic, engines):
    run_reference_check(services, topic, engines, "tensorflow",
                        os.path.join(FIXTURES, "tensorflow", "mlp"))


@needs_torch
def test_torch_output_chosen_by_ml_model_output(services, topic, engines):
    # dict.pt returns {"logits", "probs"}: without a choice it is refused
    # at start-up (test_bad_model_configuration_fails_at_start_up)
    run_reference_check(services, topic, engines, "torch",
                        os.path.join(FIXTURES, "torch", "dict.pt"), n=200, output="probs")


@needs_tf
def test_tensorflow_output_chosen_by_ml_model_output(services, topic, engines):
    run_reference_check(services, topic, engines, "tensorflow",
                        os.path.join(FIXTURES, "tensorflow", "twoout"), n=200, output="probs")


def write_model(repo, model_id, conf, files=()):
    d = os.path.join(repo, model_id)
    os.makedirs(d, exist_ok=True)
    for src, name in files:
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(d, name))
        else:
            shutil.copy(src, os.path.join(d, name))
    with open(os.path.join(d, "model.conf"), "w") as f:
        f.write(conf)


@needs_torch
def test_repository_routes_many_models(services, topic, engines, tmp_path):
    repo = str(tmp_path / "models")
    T = os.path.join(FIXTURES, "torch")
    write_model(repo, "mlp", "framework = torch\n", [(os.path.join(T, "mlp.pt"), "model.pt")])
    write_model(repo, "mlp4", "framework = torch\nartifact = net.pt\nmax_batch_rows = 8\n",
                [(os.path.join(T, "mlp4.pt"), "net.pt")])
    write_model(repo, "probs", "framework = torch\noutput = 1   # softmax\n",
                [(os.path.join(T, "tuple.pt"), "model.pt")])
    write_model(repo, "dict", "framework = torch\noutput = logits\n",
                [(os.path.join(T, "dict.pt"), "model.pt")])
    write_model(repo, "echo", "framework = identity\n")
    write_model(repo, "broken", "framework = torch\n")  # no model.pt
    with_tf = "tensorflow" in FRAMEWORKS and os.path.exists(TF_PY)
    if with_tf:
        write_model(repo, "tf", "framework = tensorflow\n",
                    [(os.path.join(FIXTURES, "tensorflow", "mlp"), "saved_model")])
    ids = ["mlp", "mlp4", "probs", "dict", "echo"] + (["tf"] if with_tf else [])
    width = {"mlp4": 4}
    rng = random.Random(3)
    msgs, lines = [], []
    for i in range(800):
        mid = ids[i % len(ids)]
        rows = random_rows(rng, 1 + i % 4, width.get(mid, 3))
        msgs.append((mid, rows))
        lines.append(json.dumps({"input_id": "m%d" % i, "model_id": mid, "features": rows}))
    bad = [json.dumps({"input_id": "ghost", "model_id": "ghost", "features": [1, 2, 3]}),
           json.dumps({"input_id": "broken", "model_id": "broken", "features": [1, 2, 3]}),
           json.dumps({"input_id": "narrow", "model_id": "mlp4", "features": [1, 2, 3]}),
           json.dumps({"input_id": "wide", "model_id": "mlp", "features": [[1, 2, 3, 4]]})]
    sub = Subscriber(services)
    produce(services, topic, lines[:400] + bad + lines[400:])
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_REPOSITORY": repo,
                                                    "ML_DEFAULT_MODEL_ID": "echo"}))
    eng.wait_ready()
    preds = by_input_id(collect(sub, len(lines)))
    time.sleep(0.5)
    assert len(sub.payloads()) == len(lines), "the bad ones are not published"

    jobs = {}
    for mid, path, output in [("mlp", os.path.join(T, "mlp.pt"), None),
                              ("mlp4", os.path.join(T, "mlp4.pt"), None),
                              ("probs", os.path.join(T, "tuple.pt"), "1"),
                              ("dict", os.path.join(T, "dict.pt"), "logits")]:
        jobs[mid] = ("torch", path, output)
    if with_tf:
        jobs["tf"] = ("tensorflow", os.path.join(FIXTURES, "tensorflow", "mlp"), None)
    refs = {}
    for fw in ("torch", "tensorflow"):
        req = [(p, o, [rows for m, rows in msgs if m == mid])
               for mid, (f, p, o) in jobs.items() if f == fw]
        if req:
            refs[fw] = reference(fw, req)
    seen = {mid: 0 for mid in ids}
    for i, (mid, rows) in enumerate(msgs):
        p = preds["m%d" % i]
        assert p["model_id"] == mid
        if mid == "echo":
            want = rows
        else:
            fw, path, output = jobs[mid]
            want = refs[fw][(path, str(output))][seen[mid]]
        seen[mid] += 1
        assert close(p["predictions"], want), (mid, rows, p["predictions"], want)

    dlq = consume_all(services, topic + ".dlq", len(bad))
    reasons = {json.loads(v)["input_id"]: h["mls.error.reason"] for h, v in dlq}
    assert reasons == {"ghost": "unknown_model", "broken": "unknown_model",
                       "narrow": "width_mismatch", "wide": "width_mismatch"}
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_model_load_failures_total", model_id="broken") == 1
    for mid in ids:
        assert metric_sum(m, "ml_stream_model_info", model_id=mid) == 1, mid
    assert "model broken: load failed" in eng.output()
    assert eng.stop() == 0
    sub.close()


class Producer(threading.Thread):
    """Produces n one-row messages in chunks, over about `seconds`."""

    def __init__(self, env, topic, n, seconds, prefix="x"):
        super().__init__(daemon=True)
        self.env, self.topic, self.n, self.seconds, self.prefix = env, topic, n, seconds, prefix
        rng = random.Random(11)
        self.rows = [random_rows(rng, 1, 3) for _ in range(n)]
        self.error = None

    def run(self):
        try:
            chunks = 25
            per = self.n // chunks
            for c in range(chunks):
                produce(self.env, self.topic,
                        [json.dumps({"input_id": "%s%d" % (self.prefix, i), "features": self.rows[i]})
                         for i in range(c * per, (c + 1) * per)])
                time.sleep(self.seconds / chunks)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


@needs_torch
def test_reload_under_load_loses_nothing(services, topic, engines, tmp_path):
    """Files replaced and SIGHUPs while messages flow: every message is scored
    exactly once, by one whole version of the model, and a broken file keeps
    the old version serving."""
    T = os.path.join(FIXTURES, "torch")
    path = str(tmp_path / "model.pt")
    shutil.copy(os.path.join(T, "mlp.pt"), path)

    def replace(src):  # as deploy tools do: write aside, rename over
        shutil.copy(src, path + ".tmp")
        os.rename(path + ".tmp", path)

    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env=model_env({"ML_MODEL_FRAMEWORK": "torch",
                                                    "ML_MODEL_PATH": path,
                                                    "ML_MODEL_POLL_INTERVAL_MS": "100"}))
    eng.wait_ready()
    n = 10000
    prod = Producer(services, topic, n, 8.0)
    prod.start()

    def loads():
        return metric_sum(eng.metrics(), "ml_stream_model_loads_total", model_id="*")

    wait_for(lambda: len(sub.payloads()) > 500, 30, "the first predictions")
    replace(os.path.join(T, "mlp_v2.pt"))
    wait_for(lambda: loads() >= 2, 20, "the changed file to load")
    eng.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: loads() >= 3, 20, "the SIGHUP reload")
    with open(path + ".tmp", "wb") as f:  # not TorchScript
        f.write(b"garbage" * 100)
    os.rename(path + ".tmp", path)
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_model_load_failures_total",
                                model_id="*") >= 1, 20, "the broken file to fail")
    replace(os.path.join(T, "mlp.pt"))
    wait_for(lambda: loads() >= 4, 20, "the good file again")
    prod.join(120)
    assert prod.error is None, prod.error
    preds = collect(sub, n, timeout=120)
    time.sleep(1.0)
    preds = sub.payloads()
    ids = [p["input_id"] for p in preds]
    assert len(ids) == len(set(ids)) == n, "each message exactly once (%d, %d unique)" % (
        len(ids), len(set(ids)))

    v1, v2 = (os.path.join(T, "mlp.pt"), "None"), (os.path.join(T, "mlp_v2.pt"), "None")
    ref = reference("torch", [(v1[0], None, prod.rows), (v2[0], None, prod.rows)])
    versions = {"v1": 0, "v2": 0}
    for p in preds:
        i = int(p["input_id"][1:])
        if close(p["predictions"], ref[v1][i]):
            versions["v1"] += 1
        elif close(p["predictions"], ref[v2][i]):
            versions["v2"] += 1
        else:
            raise AssertionError("prediction from neither version: %r" % p)
    assert versions["v1"] > 0 and versions["v2"] > 0, versions
    # The broken file never served: its failure left v2 in place.
    assert "load failed, the previous version keeps serving" in eng.output()
    assert metric_sum(eng.metrics(), "ml_stream_inference_errors_total") == 0
    assert eng.stop() == 0
    sub.close()


@needs_torch
def test_throwing_model_dead_letters_only_the_bad_message(services, topic, engines):
    rng = random.Random(5)
    rows = [random_rows(rng, 1 + i % 2, 3) for i in range(300)]
    poison = {17, 150, 151, 299}
    for i in poison:
        rows[i][0][1] = 666.0
    sub = Subscriber(services)
    produce(services, topic, [json.dumps({"input_id": "t%d" % i, "features": r})
                              for i, r in enumerate(rows)])
    # Everything waits in Kafka first, so the poison shares batches with
    # good messages.
    eng = engines(topic=topic, extra_env=model_env({
        "ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_PATH": os.path.join(FIXTURES, "torch", "throws.pt"),
        "ML_BATCH_MAX_WAIT_US": "20000"}))
    eng.wait_ready()
    good = len(rows) - len(poison)
    preds = by_input_id(collect(sub, good))
    dlq = consume_all(services, topic + ".dlq", len(poison))
    assert sorted(json.loads(v)["input_id"] for _, v in dlq) == sorted("t%d" % i for i in poison)
    for h, _ in dlq:
        assert h["mls.error.reason"] == "inference_failed"
        assert "poison value 666" in h["mls.error.message"]
    # throws.pt has mlp.pt's weights.
    path = os.path.join(FIXTURES, "torch", "mlp.pt")
    ref = reference("torch", [(path, None, [r for i, r in enumerate(rows) if i not in poison])])
    ref = ref[(path, "None")]
    k = 0
    for i, r in enumerate(rows):
        if i in poison:
            assert "t%d" % i not in preds
            continue
        assert close(preds["t%d" % i]["predictions"], ref[k]), i
        k += 1
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_inference_errors_total", stage="inference") == len(poison)
    assert eng.stop() == 0
    sub.close()


@needs_torch
def test_width_mismatch_is_dead_lettered(services, topic, engines):
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env=model_env({
        "ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_PATH": os.path.join(FIXTURES, "torch", "mlp.pt")}))
    eng.wait_ready()
    produce(services, topic, [json.dumps({"input_id": "ok", "features": [1, 2, 3]}),
                              json.dumps({"input_id": "w4", "features": [1, 2, 3, 4]}),
                              json.dumps({"input_id": "w2", "features": [[1, 2], [3, 4]]}),
                              json.dumps({"input_id": "ok2", "features": [[1, 2, 3]]})])
    collect(sub, 2)
    dlq = consume_all(services, topic + ".dlq", 2)
    got = {json.loads(v)["input_id"]: h for h, v in dlq}
    assert set(got) == {"w4", "w2"}
    assert got["w4"]["mls.error.reason"] == "width_mismatch"
    # (kcat prints headers comma-separated: the message is cut at its comma)
    assert got["w4"]["mls.error.message"].startswith("input has 4 features per row")
    assert eng.stop() == 0
    sub.close()


def start_fails(env):
    full = dict(os.environ, **model_env(env))
    r = subprocess.run([MLSTREAM, "engine"], env=full, capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stderr


def test_bad_model_configuration_fails_at_start_up(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    cases = [({"ML_MODEL_REPOSITORY": "/nonexistent/repo"},
              ["ML_MODEL_REPOSITORY /nonexistent/repo: No such file or directory"]),
             ({"ML_MODEL_REPOSITORY": str(tmp_path), "ML_MODEL_PATH": str(garbage)},
              ["ML_MODEL_REPOSITORY and ML_MODEL_PATH"])]
    if "torch" in FRAMEWORKS:
        cases += [({"ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_PATH": "/nonexistent/model.pt"},
                   ["ML_MODEL_PATH", "/nonexistent/model.pt", "No such file or directory"]),
                  ({"ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_PATH": str(garbage)},
                   ["ML_MODEL_PATH", str(garbage), "cannot load TorchScript"]),
                  ({"ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_INPUT_WIDTH": "5",
                    "ML_MODEL_PATH": os.path.join(FIXTURES, "torch", "mlp.pt")},
                   ["ML_MODEL_INPUT_WIDTH 5: the model refuses rows of that width",
                    "mat1 and mat2"]),
                  ({"ML_MODEL_FRAMEWORK": "torch",
                    "ML_MODEL_PATH": os.path.join(FIXTURES, "torch", "dict.pt")},
                   ["ML_MODEL_PATH", "output = KEY in its model.conf, or ML_MODEL_OUTPUT"])]
    if "tensorflow" in FRAMEWORKS:
        cases += [({"ML_MODEL_FRAMEWORK": "tensorflow", "ML_MODEL_PATH": "/nonexistent/sm"},
                   ["ML_MODEL_PATH", "cannot load SavedModel /nonexistent/sm"])]
    for fw in ("torch", "tensorflow"):
        if fw not in FRAMEWORKS:
            cases.append(({"ML_MODEL_FRAMEWORK": fw, "ML_MODEL_PATH": str(garbage)},
                          ["ML_MODEL_FRAMEWORK", "not built into this mlstream; built in: identity"]))
    for env, needles in cases:
        rc, err = start_fails(env)
        assert rc == 2, (env, rc, err)
        for needle in needles:
            assert needle in err, (env, needle, err)


def test_identity_with_a_model_path_says_the_path_is_ignored(tmp_path):
    """ML_MODEL_FRAMEWORK=identity takes no artifact: a path set beside it
    is reported, not silently ignored."""
    artifact = tmp_path / "model.pt"
    artifact.write_bytes(b"whatever")
    dead = "127.0.0.1:%d" % free_port()
    env = dict(os.environ, ML_MODEL_FRAMEWORK="identity", ML_MODEL_PATH=str(artifact),
               KAFKA_BOOTSTRAP_SERVERS=dead, REDIS_URL="redis://" + dead,
               ML_PROMETHEUS_PORT="0")
    env.pop("ML_MODEL_REPOSITORY", None)
    proc = subprocess.Popen([MLSTREAM, "engine"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        while line and "ML_MODEL_PATH" not in line:
            line = proc.stderr.readline()
        assert "ML_MODEL_PATH %s is ignored" % artifact in line, line
        assert "ML_MODEL_FRAMEWORK=identity" in line
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
