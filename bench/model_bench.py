#!/usr/bin/env python3
"""Model benchmark: the 3 -> 64 -> 64 -> 2 TorchScript MLP
(tests/fixtures/torch/mlp.pt) through `mlstream engine` on a real Kafka
broker and Redis, at batch limits (ML_BATCH_MAX_ROWS) 1, 16, 64 and 256,
next to the same model called directly from C in a loop (mls_model_bench,
the limit), in the same run.

  * throughput: N one-row messages already in a 4-partition topic; rows/s
    from the first to the last prediction, with a live Redis subscriber;
  * per-batch latency: the engine's ml_stream_model_call_seconds histogram
    (one observation per model call) and rows per call;
  * message latency at a steady rate with the default limits, torch and
    identity, from the payloads' latency_ms;
  * shadow scoring (docs/models.md): the same backlog through a model
    repository at batch limit --shadow-batch (default 256, the engine's
    default ML_BATCH_MAX_ROWS), serving mlp.pt alone, then with mlp_v2.pt
    as its shadow (nobody subscribed to the shadow channel: compared only),
    then the same with a subscriber on the shadow channel (its predictions
    built and published too); the ratios are what a shadow costs. The three
    runs are repeated --shadow-rounds times in alternating order, and each
    figure is the median over the rounds.

Writes --out (default bench/out/models.json): "summary", "machine", details.
Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set (bench/run, scripts/services
start), else starts the services itself.
Usage: bench/model_bench.py [--messages N] [--only direct,engine,shadow,latency]
                            [--shadow-rounds N] [--shadow-batch ROWS] [--quick]
                            [--out FILE]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import fail  # noqa: E402
from benchlib import cpu_s as proc_cpu  # noqa: E402
from mlshelpers import (CHANNEL, MLSTREAM, stop_services, SERVICES, Engine,  # noqa: E402
                        Subscriber, metric_sum, topic_create, wait_for)

MODEL = os.path.join(ROOT, "tests", "fixtures", "torch", "mlp.pt")
MODEL_V2 = os.path.join(ROOT, "tests", "fixtures", "torch", "mlp_v2.pt")
DIRECT = os.environ.get("MLS_MODEL_BENCH",
                        os.path.join(os.path.dirname(MLSTREAM), "mls_model_bench"))
BATCHES = [1, 16, 64, 256]
SHADOW_BATCH = 256  # the engine's default ML_BATCH_MAX_ROWS


def histogram(m, name, **labels):
    """(count, sum, [(le, cumulative count)]) of a histogram series."""
    want = set(labels.items())
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in m.items()
                     if n == name + "_bucket" and want <= set(l))
    return (metric_sum(m, name + "_count", **labels), metric_sum(m, name + "_sum", **labels),
            buckets)


def bucket_quantile(buckets, count, q):
    """Upper bound of the bucket holding quantile q."""
    for le, c in buckets:
        if c >= q * count:
            return le
    return float("inf")


def direct(seconds, threads):
    r = subprocess.run([DIRECT, "torch", MODEL, str(seconds), str(threads)]
                       + [str(b) for b in BATCHES], capture_output=True, text=True,
                       check=True, timeout=600)
    return {d["batch"]: d for d in map(json.loads, r.stdout.splitlines())}


def produce_backlog(env, n):
    topic = "bench.models.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        for i in range(n):
            f.write('{"model_id":"mlp","input_id":"e%d","features":[[0.%03d,0.5,-0.25]]}\n'
                    % (i, i % 1000))
        path = f.name
    benchlib.produce_file(env, topic, path)
    os.unlink(path)
    return topic


def make_repository(path, shadow):
    """A repository serving mlp.pt as version v1 of model "mlp", with
    mlp_v2.pt as its shadow v2 when shadow is true."""
    for v, src in (("v1", MODEL), ("v2", MODEL_V2)):
        os.makedirs(os.path.join(path, "mlp", v))
        shutil.copy(src, os.path.join(path, "mlp", v, "model.pt"))
        with open(os.path.join(path, "mlp", v, "model.conf"), "w") as f:
            f.write("framework = torch\n")
    with open(os.path.join(path, "mlp", "model.conf"), "w") as f:
        f.write("serving = v1\n" + ("shadow = v2\n" if shadow else ""))


def engine_run(env, topic, n, batch, framework, threads, repository=None,
               shadow_subscriber=False):
    extra = {"ML_LOG_LEVEL": "warn", "ML_BATCH_MAX_ROWS": str(batch),
             "ML_MODEL_THREADS": str(threads)}
    if repository:
        extra.update({"ML_MODEL_REPOSITORY": repository, "ML_DEFAULT_MODEL_ID": "mlp"})
    elif framework == "torch":
        extra.update({"ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_PATH": MODEL})
    subs = [benchlib.BareSubscriber(env, ch, n)
            for ch in [CHANNEL] + (["ml:stream:shadow"] if shadow_subscriber else [])]
    try:
        eng = Engine(env, topic=topic, group="g-%s" % uuid.uuid4().hex[:8], extra_env=extra)
        first = None
        t_start = time.monotonic()
        while True:
            try:
                done = metric_sum(eng.metrics(), "ml_stream_inference_predictions_total")
            except (AssertionError, OSError):
                done = 0
            now = time.monotonic()
            if done and first is None:
                first = (now, done, proc_cpu(eng.proc.pid))
            if done >= n:
                break
            if eng.proc.poll() is not None:
                fail("the engine (%s, batch %d) exited:\n%s" % (framework, batch,
                                                               eng.output()[-1000:]))
            if first is None and now - t_start > 120:
                fail("the engine (%s, batch %d) scored nothing in 120 s:\n%s"
                     % (framework, batch, eng.output()[-1000:]))
            time.sleep(0.02)
        cpu = proc_cpu(eng.proc.pid) - first[2]
        m = eng.metrics()
        eng.stop()
        heard = [sub.received() for sub in subs]
    finally:
        for sub in subs:
            sub.close()
    if min(heard) < n:
        print("warning: subscribers received %s of %d predictions (fell behind?)"
              % (heard, n), file=sys.stderr)
    rows = n - first[1]
    wall = now - first[0]
    count, total, buckets = histogram(m, "ml_stream_model_call_seconds")
    bcount, brows, _ = histogram(m, "ml_stream_batch_rows")
    # the shadow's and the serving version's calls on the rows compared
    compared = metric_sum(m, "ml_stream_shadow_rows_total")
    sh_calls = {role: histogram(m, "ml_stream_shadow_call_seconds", role=role)[1]
                for role in ("serving", "shadow")}
    return {"framework": framework, "batch_limit": batch, "rows_per_s": rows / wall,
            "subscribers_received": heard,
            "shadow_rows_compared": compared,
            "shadow_call_us_per_row": sh_calls["shadow"] * 1e6 / compared if compared else None,
            "serving_call_us_per_row_compared":
                sh_calls["serving"] * 1e6 / compared if compared else None,
            "cpu_us_per_row": cpu * 1e6 / rows, "rows_per_call": brows / bcount,
            "call_us_mean": total / count * 1e6 if count else None,
            "call_us_p50_le": bucket_quantile(buckets, count, 0.5) * 1e6 if count else None,
            "call_us_p99_le": bucket_quantile(buckets, count, 0.99) * 1e6 if count else None}


def latency_run(env, framework, rate, count, threads):
    topic = "bench.models.lat.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    extra = {"ML_LOG_LEVEL": "warn", "ML_MODEL_THREADS": str(threads)}
    if framework == "torch":
        extra.update({"ML_MODEL_FRAMEWORK": "torch", "ML_MODEL_PATH": MODEL})
    sub = Subscriber(env)
    eng = Engine(env, topic=topic, extra_env=extra)
    eng.wait_ready()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write('{"input_id":"x","features":[[0.1,0.2,0.3]],"metadata":{"tenant":"t"}}\n')
        payload = f.name
    subprocess.run([SERVICES, "kafka-run", "org.apache.kafka.tools.ProducerPerformance",
                    "--topic", topic, "--num-records", str(count), "--throughput", str(rate),
                    "--payload-file", payload, "--producer-props",
                    "bootstrap.servers=" + env["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms=0",
                    "acks=1"], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=600)
    wait_for(lambda: len(sub.payloads()) >= count, 120, "latency predictions")
    lat = sorted(p["latency_ms"] for p in sub.payloads())
    eng.stop()
    sub.close()
    os.unlink(payload)
    return {"framework": framework, "rate": rate, "count": count,
            "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)],
            "max_ms": lat[-1]}


SHADOW_CONFIGS = (("serving_only", False, False), ("with_shadow", True, False),
                  ("with_shadow_subscribed", True, True))


def shadow_rounds(env, topic, args):
    """The three repository runs, args.shadow_rounds times, in alternating
    order so that drift on a shared machine falls on each alike; a round's
    ratios come from its own three runs."""
    rounds = []
    with tempfile.TemporaryDirectory(prefix="mls-bench-repo.") as tmp:
        for name, shadow, _ in SHADOW_CONFIGS:
            make_repository(os.path.join(tmp, name), shadow)
        for r in range(args.shadow_rounds):
            runs = {}
            for name, _, listen in (SHADOW_CONFIGS if r % 2 == 0 else SHADOW_CONFIGS[::-1]):
                runs[name] = engine_run(env, topic, args.messages, args.shadow_batch, "torch",
                                        args.threads, os.path.join(tmp, name),
                                        shadow_subscriber=listen)
            rounds.append(runs)
    return rounds


def shadow_summary(rounds):
    """Medians over the rounds of each figure and of each round's ratios."""
    def med(f):
        v = sorted(f(r) for r in rounds)
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    def rate(name):
        return lambda r: r[name]["rows_per_s"]

    def cpu(name):
        return lambda r: r[name]["cpu_us_per_row"]
    alone, shadowed, heard = (c[0] for c in SHADOW_CONFIGS)
    return {
        "shadow_rounds": len(rounds),
        "shadow_batch_limit": rounds[0][alone]["batch_limit"],
        "serving_only_rows_per_s": round(med(rate(alone))),
        "serving_only_cpu_us_per_row": round(med(cpu(alone)), 2),
        "with_shadow_rows_per_s": round(med(rate(shadowed))),
        "with_shadow_over_serving_only":
            round(med(lambda r: rate(shadowed)(r) / rate(alone)(r)), 3),
        "with_shadow_cpu_us_per_row": round(med(cpu(shadowed)), 2),
        # what the shadow adds per row, next to what its model calls take
        "with_shadow_extra_cpu_us_per_row":
            round(med(lambda r: cpu(shadowed)(r) - cpu(alone)(r)), 3),
        "shadow_call_us_per_row": round(med(lambda r: r[shadowed]["shadow_call_us_per_row"]), 3),
        # what the shadow costs beyond its own model calls: about 0 when
        # comparing and the rest are free
        "shadow_cost_beyond_its_calls_us_per_row": round(med(
            lambda r: cpu(shadowed)(r) - cpu(alone)(r) - r[shadowed]["shadow_call_us_per_row"]), 3),
        "with_shadow_subscribed_rows_per_s": round(med(rate(heard))),
        "with_shadow_subscribed_over_serving_only":
            round(med(lambda r: rate(heard)(r) / rate(alone)(r)), 3),
        "with_shadow_subscribed_cpu_us_per_row": round(med(cpu(heard)), 2),
    }


