#!/usr/bin/env python3
"""Engine benchmark: throughput, CPU per message, memory and latency of
`mlstream engine` with the identity model on a real Kafka broker and Redis,
next to the limits measured in the same run:

  * kcat (librdkafka) consuming the same topic to /dev/null;
  * redis-benchmark pipelining PUBLISH of a payload of the same size.

Writes bench/out/engine.json and the engine section of bench/REPORT.md.
Needs KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (scripts/services start) or starts
the services itself. Usage: bench/engine_bench.py [--messages N]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from mlshelpers import (ensure_services, stop_services, SERVICES, Engine, # noqa: E402
                        Subscriber, metric_sum, redis_addr, topic_create, wait_for)


def proc_stats(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, rss, hwm


def make_messages(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write('{"model_id":"bench","input_id":"e%d","features":[[0.%03d,0.5,0.25]],'
                    '"metadata":{"tenant":"t%d"}}\n' % (i, i % 1000, i % 8))


def kcat_consume_rate(env, topic, n):
    """librdkafka's own consume rate: kcat reading the topic to /dev/null."""
    t0 = time.monotonic()
    subprocess.run(["kcat", "-C", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
                    "-o", "beginning", "-e", "-q", "-c", str(n)],
                   stdout=subprocess.DEVNULL, check=True)
    return n / (time.monotonic() - t0)


def redis_publish_rate(env, payload_len, n):
    host, port = redis_addr(env)
    out = subprocess.run(["redis-benchmark", "-h", host, "-p", str(port), "-n", str(n),
                          "-P", "64", "-q", "PUBLISH", "ml:bench:ref", "x" * payload_len],
                         capture_output=True, text=True, check=True).stdout
    m = re.findall(r"([\d.]+) requests per second", out)
    return float(m[-1])


def percentile(vals, p):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(round(p / 100.0 * (len(vals) - 1))))]


def run_throughput(env, n, msgfile):
    topic = "bench.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    with open(msgfile, "rb") as f:
        subprocess.run(["kcat", "-P", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
                        "-X", "linger.ms=50", "-X", "batch.num.messages=10000"],
                       stdin=f, check=True)
    ref_kafka = kcat_consume_rate(env, topic, n)
    sample = open(msgfile).readline().strip()
    payload_len = 330 + len(sample) // 4  # a prediction payload is about this long
    ref_redis = redis_publish_rate(env, payload_len, min(n, 1000000))
    sub = Subscriber(env)  # a live subscriber, as in production
    eng = Engine(env, topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
    t0 = time.monotonic()
    cpu0 = proc_stats(eng.proc.pid)[0]
    eng.wait_ready()
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") >= n,
             600, "the engine to publish %d predictions" % n)
    wall = time.monotonic() - t0
    cpu, rss, hwm = proc_stats(eng.proc.pid)
    eng.stop()
    sub.close()
    rate = n / wall
    return {
        "messages": n, "engine_msgs_per_s": rate, "engine_wall_s": wall,
        "engine_cpu_us_per_msg": (cpu - cpu0) * 1e6 / n, "engine_rss_bytes": rss,
        "engine_peak_rss_bytes": hwm, "ref_kcat_consume_msgs_per_s": ref_kafka,
        "ref_redis_publish_per_s": ref_redis, "payload_bytes": payload_len,
        "fraction_of_smaller_limit": rate / min(ref_kafka, ref_redis),
    }


def run_latency(env, rate, count):
    topic = "bench.lat.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    sub = Subscriber(env)
    eng = Engine(env, topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
    eng.wait_ready()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write('{"input_id":"x","features":[[0.1,0.2,0.3]],"metadata":{"tenant":"t"}}\n')
        payload = f.name
    subprocess.run([SERVICES, "kafka-run", "org.apache.kafka.tools.ProducerPerformance",
                    "--topic", topic, "--num-records", str(count), "--throughput", str(rate),
                    "--payload-file", payload, "--producer-props",
                    "bootstrap.servers=" + env["KAFKA_BOOTSTRAP_SERVERS"], "linger.ms=0",
                    "acks=1"], env=env, check=True, stdout=subprocess.DEVNULL)
    wait_for(lambda: len(sub.payloads()) >= count, 120, "latency predictions")
    lat = [p["latency_ms"] for p in sub.payloads()]
    cpu, rss, hwm = proc_stats(eng.proc.pid)
    eng.stop()
    sub.close()
    os.unlink(payload)
    return {"rate": rate, "count": count, "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99), "max_ms": max(lat),
            "engine_rss_bytes": rss, "engine_peak_rss_bytes": hwm,
            "engine_cpu_us_per_msg": cpu * 1e6 / count}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--latency-rate", type=int, default=10000)
    ap.add_argument("--latency-count", type=int, default=100000)
    args = ap.parse_args()
    env, started = ensure_services("all")
    try:
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            msgfile = f.name
        make_messages(msgfile, args.messages)
        res = {"throughput": run_throughput(env, args.messages, msgfile),
               "latency": run_latency(env, args.latency_rate, args.latency_count),
               "machine": "%d cores, %s" % (os.cpu_count(), os.uname().release),
               "date": time.strftime("%Y-%m-%d %H:%M")}
        os.unlink(msgfile)
    finally:
        if started:
            stop_services(env, "all")
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "engine.json"), "w") as f:
        json.dump(res, f, indent=2)
    t, l = res["throughput"], res["latency"]
    print(json.dumps(res, indent=2))
    print("\nengine %.0f msg/s = %.2f of the smaller limit (kcat %.0f/s, redis-benchmark "
          "PUBLISH %.0f/s); %.2f us CPU/msg; RSS %.1f MB; p99 %.2f ms at %d msg/s"
          % (t["engine_msgs_per_s"], t["fraction_of_smaller_limit"],
             t["ref_kcat_consume_msgs_per_s"], t["ref_redis_publish_per_s"],
             t["engine_cpu_us_per_msg"], t["engine_peak_rss_bytes"] / 1e6, l["p99_ms"], l["rate"]))


if __name__ == "__main__":
    main()
