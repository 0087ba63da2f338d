#!/usr/bin/env python3
"""End-to-end latency of `mlstream up`: an event produced into the embedded
broker until a graphql-transport-ws subscriber receives its prediction.

mls-kafkapub produces --rate events/s (linger 0) carrying their send time in
metadata.sent_ns; mls-loadgen subscribes through the gateway and measures
receipt minus send time. The mock broker only answers an empty fetch after
fetch.wait.max.ms, so `up` sets it to 2 ms; this measures what that buys.
Writes bench/out/up_latency.json. Usage: bench/up_latency.py [--rate 200]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from mlshelpers import (MLSTREAM, free_port, http_get, metric_sum,  # noqa: E402
                        parse_metrics, wait_for)

LOADGEN = os.path.join(ROOT, "build", "bench", "mls-loadgen")
KAFKAPUB = os.path.join(ROOT, "build", "bench", "mls-kafkapub")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--redis", help="REDIS_URL to use instead of the in-process bus")
    args = ap.parse_args()
    kport, gport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    if args.redis:  # the gateway subscribes to this Redis instead of the bus
        env["REDIS_URL"] = args.redis
    env.update(ML_EMBEDDED_KAFKA_PORT=str(kport), GATEWAY_HOST="127.0.0.1",
               GATEWAY_PORT=str(gport), ML_LOG_LEVEL="warn")
    up = subprocess.Popen([MLSTREAM, "up"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_get("http://127.0.0.1:%d/healthz" % gport)[0] == 200, 30, "up")
        n = args.rate * args.seconds
        ws = subprocess.Popen([LOADGEN, "ws", "--gateway", "127.0.0.1:%d" % gport,
                               "--conns", "1", "--model", "lat", "--seconds", str(args.seconds + 30),
                               "--expect", str(n), "--quiet-ms", "5000", "--sample-every", "1",
],
                              stdout=subprocess.PIPE, text=True)
        assert json.loads(ws.stdout.readline())["ready"] == 1
        # warm-up: the first fetches after the group join are slow (seconds)
        # on the mock broker; measure the steady state after one round trip
        subprocess.run([KAFKAPUB, "--bootstrap", "127.0.0.1:%d" % kport, "--topic",
                        "ml.inference", "--model", "warm-up", "--rate", "100",
                        "--count", "20"], check=True, stdout=subprocess.DEVNULL)
        wait_for(lambda: metric_sum(parse_metrics(http_get(
            "http://127.0.0.1:%d/metrics" % gport)[1]),
            "ml_stream_inference_predictions_total") >= 20, 60, "the warm-up events")
        subprocess.run([KAFKAPUB, "--bootstrap", "127.0.0.1:%d" % kport, "--topic",
                        "ml.inference", "--model", "lat", "--rate", str(args.rate),
                        "--count", str(n)], check=True, stdout=subprocess.DEVNULL)
        res = json.loads(ws.communicate(timeout=120)[0].strip().splitlines()[-1])
    finally:
        up.terminate()
        up.wait(timeout=30)
    res.update(rate=args.rate, seconds=args.seconds)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "up_latency.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
