#!/usr/bin/env python3
"""Soak run (outside the normal suite): engine and gateway against the real
broker and Redis at a steady rate for --minutes (default 10), with
WebSocket subscribers attached. Samples resident memory of both processes
every 10 s after a warm-up and reports start, end and growth; a leak shows
as growth well beyond noise. Writes --out (default bench/out/soak.json):
"summary", "machine", the samples. bench/run runs it only with --soak.

Usage: bench/soak.py [--minutes 10] [--rate 2000] [--quick] [--out FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from mlshelpers import (MLSTREAM, stop_services, SERVICES, Engine,  # noqa: E402
                        free_port, http_get, metric_sum, parse_metrics, topic_create,
                        wait_for)


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=30, help="seconds before sampling")
    benchlib.add_common_args(ap, "soak")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.warmup = min(args.minutes, 0.5), min(args.warmup, 5)
    result = benchlib.Result("soak", args)
    binary = benchlib.need_binary("mlstream")
    loadgen = benchlib.need_binary("bench/mls-loadgen")
    env, started = benchlib.services("all")
    procs = []
    try:
        topic = "soak.%s" % uuid.uuid4().hex[:8]
        topic_create(env, topic, 4)
        eng = Engine(env, topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
        procs.append(eng.proc)
        gport = free_port()
        genv = dict(env, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(gport), ML_LOG_LEVEL="warn")
        gw = subprocess.Popen([MLSTREAM, "gateway"], env=genv)
        procs.append(gw)
        eng.wait_ready()
        wait_for(lambda: http_get("http://127.0.0.1:%d/readyz" % gport)[0] == 200, 30, "gateway")
        seconds = int(args.minutes * 60)
        ws = subprocess.Popen([loadgen, "ws", "--gateway", "127.0.0.1:%d" % gport,
                               "--conns", str(args.subscribers), "--model", "soak",
                               "--seconds", str(seconds + 60)], stdout=subprocess.PIPE, text=True)
        procs.append(ws)
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write('{"model_id":"soak","input_id":"s","features":[[0.1,0.2,0.3]],'
                    '"metadata":{"tenant":"t"}}\n')
            payload = f.name
        prod = subprocess.Popen([SERVICES, "kafka-run", "org.apache.kafka.tools.ProducerPerformance",
                                 "--topic", topic,
                                 "--num-records", str(int(args.rate * (seconds + args.warmup + 10))),
                                 "--throughput", str(args.rate), "--payload-file", payload,
                                 "--producer-props", "bootstrap.servers=" + env["KAFKA_BOOTSTRAP_SERVERS"]],
                                env=env, stdout=subprocess.DEVNULL)
        procs.append(prod)
        time.sleep(args.warmup)  # caches, batch buffers and queues reach size
        samples = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            samples.append({"t": round(time.time()), "engine_rss": rss(eng.proc.pid),
                            "gateway_rss": rss(gw.pid)})
            time.sleep(10)
        m = eng.metrics()
        gm = parse_metrics(http_get("http://127.0.0.1:%d/metrics" % gport)[1])
        res = {
            "minutes": args.minutes, "rate": args.rate, "subscribers": args.subscribers,
            "engine_rss_start": samples[0]["engine_rss"], "engine_rss_end": samples[-1]["engine_rss"],
            "gateway_rss_start": samples[0]["gateway_rss"], "gateway_rss_end": samples[-1]["gateway_rss"],
            "predictions": metric_sum(m, "ml_stream_inference_predictions_total"),
            "gateway_sent": metric_sum(gm, "ml_stream_gateway_messages_sent_total"),
            "samples": samples,
        }
        summary = {"minutes": args.minutes, "rate_msgs_per_s": args.rate,
                   "subscribers": args.subscribers, "predictions": res["predictions"],
                   "gateway_deliveries": res["gateway_sent"]}
        for who in ("engine", "gateway"):
            a, b = res[who + "_rss_start"], res[who + "_rss_end"]
            vals = [x[who + "_rss"] for x in samples]
            summary[who + "_rss_start_mb"] = round(a / 1e6, 2)
            summary[who + "_rss_end_mb"] = round(b / 1e6, 2)
            summary[who + "_rss_max_mb"] = round(max(vals) / 1e6, 2)
            summary[who + "_rss_growth_pct"] = round(100.0 * (b - a) / a, 2)
        result.write(summary, binary, env, **res)
        print(json.dumps({k: v for k, v in res.items() if k != "samples"}, indent=2))
        for who in ("engine", "gateway"):
            a, b = res[who + "_rss_start"], res[who + "_rss_end"]
            print("%s RSS %.1f MB -> %.1f MB (%+.1f%%)" % (who, a / 1e6, b / 1e6, 100.0 * (b - a) / a))
        os.unlink(payload)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if started:
            stop_services(env, "all")


if __name__ == "__main__":
    benchlib.run_main(main)
