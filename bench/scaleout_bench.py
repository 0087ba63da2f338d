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

Writes --out (default bench/out/scaleout.json, scaleout-<F>.json with
--features F): "summary" (medians over the rounds), "machine", every round.
KAFKA_CONF_* variables in the environment reach the engines (e.g.
KAFKA_CONF_QUEUED_MAX_MESSAGES_KBYTES) and are recorded.
Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set (bench/run, scripts/services
start), else starts the services itself.
Usage: bench/scaleout_bench.py [--messages N] [--rounds R] [--features F]
       [--quick] [--out FILE]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import fail  # noqa: E402
from mlshelpers import (Engine, metric_sum, stop_services, topic_create)  # noqa: E402


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


cpu_seconds = benchlib.cpu_s


def fill(env, topic, n, width):
    rest = ",".join("0.%03d" % (k * 37 % 1000) for k in range(1, width))
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        for i in range(n):
            f.write('{"model_id":"bench","input_id":"e%d","features":[[0.%03d,%s]],'
                    '"metadata":{"tenant":"t%d"}}\n' % (i, i % 1000, rest, i % 8))
        path = f.name
    benchlib.produce_file(env, topic, path)
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
    return t, preds, sum(cpu_seconds(e.proc.pid) for e in engines), parts, benchlib.machine_cpu()


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
            fail("the backlog drained before steady state; use more --messages")
        end = poll(lambda: (lambda s: s[1] >= n * 0.95 and s)(sample(engines)), 600,
                       "95 % of the backlog")
        if end[3] != want:
            fail("a rebalance during the measurement: partitions %s" % end[3])
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
    benchlib.add_common_args(ap, "scaleout")
    args = ap.parse_args()
    if args.features != 3 and args.out == os.path.join(HERE, "out", "scaleout.json"):
        args.out = os.path.join(HERE, "out", "scaleout-%d.json" % args.features)
    if args.quick:
        args.messages, args.rounds = min(args.messages, 300000), 1
    result = benchlib.Result("scaleout", args)
    binary = benchlib.need_binary("mlstream")
    benchlib.need_command("kcat", "apt-get install kcat")
    if args.rounds < 1:
        fail("--rounds must be 1 or more")
    env, started = benchlib.services("all")
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
    summary = {
        "one_engine_msgs_per_s": round(median(1, "msgs_per_s")),
        "two_engines_msgs_per_s": round(median(2, "msgs_per_s")),
        "one_engine_cpu_us_per_msg": round(median(1, "cpu_us_per_msg"), 3),
        "two_engines_cpu_us_per_msg": round(median(2, "cpu_us_per_msg"), 3),
        "one_engine_cores": round(median(1, "engine_cores_busy"), 2),
        "two_engines_cores": round(median(2, "engine_cores_busy"), 2),
        "one_engine_machine_busy_pct": round(100 * median(1, "machine_busy_fraction"), 1),
        "two_engines_machine_busy_pct": round(100 * median(2, "machine_busy_fraction"), 1),
    }
    summary["two_over_one"] = round(summary["two_engines_msgs_per_s"]
                                    / summary["one_engine_msgs_per_s"], 3)
    result.write(summary, binary, env, messages=args.messages, features=args.features,
                 # KAFKA_CONF_* in the environment reach the engines.
                 kafka_conf={k: v for k, v in env.items() if k.startswith("KAFKA_CONF_")},
                 rounds=rounds)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    benchlib.run_main(main)
