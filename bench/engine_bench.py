#!/usr/bin/env python3
"""Engine benchmark: throughput, CPU per message, memory and latency of
`mlstream engine` with the identity model on a real Kafka broker and Redis,
next to the limits measured in the same run:

  * kcat (librdkafka) consuming the same topic: its rate (first message to
    last, its fetch queue never full), and its CPU per message (ref_kcat_consume_cpu_us_per_msg), what librdkafka
    alone costs to fetch and hand over each message;
  * redis-benchmark pipelining PUBLISH of a payload of the same size.

Backlog: --messages one-row messages already in a 4-partition topic, one
engine, a live Redis subscriber; rate and engine CPU (/proc) from the first
prediction to the last (the group join is not in it), peak RSS (VmHWM).

Latency: a paced producer in C (mls-kafkapub; linger.ms --latency-linger-ms,
default 5 as in librdkafka and the Java client; each message stamped with
its send time in metadata.sent_ns) at --latency-rate messages/s into a
fresh topic. End to end is send time -> the prediction at a bare Redis
subscriber (`mls-loadgen sub`); the Kafka-only reference is send time ->
the same message at a plain librdkafka consumer of the topic (`mls-loadgen
kafka`) reading it at the same time; both receivers are the same C code.
The whole path adds a real `mlstream gateway` on the same channel and one
graphql-transport-ws subscriber of the model (`mls-loadgen ws`):
gateway_e2e_p99_ms, and its p99 minus the Kafka-only p99
(gateway_e2e_p99_minus_kafka_only_ms). The engine's own share is its
latency histogram.

Steady and idle: a fresh engine with its defaults (heartbeat every 5 s),
joined and warmed up, first left idle for --idle-seconds (the share of one
core it uses then: idle_engine_core_percent), then fed --steady-rate
messages/s (default 1,000) by the paced producer for --steady-seconds: its
CPU per message at that rate (steady_cpu_us_per_message_1000_per_s, named
after the rate), which includes whatever it spends on timers and per-batch
round trips at a rate where batches are tiny. The reference in the same
window: kcat consuming the same messages to /dev/null, librdkafka's own cost
at that rate (ref_kcat_steady_cpu_us_per_message_1000_per_s). Then the same
again with fetches that wait (fetch.wait.max.ms 20, fetch.min.bytes 1 MiB,
for the engine through KAFKA_CONF_* and for kcat alike): what the engine and
kcat cost when Kafka hands over ~20 messages at a time, each message waiting
up to 20 ms longer for it (steady_fetch_wait_20_ms_...).

Exactly-once (--exactly-once): the same backlog drained twice more by one
engine that also produces every prediction to a 4-partition output topic,
first at least once, then in Kafka transactions (ML_EXACTLY_ONCE=true, the
default ML_TRANSACTION_INTERVAL_MS); the summary gets both rates and their
ratio. The drain ends at the last prediction published: the last
transaction commits at most one interval later. Then the latency a Kafka
consumer of the predictions sees (send -> a read_committed kcat on the
output topic has it) at a steady --output-latency-rate, in both modes:
exactly once adds about one transaction interval.

Writes --out (default bench/out/engine.json): "summary", "machine", details.
Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set (bench/run, scripts/services
start), else starts the services itself.
The build benchmarked is $MLSTREAM_BUILD_DIR (default build/).
Usage: bench/engine_bench.py [--messages N] [--quick] [--exactly-once] [--out FILE]
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import cpu_ns, cpu_s, fail, memory, percentile  # noqa: E402
import mlshelpers  # noqa: E402
from mlshelpers import (CHANNEL, Engine, Subscriber, free_port, http_get, metric_sum,  # noqa: E402
                        redis_addr, stop_services, topic_create, wait_for)

# the latency run's producer linger.ms: librdkafka's and the Java client's default
LATENCY_LINGER_MS = 5


def make_messages(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write('{"model_id":"bench","input_id":"e%d","features":[[0.%03d,0.5,0.25]],'
                    '"metadata":{"tenant":"t%d"}}\n' % (i, i % 1000, i % 8))


def kcat_consume(env, topic, n):
    """librdkafka's own consume rate and CPU per message: kcat reading the
    topic, each message's offset to a pipe. The rate is taken from its first
    message to its last, as the engine's is (kcat's start-up, ~0.5 s of
    metadata and offset lookups, is not in it), with a fetch queue that
    holds the whole backlog: with librdkafka 2.0's defaults a full queue
    stops the fetcher for a whole second, which made this rate swing
    between ~0.5 and ~2.2 M msg/s from round to round until 6 December
    2026. The CPU is kcat's whole run (its start included, a few ms), from
    the rusage of this process' children, of which it is the only one
    reaped meanwhile."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(["kcat", "-C", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
                          "-o", "beginning", "-e", "-q", "-c", str(n), "-f", "%o\n",
                          "-X", "queued.min.messages=%d" % max(n, 100000),
                          "-X", "queued.max.messages.kbytes=2097151"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = None
    lines = 0
    while True:
        chunk = p.stdout.read1(1 << 20)
        if not chunk:
            break
        if first is None:
            first = time.monotonic()
        lines += chunk.count(b"\n")
    last = time.monotonic()
    err = p.stderr.read()
    if p.wait(timeout=600) != 0 or lines != n or first is None:
        fail("kcat read %d of %d messages (status %s): %s"
             % (lines, n, p.returncode, err.decode(errors="replace")[-300:]))
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return n / max(last - first, 1e-6), cpu * 1e6 / n


