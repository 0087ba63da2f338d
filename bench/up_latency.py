#!/usr/bin/env python3
"""End-to-end latency of `mlstream up`: an event produced into the embedded
broker until a graphql-transport-ws subscriber receives its prediction.

mls-kafkapub produces --rate events/s (linger 0) carrying their send time in
metadata.sent_ns; mls-loadgen subscribes through the gateway and measures
receipt minus send time. The mock broker only answers an empty fetch after
fetch.wait.max.ms, so `up` sets it to 2 ms; this measures what that buys.
Writes --out (default bench/out/up_latency.json): "summary", "machine",
details. Usage: bench/up_latency.py [--rate 200] [--seconds 10] [--quick]
[--out FILE]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import fail  # noqa: E402
from mlshelpers import (MLSTREAM, free_port, http_get, metric_sum,  # noqa: E402
                        parse_metrics, wait_for)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--redis", help="REDIS_URL to use instead of the in-process bus")
    benchlib.add_common_args(ap, "up_latency")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 3)
    result = benchlib.Result("up", args)
    binary = benchlib.need_binary("mlstream")
    loadgen = benchlib.need_binary("bench/mls-loadgen")
    kafkapub = benchlib.need_binary("bench/mls-kafkapub")
    kport, gport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    if args.redis:  # the gateway subscribes to this Redis instead of the bus
        env["REDIS_URL"] = args.redis
    env.update(ML_EMBEDDED_KAFKA_PORT=str(kport), GATEWAY_HOST="127.0.0.1",
               GATEWAY_PORT=str(gport), ML_LOG_LEVEL="warn")
    ws = None
    up = subprocess.Popen([MLSTREAM, "up"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_get("http://127.0.0.1:%d/healthz" % gport)[0] == 200, 30, "up")
        n = args.rate * args.seconds
        ws = subprocess.Popen([loadgen, "ws", "--gateway", "127.0.0.1:%d" % gport,
                               "--conns", "1", "--model", "lat", "--seconds", str(args.seconds + 30),
                               "--expect", str(n), "--quiet-ms", "5000", "--sample-every", "1",
],
                              stdout=subprocess.PIPE, text=True)
        if json.loads(ws.stdout.readline() or "{}").get("ready") != 1:
            fail("mls-loadgen ws could not subscribe through the gateway")
        # warm-up: the first fetches after the group join are slow (seconds)
        # on the mock broker; measure the steady state after one round trip
        subprocess.run([kafkapub, "--bootstrap", "127.0.0.1:%d" % kport, "--topic",
                        "ml.inference", "--model", "warm-up", "--rate", "100",
                        "--count", "20"], check=True, stdout=subprocess.DEVNULL, timeout=120)
        wait_for(lambda: metric_sum(parse_metrics(http_get(
            "http://127.0.0.1:%d/metrics" % gport)[1]),
            "ml_stream_inference_predictions_total") >= 20, 60, "the warm-up events")
        subprocess.run([kafkapub, "--bootstrap", "127.0.0.1:%d" % kport, "--topic",
                        "ml.inference", "--model", "lat", "--rate", str(args.rate),
                        "--count", str(n)], check=True, stdout=subprocess.DEVNULL,
                       timeout=args.seconds + 120)
        res = json.loads(ws.communicate(timeout=120)[0].strip().splitlines()[-1])
    finally:
        if ws and ws.poll() is None:
            ws.kill()
            ws.wait()
        up.terminate()
        up.wait(timeout=30)
    res.update(rate=args.rate, seconds=args.seconds)
    if not res.get("samples"):
        fail("the subscriber received no events through `mlstream up`")
    summary = {"rate_msgs_per_s": args.rate, "events": res.get("samples"),
               "p50_ms": res.get("p50_ms"), "p99_ms": res.get("p99_ms"),
               "max_ms": res.get("max_ms")}
    result.write(summary, binary, env, result=res)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    benchlib.run_main(main)
