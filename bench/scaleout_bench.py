#!/usr/bin/env python3
"""Scale-out benchmark: one versus two `mlstream engine` processes in one
consumer group draining the same backlog, in the same run, on a real Kafka
broker and Redis.

A 4-partition topic is filled once with N one-row messages. Each round
starts a fresh consumer group on it, either one engine or two, and measures
the drain rate (predictions per second, summed over the group's engines)
from the moment the group is in steady state (two engines: each holds two
partitions; the first engine to join starts alone until the rebalance,
which a 100 ms heartbeat interval keeps short) until 95 % of the backlog is
scored, plus the engines' CPU per message and how busy the whole machine
was over that window. Rounds alternate (1, 2, 1, 2, ...) so that both
configurations see the same machine load; the report gives the medians.
There is no Redis subscriber: PUBLISH to a channel nobody listens to is the
cheapest case for Redis, which leaves the cores to the engines.

Writes bench/out/scaleout.json (scaleout-<F>.json with --features F, or
--out NAME). KAFKA_CONF_* variables in the environment reach the engines
(e.g. KAFKA_CONF_QUEUED_MAX_MESSAGES_KBYTES) and are recorded.
Needs KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (scripts/services start) or
starts the services itself.
Usage: bench/scaleout_bench.py [--messages N] [--rounds R] [--features F]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from mlshelpers import (Engine, ensure_services, metric_sum,  # noqa: E402
                        stop_services, topic_create)


def poll(cond, timeout, what, interval=0.2):
    """Like mlshelpers.wait_for, but polls less often: every poll scrapes the
    engines, and the scraper shares the cores with what it measures."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu():
    """(busy, total) jiffies of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


def fill(env, topic, n, width):
    rest = ",".join("0.%03d" % (k * 37 % 1000) for k in range(1, width))
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        for i in range(n):
            f.write('{"model_id":"bench","input_id":"e%d","features":[[0.%03d,%s]],'
                    '"metadata":{"tenant":"t%d"}}\n' % (i, i % 1000, rest, i % 8))
        path = f.name
    with open(path, "rb") as f:
        subprocess.run(["kcat", "-P", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
                        "-X", "linger.ms=50", "-X", "batch.num.messages=10000"],
                       stdin=f, check=True)
    os.unlink(path)


def sample(engines):
    """(time, predictions summed, engine CPU seconds summed, partitions each,
    machine CPU jiffies (busy, total))."""
    t = time.monotonic()
    preds, parts = 0, []
    for e in engines:
        m = e.metrics()
        preds += metric_sum(m, "ml_stream_inference_predictions_total")
        parts.append(metric_sum(m, "ml_stream_kafka_assigned_partitions"))
    return t, preds, sum(cpu_seconds(e.proc.pid) for e in engines), parts, machine_cpu()


def run_round(env, topic, n, count):
    group = "bench-%d-%s" % (count, uuid.uuid4().hex[:8])
    engines = [Engine(env, topic=topic, group=group,
                      extra_env={"ML_LOG_LEVEL": "warn", "ML_ENGINE_ID": "bench-%d" % i,
                                 # Rebalance within ~0.1 s of the second
                                 # engine joining rather than at the next
                                 # 3 s heartbeat, so that the backlog
                                 # outlasts it. Same for one engine.
                                 "KAFKA_CONF_HEARTBEAT_INTERVAL_MS": "100"})
               for i in range(count)]
    try:
        for e in engines:
            e.wait_ready()
        want = [4 // count] * count
        start = poll(lambda: (lambda s: s[3] == want and s)(sample(engines)), 60,
                         "steady state %s" % want)
        if start[1] > n * 0.5:
            raise SystemExit("the backlog drained before steady state; use more --messages")
        end = poll(lambda: (lambda s: s[1] >= n * 0.95 and s)(sample(engines)), 600,
                       "95 % of the backlog")
        assert end[3] == want, "a rebalance during the measurement: %s" % end[3]
        scored = end[1] - start[1]
        return {"engines": count, "msgs_per_s": scored / (end[0] - start[0]),
                "cpu_us_per_msg": (end[2] - start[2]) * 1e6 / scored,
                "engine_cores_busy": (end[2] - start[2]) / (end[0] - start[0]),
                "machine_busy_fraction": (end[4][0] - start[4][0]) / (end[4][1] - start[4][1]),
                "measured_messages": scored, "before_steady_state": start[1]}
    finally:
        for e in engines:
            e.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--features", type=int, default=3,
                    help="numbers per message (one row); more is more engine CPU per message")
    ap.add_argument("--out", help="result file under bench/out (default scaleout.json, "
                    "scaleout-<F>.json with --features F)")
    args = ap.parse_args()
    env, started = ensure_services("all")
    try:
        topic = "bench.scale.%s" % uuid.uuid4().hex[:8]
        topic_create(env, topic, 4)
        fill(env, topic, args.messages, args.features)
        rounds = []
        for _ in range(args.rounds):
            for count in (1, 2):
                r = run_round(env, topic, args.messages, count)
                print(json.dumps(r), flush=True)
                rounds.append(r)
    finally:
        if started:
            stop_services(env, "all")

    def median(count, key):
        return statistics.median(r[key] for r in rounds if r["engines"] == count)
    res = {"messages": args.messages, "features": args.features, "rounds": rounds,
           # KAFKA_CONF_* in the environment reach the engines.
           "kafka_conf": {k: v for k, v in env.items() if k.startswith("KAFKA_CONF_")},
           "one_msgs_per_s": median(1, "msgs_per_s"), "two_msgs_per_s": median(2, "msgs_per_s"),
           "one_cpu_us_per_msg": median(1, "cpu_us_per_msg"),
           "two_cpu_us_per_msg": median(2, "cpu_us_per_msg"),
           "one_machine_busy": median(1, "machine_busy_fraction"),
           "two_machine_busy": median(2, "machine_busy_fraction"),
           "machine": "%d cores, %s" % (os.cpu_count(), os.uname().release),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    res["speedup"] = res["two_msgs_per_s"] / res["one_msgs_per_s"]
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    name = args.out or ("scaleout.json" if args.features == 3
                        else "scaleout-%d.json" % args.features)
    with open(os.path.join(HERE, "out", name), "w") as f:
        json.dump(res, f, indent=2)
    print("\none engine %.0f msg/s (%.2f us CPU/msg, machine %.0f %% busy), two engines "
          "%.0f msg/s (%.2f us CPU/msg, machine %.0f %% busy): x%.2f"
          % (res["one_msgs_per_s"], res["one_cpu_us_per_msg"], 100 * res["one_machine_busy"],
             res["two_msgs_per_s"], res["two_cpu_us_per_msg"], 100 * res["two_machine_busy"],
             res["speedup"]))


if __name__ == "__main__":
    main()