def redis_publish_rate(env, payload_len, n):
    host, port = redis_addr(env)
    out = subprocess.run(["redis-benchmark", "-h", host, "-p", str(port), "-n", str(n),
                          "-P", "64", "-q", "PUBLISH", "ml:bench:ref", "x" * payload_len],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    m = re.findall(r"([\d.]+) requests per second", out)
    if not m:
        fail("redis-benchmark printed no rate: %r" % out[-200:])
    return float(m[-1])


def run_throughput(env, n, msgfile, output=None, refs=True, txn_interval_ms=None):
    """Drains a backlog of n messages. output: None (Redis only),
    "at-least-once" or "exactly-once" (predictions also to an output topic,
    the latter in transactions). refs: measure the kcat and Redis limits."""
    topic = "bench.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    extra = {"ML_LOG_LEVEL": "warn"}
    if output:
        topic_create(env, topic + ".out", 4)
        extra["KAFKA_OUTPUT_TOPIC"] = topic + ".out"
    if output == "exactly-once":
        extra.update(ML_EXACTLY_ONCE="true", ML_ENGINE_ID="bench-" + topic)
        if txn_interval_ms is not None:
            extra["ML_TRANSACTION_INTERVAL_MS"] = str(txn_interval_ms)
    benchlib.produce_file(env, topic, msgfile)
    with open(msgfile) as f:
        sample = f.readline().strip()
    payload_len = 330 + len(sample) // 4  # a prediction payload is about this long
    ref_kafka = ref_redis = ref_kafka_cpu = None
    if refs:
        ref_kafka, ref_kafka_cpu = kcat_consume(env, topic, n)
        ref_redis = redis_publish_rate(env, payload_len, max(100000, min(n, 1000000)))
    sub = benchlib.BareSubscriber(env, CHANNEL, n)
    eng = Engine(env, topic=topic, extra_env=extra)
    rest = {"broker": benchlib.service_pid(env, "kafka"),
            "redis": benchlib.service_pid(env, "redis"), "subscriber": sub.proc.pid}
    rest = {k: pid for k, pid in rest.items() if pid}
    try:
        t_start = time.monotonic()
        eng.wait_ready()
        first = None
        while True:  # from the first prediction to the last: the join is not in it
            done = metric_sum(eng.metrics(), "ml_stream_inference_predictions_total")
            now = time.monotonic()
            if done and first is None:
                first = (now, done, cpu_s(eng.proc.pid))
                rest0 = {k: cpu_s(pid) for k, pid in rest.items()}
                machine0 = benchlib.machine_cpu()
            if done >= n:
                break
            if eng.proc.poll() is not None:
                fail("the engine exited (status %s):\n%s" % (eng.proc.returncode,
                                                             eng.output()[-1000:]))
            if now - t_start > 600:
                fail("the engine scored %d of %d messages in 600 s" % (done, n))
            time.sleep(0.02)
        cpu = cpu_s(eng.proc.pid) - first[2]
        rest_cpu = {k: cpu_s(pid) - rest0[k] for k, pid in rest.items()}
        machine1 = benchlib.machine_cpu()
        mem = memory(eng.proc.pid)
        txns = metric_sum(eng.metrics(), "ml_stream_kafka_transactions_total",
                          result="committed")
        heard = sub.received()
    finally:
        eng.stop()
        sub.close()
    if heard < n:
        print("warning: the subscriber received %d of %d predictions (it fell behind "
              "and Redis dropped it?)" % (heard, n), file=sys.stderr)
    scored = n - first[1]
    if scored < n // 2:
        fail("the backlog drained before the first metrics scrape; use more --messages")
    wall = now - first[0]
    rate = scored / wall
    # What the rest of the pipeline (the broker serving the fetches, Redis
    # publishing to the subscriber, the subscriber) spent per message in
    # the drain, and the drain rate at which that alone would keep every
    # core busy: no engine, however cheap, drains faster on this machine.
    rest_us = {k: v * 1e6 / scored for k, v in rest_cpu.items()}
    whole = len(rest_us) == 3
    ceiling = (os.cpu_count() or 1) * 1e6 / sum(rest_us.values()) if whole else None
    return {
        "rest_cpu_us_per_msg": rest_us, "drain_ceiling_msgs_per_s": ceiling,
        "drain_over_ceiling": rate / ceiling if ceiling else None,
        "machine_busy_fraction": (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
        "messages": n, "measured_messages": scored, "engine_msgs_per_s": rate,
        "subscriber_received": heard,
        "output": output, "transactions_committed": txns,
        "engine_wall_s": wall, "engine_wall_with_start_s": now - t_start,
        "engine_cpu_us_per_msg": cpu * 1e6 / scored, "engine_rss_bytes": mem["VmRSS"],
        "engine_peak_rss_bytes": mem["VmHWM"], "ref_kcat_consume_msgs_per_s": ref_kafka,
        "ref_kcat_consume_cpu_us_per_msg": ref_kafka_cpu,
        "ref_redis_publish_per_s": ref_redis, "payload_bytes": payload_len,
        "fraction_of_smaller_limit": rate / min(ref_kafka, ref_redis) if refs else None,
    }


class StampedSubscriber(Subscriber):
    """A Redis subscriber that records when each message arrived."""

    def __init__(self, env):
        self.stamped = []
        super().__init__(env)

    def _run(self):
        try:
            while True:
                msg = self._read()
                if msg[0] == b"message":
                    self.stamped.append((time.time_ns(), msg[2]))
        except (EOFError, OSError):
            pass


class KcatReader:
    """A bare Kafka consumer (kcat, unbuffered) on the topic; records when each
    message arrived."""

    def __init__(self, env, topic, committed=False):
        self.stamped = []
        iso = ["-X", "isolation.level=read_committed"] if committed else []
        self.proc = subprocess.Popen(
            ["kcat", "-C", "-u", "-q", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
             "-o", "beginning", "-f", "%s\n"] + iso,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for line in self.proc.stdout:
            self.stamped.append((time.time_ns(), line))

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class PacedProducer:
    """A librdkafka producer (linger 0) sending messages at a steady rate,
    each stamped with its send time (metadata.sent_ns). Started and warmed up
    by the caller before the measurement, so that its metadata fetch and
    connection are not in it."""

    def __init__(self, env, topic):
        self.kp = benchlib.KafkaProducer(env["KAFKA_BOOTSTRAP_SERVERS"], topic)

    def send(self, input_id):
        self.kp.produce(b'{"model_id":"lat","input_id":"%s","features":[[0.1,0.2,0.3]],'
                        b'"metadata":{"tenant":"t","sent_ns":%d}}'
                        % (input_id.encode(), time.time_ns()))

    def paced(self, rate, count, prefix="l"):
        start = time.monotonic()
        sent = 0
        while sent < count:
            due = min(count, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                self.send("%s%d" % (prefix, sent))
                sent += 1
            time.sleep(0.0002)
        return count / (time.monotonic() - start)

    def close(self):
        self.kp.close()


def lat_summary(ms):
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else None, "count": len(ms)}


def start_gateway(env):
    """(process, port): `mlstream gateway` on 127.0.0.1 reading the run's
    Redis channel, once /readyz says it is subscribed."""
    port = free_port()
    genv = {k: v for k, v in env.items() if not k.startswith("GATEWAY_")}
    genv.update({"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port),
                 "ML_LOG_LEVEL": "warn"})
    proc = subprocess.Popen([mlshelpers.MLSTREAM, "gateway"], env=genv,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready():
        if proc.poll() is not None:
            fail("mlstream gateway exited %s" % proc.returncode)
        try:
            return http_get("http://127.0.0.1:%d/readyz" % port)[0] == 200
        except OSError:
            return False
    wait_for(ready, 30, "the gateway's /readyz")
    return proc, port


def run_latency(env, rate, count, loadgen, kafkapub, linger_ms):
    """Send time -> prediction at a Redis subscriber, at a GraphQL
    subscriber through a gateway, and (the reference) at a plain Kafka
    consumer of the same topic; all three receivers are mls-loadgen, so
    they measure alike. The producer is mls-kafkapub (C, paced, linger_ms)."""
    topic = "bench.lat.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    warm_sub = StampedSubscriber(env)
    # no heartbeats on the channel: the subscriber stops when it goes quiet
    eng = Engine(env, topic=topic, extra_env={"ML_LOG_LEVEL": "warn",
                                              "ML_HEARTBEAT_INTERVAL_MS": "3600000"})
    kafka = prod = sub = ws = gw = None
    seconds = str(count // rate + 120)
    try:
        eng.wait_ready()
        prod = PacedProducer(env, topic)
        # warm-up: messages through the producer and the engine before
        # measuring (connections, metadata, group join)
        polls, sent = [0], [0]

        def warmed():
            if warm_sub.stamped:
                return True
            polls[0] += 1
            if polls[0] % 20 == 1:
                prod.send("warm%d" % polls[0])
                sent[0] += 1
            return False
        wait_for(warmed, 60, "a warm-up message through Kafka and the engine")
        # then the same rate for a while: the first seconds of a fresh topic
        # and consumers are slower than the steady state measured here
        nwarm = sent[0] + min(count, 3 * rate)
        prod.paced(rate, min(count, 3 * rate), prefix="w")
        wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total")
                 >= nwarm, 60, "the warm-up predictions")
        prod.close()
        prod = None
        warm_sub.close()
        # the Kafka-only reference: a plain consumer of the topic, counting
        # the measured messages (input ids "l<n>") once it has read the
        # warm-up
        kafka = subprocess.Popen([loadgen, "kafka", "--bootstrap", env["KAFKA_BOOTSTRAP_SERVERS"],
                                  "--topic", topic, "--prefix", "l", "--seconds", seconds,
                                  "--expect", str(count), "--sample-every", "1"],
                                 stdout=subprocess.PIPE, text=True)
        if json.loads(kafka.stdout.readline()).get("ready") != 1:
            fail("mls-loadgen kafka did not get ready")
        host, port = redis_addr(env)
        # the end-to-end receiver: a bare Redis subscriber in C, latency
        # from metadata.sent_ns of each prediction
        sub = subprocess.Popen([loadgen, "sub", "--redis", "%s:%d" % (host, port),
                                "--channel", CHANNEL, "--seconds", seconds,
                                "--quiet-ms", "3000", "--sample-every", "1"],
                               stdout=subprocess.PIPE, text=True)
        if json.loads(sub.stdout.readline()).get("ready") != 1:
            fail("mls-loadgen sub did not get ready")
        # and the whole path: a gateway on the same channel and one
        # graphql-transport-ws subscriber of the model (mls-loadgen ws)
        gw = start_gateway(env)
        ws = subprocess.Popen([loadgen, "ws", "--gateway", "127.0.0.1:%d" % gw[1],
                               "--conns", "1", "--model", "lat", "--expect", str(count),
                               "--seconds", seconds, "--quiet-ms", "3000",
                               "--sample-every", "1"],
                              stdout=subprocess.PIPE, text=True)
        if json.loads(ws.stdout.readline()).get("ready") != 1:
            fail("mls-loadgen ws did not get ready")
        wait_for(lambda: re.search(r"^ml_stream_gateway_subscriptions [1-9]",
                                   http_get("http://127.0.0.1:%d/metrics" % gw[1])[1], re.M),
                 30, "the gateway's subscription")
        time.sleep(0.5)
        cpu0 = cpu_s(eng.proc.pid)
        pub = subprocess.run([kafkapub, "--bootstrap", env["KAFKA_BOOTSTRAP_SERVERS"],
                              "--topic", topic, "--model", "lat", "--rate", str(rate),
                              "--count", str(count), "--linger-ms", str(linger_ms)],
                             capture_output=True, text=True, timeout=count // rate + 120)
        if pub.returncode != 0:
            fail("mls-kafkapub failed: %s" % pub.stderr[-1000:])
        achieved = count / json.loads(pub.stdout)["seconds"]
        ko = json.loads(kafka.communicate(timeout=200)[0].strip().splitlines()[-1])
        e2e = json.loads(sub.communicate(timeout=200)[0].strip().splitlines()[-1])
        via_gw = json.loads(ws.communicate(timeout=200)[0].strip().splitlines()[-1])
        cpu = cpu_s(eng.proc.pid) - cpu0
        mem = memory(eng.proc.pid)
        m = eng.metrics()
    finally:
        for p in (kafka, sub, ws):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        if gw:
            gw[0].terminate()
            gw[0].wait(30)
        if prod:
            prod.close()
        eng.stop()
        warm_sub.close()
    if ko.get("samples", 0) < count:
        fail("the Kafka consumer saw %s of %d messages" % (ko.get("samples"), count))
    if e2e.get("samples", 0) < count * 0.99:
        fail("the Redis subscriber saw %s of %d predictions" % (e2e.get("samples"), count))
    if via_gw.get("samples", 0) < count * 0.99:
        fail("the gateway's subscriber saw %s of %d predictions" % (via_gw.get("samples"), count))
    # the engine's own share: its latency histogram (receipt -> hand-off to Redis)
    return {"rate": rate, "achieved_rate": achieved, "count": count,
            "end_to_end": {"p50_ms": e2e["p50_ms"], "p99_ms": e2e["p99_ms"],
                           "max_ms": e2e["max_ms"], "count": e2e["samples"]},
            "through_gateway": {"p50_ms": via_gw["p50_ms"], "p99_ms": via_gw["p99_ms"],
                                "max_ms": via_gw["max_ms"], "count": via_gw["samples"]},
            "kafka_only": {"p50_ms": ko["p50_ms"], "p99_ms": ko["p99_ms"],
                           "max_ms": ko["max_ms"], "count": ko["samples"]},
            "producer_linger_ms": linger_ms,
            "engine_latency_mean_ms": 1e3 * metric_sum(m, "ml_stream_inference_latency_seconds_sum")
            / max(1, metric_sum(m, "ml_stream_inference_latency_seconds_count")),
            "engine_rss_bytes": mem["VmRSS"], "engine_peak_rss_bytes": mem["VmHWM"],
            "engine_cpu_us_per_msg": cpu * 1e6 / count}


# The fetch settings of the steady run's second pass: each fetch waits up
# to this long for a megabyte, so at a low rate it returns a few dozen
# messages instead of one.
STEADY_FETCH_WAIT_MS = 20
STEADY_FETCH_MIN_BYTES = 1 << 20


def fetch_settings(fetch_wait_ms):
    """librdkafka properties for fetches that wait fetch_wait_ms (none for None)."""
    if fetch_wait_ms is None:
        return {}
    return {"fetch.wait.max.ms": str(fetch_wait_ms),
            "fetch.min.bytes": str(STEADY_FETCH_MIN_BYTES)}


def run_steady(env, rate, seconds, idle_seconds, fetch_wait_ms=None):
    """The engine's cost when there is little to do, with its defaults (the
    heartbeat too): the CPU of a core it takes at idle (joined, nothing to
    consume) over idle_seconds (skipped when 0), then its CPU per message
    while a paced producer sends `rate` messages/s for `seconds`. The
    reference, in the same window: kcat consuming the same messages (to
    /dev/null), librdkafka's own cost per message at that rate. With
    fetch_wait_ms, both consumers' fetches wait for more (fetch_settings())."""
    topic = "bench.steady.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    fetch = fetch_settings(fetch_wait_ms)
    extra = {"ML_LOG_LEVEL": "warn", "ML_HEARTBEAT_INTERVAL_MS": "5000"}
    extra.update({"KAFKA_CONF_" + k.upper().replace(".", "_"): v for k, v in fetch.items()})
    eng = Engine(env, topic=topic, extra_env=extra)
    prod = kcat = None
    try:
        eng.wait_ready()
        kcat = subprocess.Popen(
            ["kcat", "-C", "-q", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
             "-o", "end", "-f", "%o\n"] + [a for k, v in fetch.items() for a in ("-X", "%s=%s" % (k, v))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prod = PacedProducer(env, topic)
        # warm-up: a second at the rate (connections, metadata, group join)
        prod.paced(rate, rate, prefix="w")
        wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total")
                 >= rate, 60, "the warm-up predictions")
        time.sleep(2)  # the warm-up's commits and replies settle
        if kcat.poll() is not None:
            fail("kcat (the reference consumer) exited with status %d" % kcat.returncode)
        # nanoseconds (schedstat): the idle span's CPU is a few 10 ms ticks
        cpu0, t0 = cpu_ns(eng.proc.pid), time.monotonic()
        time.sleep(idle_seconds)
        idle_cpu, idle_wall = (cpu_ns(eng.proc.pid) - cpu0) / 1e9, time.monotonic() - t0
        count = rate * seconds
        cpu0, threads0 = cpu_ns(eng.proc.pid), benchlib.thread_cpu_s(eng.proc.pid)
        kcat0 = cpu_ns(kcat.pid)
        achieved = prod.paced(rate, count)
        # the last messages are scored within milliseconds (a fetch's
        # wait later with fetch_wait_ms); no /metrics scrape (the engine's
        # CPU too) until the CPU is read
        time.sleep(0.5 + (fetch_wait_ms or 0) / 1000)
        cpu = (cpu_ns(eng.proc.pid) - cpu0) / 1e9
        kcat_cpu = (cpu_ns(kcat.pid) - kcat0) / 1e9
        threads = benchlib.thread_cpu_s(eng.proc.pid)
        wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total")
                 >= rate + count, 60, "the %d steady-rate predictions" % count)
        mem = memory(eng.proc.pid)
    finally:
        if kcat:
            kcat.terminate()
            kcat.wait(30)
        if prod:
            prod.close()
        eng.stop()
    return {"rate": rate, "achieved_rate": achieved, "count": count,
            "fetch_settings": fetch,
            "engine_cpu_us_per_msg": cpu * 1e6 / count,
            "ref_kcat_cpu_us_per_msg": kcat_cpu * 1e6 / count,
            # where it goes: the engine thread ("mlstream") and librdkafka's
            # (rdk:broker1 fetches; rdk:broker-1 talks to the group
            # coordinator, commits included)
            "engine_threads_cpu_us_per_msg": {
                name: round((s - threads0.get(name, 0)) * 1e6 / count, 1)
                for name, s in sorted(threads.items()) if s > threads0.get(name, 0)},
            "engine_core_percent": 100 * cpu / (count / achieved + 0.5),
            "idle_seconds": idle_wall, "idle_cpu_s": idle_cpu,
            "idle_core_percent": 100 * idle_cpu / idle_wall,
            "engine_peak_rss_bytes": mem["VmHWM"]}


def run_output_latency(env, rate, count, output, txn_interval_ms=None):
    """Send time -> a read_committed consumer of the output topic has the
    prediction, at a steady rate: what a Kafka consumer of the predictions
    waits, at least once or exactly once (there: until the transaction
    commits)."""
    topic = "bench.olat.%s" % uuid.uuid4().hex[:8]
    topic_create(env, topic, 4)
    topic_create(env, topic + ".out", 4)
    extra = {"ML_LOG_LEVEL": "warn", "KAFKA_OUTPUT_TOPIC": topic + ".out"}
    if output == "exactly-once":
        extra.update(ML_EXACTLY_ONCE="true", ML_ENGINE_ID="bench-" + topic)
        if txn_interval_ms is not None:
            extra["ML_TRANSACTION_INTERVAL_MS"] = str(txn_interval_ms)
    eng = Engine(env, topic=topic, extra_env=extra)
    reader = prod = None
    try:
        eng.wait_ready()
        reader = KcatReader(env, topic + ".out", committed=True)
        prod = PacedProducer(env, topic)
        polls = [0]

        def warmed():
            if reader.stamped:
                return True
            polls[0] += 1
            if polls[0] % 20 == 1:
                prod.send("warm%d" % polls[0])
            return False
        wait_for(warmed, 60, "a warm-up prediction on the output topic")
        prod.paced(rate, min(count, rate), prefix="w")
        achieved = prod.paced(rate, count)
        wait_for(lambda: sum(1 for _, l in reader.stamped if b'"input_id":"l' in l) >= count,
                 120, "%d predictions on the output topic" % count)
    finally:
        if prod:
            prod.close()
        if reader:
            reader.close()
        eng.stop()
    ms = []
    for t, line in reader.stamped:
        msg = json.loads(line)
        if msg["input_id"].startswith("l"):
            ms.append((t - msg["metadata"]["sent_ns"]) / 1e6)
    return {"output": output, "rate": rate, "achieved_rate": achieved, "count": count,
            "latency": lat_summary(ms)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--latency-rate", type=int, default=10000)
    ap.add_argument("--latency-count", type=int, default=100000)
    ap.add_argument("--latency-linger-ms", type=float, default=LATENCY_LINGER_MS,
                    help="the latency producer's linger.ms (default 5, librdkafka's own; "
                         "0 sends each message in a request of its own)")
    ap.add_argument("--exactly-once", action="store_true",
                    help="also drain the backlog with an output topic, at least once and "
                         "then with ML_EXACTLY_ONCE=true, and report the ratio")
    ap.add_argument("--output-latency-rate", type=int, default=2000,
                    help="with --exactly-once: the steady rate (msg/s) at which the "
                         "output topic's latency is measured in both modes")
    ap.add_argument("--output-latency-count", type=int, default=10000)
    ap.add_argument("--transaction-interval-ms", type=int, default=None,
                    help="ML_TRANSACTION_INTERVAL_MS for the exactly-once drain "
                         "(default: the engine's)")
    ap.add_argument("--steady-rate", type=int, default=1000,
                    help="the low steady rate (msg/s) of the CPU-per-message run")
    ap.add_argument("--steady-seconds", type=int, default=30)
    ap.add_argument("--idle-seconds", type=int, default=30)
    benchlib.add_common_args(ap, "engine")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.latency_count = min(args.messages, 50000), min(args.latency_count, 10000)
        args.output_latency_count = min(args.output_latency_count, 2000)
        args.steady_seconds, args.idle_seconds = min(args.steady_seconds, 10), min(args.idle_seconds, 10)
    result = benchlib.Result("engine", args)
    binary = benchlib.need_binary("mlstream")
    # the engines run are the build's mlstream ($MLSTREAM_BIN wins, as in
    # bench/run), not tests/integration's default build/mlstream
    mlshelpers.MLSTREAM = os.environ.get("MLSTREAM_BIN") or binary
    loadgen = benchlib.need_binary("bench/mls-loadgen")
    kafkapub = benchlib.need_binary("bench/mls-kafkapub")
    benchlib.need_command("kcat", "apt-get install kcat")
    benchlib.need_command("redis-benchmark", "apt-get install redis-tools")
    if args.messages < 10000:
        fail("--messages %d is too few for a rate; use 10000 or more" % args.messages)
    env, started = benchlib.services("all")
    msgfile = None
    try:
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="mls-engine-bench.") as f:
            msgfile = f.name
        make_messages(msgfile, args.messages)
        t = run_throughput(env, args.messages, msgfile)
        alo = eos = None
        if args.exactly_once:
            alo = run_throughput(env, args.messages, msgfile, "at-least-once", refs=False)
            eos = run_throughput(env, args.messages, msgfile, "exactly-once", refs=False,
                                 txn_interval_ms=args.transaction_interval_ms)
            olat = {mode: run_output_latency(env, args.output_latency_rate,
                                             args.output_latency_count, mode,
                                             args.transaction_interval_ms)
                    for mode in ("at-least-once", "exactly-once")}
        lat = run_latency(env, args.latency_rate, args.latency_count, loadgen, kafkapub,
                          args.latency_linger_ms)
        steady = run_steady(env, args.steady_rate, args.steady_seconds, args.idle_seconds)
        steady_wait = run_steady(env, args.steady_rate, args.steady_seconds, 0,
                                 STEADY_FETCH_WAIT_MS)
    finally:
        if msgfile:
            os.unlink(msgfile)
        if started:
            stop_services(env, "all")
    e2e, ko = lat["end_to_end"], lat["kafka_only"]
    summary = {
        "engine_drain_msgs_per_s": round(t["engine_msgs_per_s"]),
        "ref_kcat_consume_msgs_per_s": round(t["ref_kcat_consume_msgs_per_s"]),
        "ref_redis_publish_per_s": round(t["ref_redis_publish_per_s"]),
        "drain_over_smaller_limit": round(t["fraction_of_smaller_limit"], 3),
        "engine_cpu_us_per_msg": round(t["engine_cpu_us_per_msg"], 3),
        "ref_kcat_consume_cpu_us_per_msg": round(t["ref_kcat_consume_cpu_us_per_msg"], 3),
        "backlog_over_kcat_cpu": round(t["engine_cpu_us_per_msg"]
                                       / t["ref_kcat_consume_cpu_us_per_msg"], 2),
        "engine_peak_rss_mb": round(t["engine_peak_rss_bytes"] / 1e6, 1),
        "drain_machine_busy_pct": round(100 * t["machine_busy_fraction"], 1),
        "latency_rate_msgs_per_s": args.latency_rate,
        "e2e_p50_ms": e2e["p50_ms"] and round(e2e["p50_ms"], 3),
        "e2e_p99_ms": e2e["p99_ms"] and round(e2e["p99_ms"], 3),
        "e2e_max_ms": e2e["max_ms"] and round(e2e["max_ms"], 2),
        "kafka_only_p50_ms": ko["p50_ms"] and round(ko["p50_ms"], 3),
        "kafka_only_p99_ms": ko["p99_ms"] and round(ko["p99_ms"], 3),
        "engine_latency_mean_ms": round(lat["engine_latency_mean_ms"], 3),
        "steady_rss_mb": round(lat["engine_peak_rss_bytes"] / 1e6, 1),
        "steady_cpu_us_per_msg": round(lat["engine_cpu_us_per_msg"], 2),
        "steady_cpu_us_per_message_%d_per_s" % args.steady_rate:
            round(steady["engine_cpu_us_per_msg"], 2),
        "ref_kcat_steady_cpu_us_per_message_%d_per_s" % args.steady_rate:
            round(steady["ref_kcat_cpu_us_per_msg"], 2),
        "steady_over_kcat_cpu": round(steady["engine_cpu_us_per_msg"]
                                      / max(steady["ref_kcat_cpu_us_per_msg"], 1e-9), 2),
        "steady_fetch_wait_%d_ms_cpu_us_per_message_%d_per_s"
        % (STEADY_FETCH_WAIT_MS, args.steady_rate):
            round(steady_wait["engine_cpu_us_per_msg"], 2),
        "ref_kcat_steady_fetch_wait_%d_ms_cpu_us_per_message_%d_per_s"
        % (STEADY_FETCH_WAIT_MS, args.steady_rate):
            round(steady_wait["ref_kcat_cpu_us_per_msg"], 2),
        "idle_engine_core_percent": round(steady["idle_core_percent"], 3),
    }
    if t["drain_ceiling_msgs_per_s"]:
        summary.update({
            "rest_cpu_us_per_msg_%s" % k: round(v, 3)
            for k, v in t["rest_cpu_us_per_msg"].items()})
        summary.update({
            "drain_ceiling_msgs_per_s": round(t["drain_ceiling_msgs_per_s"]),
            "drain_over_ceiling": round(t["drain_over_ceiling"], 3),
            "ceiling_over_smaller_limit": round(
                t["drain_ceiling_msgs_per_s"] / min(t["ref_kcat_consume_msgs_per_s"],
                                                    t["ref_redis_publish_per_s"]), 3)})
    if e2e["p99_ms"] and ko["p99_ms"]:
        summary["e2e_over_kafka_only_p99"] = round(e2e["p99_ms"] / ko["p99_ms"], 2)
    gwl = lat["through_gateway"]
    summary.update({
        "gateway_e2e_p50_ms": gwl["p50_ms"] and round(gwl["p50_ms"], 3),
        "gateway_e2e_p99_ms": gwl["p99_ms"] and round(gwl["p99_ms"], 3),
    })
    if gwl["p99_ms"] is not None and ko["p99_ms"] is not None:
        summary["gateway_e2e_p99_minus_kafka_only_ms"] = round(gwl["p99_ms"] - ko["p99_ms"], 3)
    details = {"throughput": t, "latency": lat, "steady": steady,
               "steady_fetch_wait": steady_wait}
    if eos:
        summary.update({
            "output_alo_drain_msgs_per_s": round(alo["engine_msgs_per_s"]),
            "output_eos_drain_msgs_per_s": round(eos["engine_msgs_per_s"]),
            "eos_over_alo_drain": round(eos["engine_msgs_per_s"] / alo["engine_msgs_per_s"], 3),
            "output_alo_cpu_us_per_msg": round(alo["engine_cpu_us_per_msg"], 3),
            "output_eos_cpu_us_per_msg": round(eos["engine_cpu_us_per_msg"], 3),
            "eos_transactions_committed": eos["transactions_committed"],
            "output_alo_p50_ms": round(olat["at-least-once"]["latency"]["p50_ms"], 2),
            "output_alo_p99_ms": round(olat["at-least-once"]["latency"]["p99_ms"], 2),
            "output_eos_p50_ms": round(olat["exactly-once"]["latency"]["p50_ms"], 2),
            "output_eos_p99_ms": round(olat["exactly-once"]["latency"]["p99_ms"], 2),
        })
        details.update(throughput_output_alo=alo, throughput_output_eos=eos,
                       output_latency=olat)
    result.write(summary, binary, env, **details)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    benchlib.run_main(main)