PHASES = ("direct", "engine", "shadow", "latency")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=300000)
    ap.add_argument("--seconds", type=float, default=2.0, help="per direct batch size")
    ap.add_argument("--threads", type=int, default=1, help="ML_MODEL_THREADS")
    ap.add_argument("--latency-rate", type=int, default=10000)
    ap.add_argument("--latency-count", type=int, default=50000)
    ap.add_argument("--shadow-rounds", type=int, default=3,
                    help="rounds of the three shadow runs (default 3; ratios are medians)")
    ap.add_argument("--shadow-batch", type=int, default=SHADOW_BATCH,
                    help="ML_BATCH_MAX_ROWS of the shadow runs (default 256, the engine's)")
    ap.add_argument("--only", default=",".join(PHASES),
                    help="comma-separated phases to run: %s (default all)" % ", ".join(PHASES))
    benchlib.add_common_args(ap, "models")
    args = ap.parse_args()
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    if not phases or any(p not in PHASES for p in phases):
        ap.error("--only takes %s" % ", ".join(PHASES))
    if args.shadow_rounds < 1:
        ap.error("--shadow-rounds must be at least 1")
    if not 1 <= args.shadow_batch <= 65536:
        ap.error("--shadow-batch takes 1..65536 rows")
    if args.quick:
        args.messages, args.seconds = min(args.messages, 30000), min(args.seconds, 0.3)
        args.latency_count = min(args.latency_count, 5000)
        args.shadow_rounds = 1
    result = benchlib.Result("models", args)
    binary = benchlib.need_binary("mlstream")
    if "direct" in phases:
        benchlib.need_file(DIRECT, "build it first (bench/run builds it, or "
                           "`ninja -C build mls_model_bench`)")
    benchlib.need_file(MODEL, "the test fixtures make it (tests/fixtures)")
    benchlib.need_command("kcat", "apt-get install kcat")
    if "torch" not in benchlib.mlstream_versions(binary):
        fail("this mlstream was built without the torch plugin (libtorch not found at "
             "configure time: scripts/bootstrap installs it)")
    env, started = benchlib.services("all")
    try:
        res = {"messages": args.messages, "threads": args.threads}
        if "direct" in phases:
            res["direct"] = direct(args.seconds, args.threads)
        if "engine" in phases or "shadow" in phases:
            topic = produce_backlog(env, args.messages)
        if "engine" in phases:
            res["engine"] = [engine_run(env, topic, args.messages, b, "torch", args.threads)
                             for b in BATCHES]
            res["identity_256"] = engine_run(env, topic, args.messages, 256, "identity",
                                             args.threads)
        if "shadow" in phases:
            res["shadow_rounds"] = shadow_rounds(env, topic, args)
        if "latency" in phases:
            res["latency"] = [latency_run(env, fw, args.latency_rate, args.latency_count,
                                          args.threads) for fw in ("torch", "identity")]
    finally:
        if started:
            stop_services(env, "all")
    summary = {}
    for e in res.get("engine", []):
        b = e["batch_limit"]
        summary["torch_b%d_rows_per_s" % b] = round(e["rows_per_s"])
        summary["torch_b%d_cpu_us_per_row" % b] = round(e["cpu_us_per_row"], 2)
        summary["torch_b%d_call_us_mean" % b] = e["call_us_mean"] and round(e["call_us_mean"], 1)
        if "direct" in res:
            d = res["direct"][b]
            summary["engine_over_direct_b%d" % b] = round(e["rows_per_s"] / d["rows_per_s"], 3)
    for b, d in sorted(res.get("direct", {}).items()):
        summary["direct_b%d_rows_per_s" % b] = round(d["rows_per_s"])
        summary["direct_b%d_call_us_mean" % b] = round(d["call_us_mean"], 1)
    if "identity_256" in res:
        i = res["identity_256"]
        summary["identity_b256_rows_per_s"] = round(i["rows_per_s"])
        summary["identity_b256_cpu_us_per_row"] = round(i["cpu_us_per_row"], 2)
    for l in res.get("latency", []):
        summary["%s_latency_p50_ms" % l["framework"]] = round(l["p50_ms"], 3)
        summary["%s_latency_p99_ms" % l["framework"]] = round(l["p99_ms"], 3)
        summary["%s_latency_max_ms" % l["framework"]] = round(l["max_ms"], 2)
    if "latency" in res:
        summary["latency_rate_msgs_per_s"] = args.latency_rate
    if "shadow_rounds" in res:
        summary.update(shadow_summary(res["shadow_rounds"]))
    if "direct" in res:
        res["direct"] = {str(k): v for k, v in res["direct"].items()}
    result.write(summary, binary, env, **res)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    benchlib.run_main(main)
