#!/usr/bin/env python3
"""Redis Cluster benchmark: the fan-out tier on the 3-master cluster of
`scripts/services start cluster` against one Redis, in the same round, with
the same backlog, the same two engines and the same gateway load.

One 4-partition topic is filled once with --messages one-row messages spread
evenly over --models model ids (message i is model i mod M). Then, each with
a fresh consumer group of two engines (identity model, a 100 ms group
heartbeat so the rebalance is short) and one fresh gateway whose single
graphql-transport-ws client (mls-loadgen ws) watches the first model:

  one-redis   one Redis, ML_STREAM_REDIS_CHANNEL_MODE=per-model (PUBLISH to
              ml:stream:inference:{<model>});
  cluster     REDIS_CLUSTER=true, per-model: SPUBLISH on the master that owns
              each model's slot; the gateway SSUBSCRIBEs to the watched
              model's channel (and the control channel) only;
  single      one Redis, the single channel (the default): every engine
              publishes every prediction to ml:stream:inference and the
              gateway receives all of them.

1. Aggregate publish rate: predictions per second summed over the two
   engines (ml_stream_inference_predictions_total), from the first sample
   at which each engine holds two partitions and predictions flow, to the
   last prediction of the backlog. cluster / one-redis is the figure.
   With it: the engines' CPU per prediction (/proc) and Redis' CPU per
   prediction (INFO cpu, summed over every node of the deployment: 6 for
   the cluster, masters and replicas, 1 for one Redis).
   Pure-Redis reference, same round: redis-benchmark -P 64 PUBLISHing
   payloads of a prediction's size to one node, and redis-benchmark
   --cluster -P 64 SPUBLISHing them to the cluster (its {tag} placeholder
   puts each client's channel on the master the client talks to).
2. Gateway inbound bytes: the bytes the kernel received on the gateway's
   TCP connections to Redis (tcp_info bytes_received, from `ss -tinp`), over
   the drain, divided by the predictions published: cluster (1 of M models
   watched) / single (the whole stream). The count of predictions the
   gateway read (ml_stream_gateway_payloads_total) and the client's
   deliveries are checked: the client must receive every prediction of its
   model in every mode. With the single channel the gateway falls behind
   the burst (tens of MB), so Redis' Pub/Sub output-buffer limit is lifted
   on the single Redis for that mode (and put back after); how long after
   the last prediction published each gateway had read its last is
   reported too.

On a small machine the cluster need not be faster: its 6 redis-servers, the
broker, the engines and the gateway share the cores. The figures carry the
machine stamp; compare the ratios of one round.

Writes --out (default bench/out/cluster.json). Uses KAFKA_BOOTSTRAP_SERVERS,
REDIS_URL and REDIS_CLUSTER_URL / REDIS_CLUSTER_PORTS when set (bench/run,
scripts/services start all cluster), else starts what is missing itself.
Usage: bench/cluster_bench.py [--messages N] [--models M] [--quick] [--out FILE]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
import mlshelpers  # noqa: E402
from benchlib import cpu_s, fail  # noqa: E402
from mlshelpers import (CHANNEL, Engine, RedisConn, cluster_command,  # noqa: E402
                        cluster_ok, cluster_ports, cluster_slot_owners, free_port,
                        http_get, metric_sum, parse_metrics, redis_addr, stop_services,
                        topic_create, wait_for)

MODES = ("one-redis", "cluster", "single")


def model_id(i):
    return "cb-%02d" % i


def fill(env, topic, n, models):
    """n one-row messages, message i for model i mod models."""
    with tempfile.NamedTemporaryFile("w", delete=False, prefix="mls-cluster-bench.") as f:
        for i in range(n):
            f.write('{"model_id":"%s","input_id":"c%d","features":[[0.%03d,0.5,0.25]],'
                    '"metadata":{"tenant":"t%d"}}\n' % (model_id(i % models), i, i % 1000, i % 8))
        path = f.name
    try:
        benchlib.produce_file(env, topic, path)
        with open(path) as f:
            sample = f.readline().strip()
    finally:
        os.unlink(path)
    return sample


# --- the deployment of one mode --------------------------------------------------------


def mode_env(env, mode):
    """REDIS_URL and the channel settings engines and gateway share in mode."""
    if mode == "cluster":
        return {"REDIS_URL": env["REDIS_CLUSTER_URL"], "REDIS_CLUSTER": "true",
                "ML_STREAM_REDIS_CHANNEL_MODE": "per-model"}
    out = {"REDIS_URL": env["REDIS_URL"], "REDIS_CLUSTER": "false"}
    out["ML_STREAM_REDIS_CHANNEL_MODE"] = "per-model" if mode == "one-redis" else "single"
    return out


def redis_ports(env, mode):
    """Every redis-server of the mode's deployment."""
    return cluster_ports(env) if mode == "cluster" else [redis_addr(env)[1]]


def redis_cpu_s(ports):
    """{port: used_cpu_user + used_cpu_sys in seconds} of each node."""
    out = {}
    for p in ports:
        c = RedisConn(p)
        try:
            info = c.command("INFO", "cpu").decode()
        finally:
            c.close()
        out[p] = sum(float(m) for m in re.findall(r"^used_cpu_(?:user|sys):([\d.]+)", info,
                                                  re.M))
    return out


def redis_roles(ports):
    """{port: "master" | "slave"} (INFO replication)."""
    out = {}
    for p in ports:
        c = RedisConn(p)
        try:
            info = c.command("INFO", "replication").decode()
        finally:
            c.close()
        m = re.search(r"^role:(\w+)", info, re.M)
        out[p] = m.group(1) if m else "?"
    return out


class PubsubLimitRaised:
    """Lifts Redis' client-output-buffer-limit for Pub/Sub clients on one
    node while in the block, then puts the old one back. With the single
    channel the gateway reads every prediction of the burst; at the rates
    here it falls tens of MB behind the engines, and the default limit
    (32 MB) would disconnect it in the middle of the measurement."""

    def __init__(self, port):
        self.port = port
        self.old = None

    def _cmd(self, *args):
        c = RedisConn(self.port)
        try:
            return c.command(*args)
        finally:
            c.close()

    def __enter__(self):
        cur = self._cmd("CONFIG", "GET", "client-output-buffer-limit")[1].decode().split()
        for i in range(0, len(cur), 4):
            if cur[i] == "pubsub":
                self.old = " ".join(cur[i:i + 4])
        self._cmd("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0")
        return self

    def __exit__(self, *exc):
        if self.old:
            self._cmd("CONFIG", "SET", "client-output-buffer-limit", self.old)
        return False


def tcp_received(pid, ports):
    """Bytes the kernel received so far on pid's TCP connections to any of
    ports (tcp_info bytes_received, `ss -tinp`): {(local, peer): bytes}."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    conns, key = {}, None
    want = "pid=%d," % pid
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():  # a socket: State Recv-Q Send-Q Local Peer Process
            f = line.split()
            key = None
            if len(f) >= 6 and want in line and f[4].rsplit(":", 1)[-1].isdigit() \
                    and int(f[4].rsplit(":", 1)[1]) in ports:
                key = (f[3], f[4])
        elif key:
            m = re.search(r"\bbytes_received:(\d+)", line)
            conns[key] = int(m.group(1)) if m else 0
            key = None
    return conns


def read_bytes(pid):
    """rchar of /proc/<pid>/io: every byte the process read, sockets and
    files (a cross-check of the TCP figure; it also counts the WebSocket
    client's frames and metrics requests, which are small here)."""
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Gateway:
    """`mlstream gateway` on 127.0.0.1 and a free port, in one mode."""

    def __init__(self, env, mode):
        self.port = free_port()
        genv = {k: v for k, v in env.items() if not k.startswith("GATEWAY_")}
        genv.update(mode_env(env, mode))
        genv.update({"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(self.port),
                     "ML_LOG_LEVEL": "warn"})
        self.log = tempfile.NamedTemporaryFile("w+", prefix="mlstream-clbench-gw.",
                                               suffix=".log")
        self.proc = subprocess.Popen([mlshelpers.MLSTREAM, "gateway"], env=genv, stdout=self.log,
                                     stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                fail("the %s gateway exited (status %s): %s" % (
                    mode, self.proc.returncode, self.output()[-500:]))
            return http_get(self.url("/readyz"))[0] == 200
        try:
            wait_for(ready, 60, "the %s gateway's /readyz" % mode)
        except BaseException:
            self.stop()
            raise

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def metrics(self, timeout=60):
        """The gateway's metrics; asks again while it does not answer (busy
        reading a burst on a loaded machine, the 5 s request timeout
        passes)."""
        deadline = time.monotonic() + timeout
        while True:
            status, text = http_get(self.url("/metrics"))
            if status == 200:
                return parse_metrics(text)
            if self.proc.poll() is not None:
                fail("the gateway exited (status %s): %s" % (self.proc.returncode,
                                                             self.output()[-500:]))
            if time.monotonic() > deadline:
                fail("the gateway's /metrics answered %s for %d s" % (status, timeout))
            time.sleep(0.2)

    def predictions_read(self):
        return metric_sum(self.metrics(), "ml_stream_gateway_payloads_total",
                          type="prediction")

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class WsClient:
    """One mls-loadgen ws client on the gateway, watching one model."""

    def __init__(self, loadgen, gw, model, expect, seconds):
        self.proc = subprocess.Popen(
            [loadgen, "ws", "--gateway", "127.0.0.1:%d" % gw.port, "--conns", "1",
             "--model", model, "--seconds", str(seconds), "--expect", str(expect)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines, self.errors = [], []
        self.threads = [threading.Thread(target=self._read, args=(s, into), daemon=True)
                        for s, into in ((self.proc.stdout, self.lines),
                                        (self.proc.stderr, self.errors))]
        for t in self.threads:
            t.start()

        def ready():
            if any(l.startswith('{"ready"') for l in self.lines):
                return True
            if self.proc.poll() is not None:
                fail("mls-loadgen ws exited %s before it was ready: %s" % (
                    self.proc.returncode, " / ".join(self.errors[-3:])))
            return False
        wait_for(ready, 60, "the WebSocket client to be ready")

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.strip())

    def result(self):
        for line in reversed(self.lines):
            if line.startswith('{"conns"'):
                return json.loads(line)
        return None

    def close(self, timeout=30):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self.threads:
            t.join(5)
        return self.result()


# --- one mode's drain ------------------------------------------------------------------


def sample(engines):
    """(time, predictions summed, partitions each, engine CPU seconds summed)."""
    t = time.monotonic()
    preds, parts = 0, []
    for e in engines:
        m = e.metrics()
        preds += metric_sum(m, "ml_stream_inference_predictions_total")
        parts.append(int(metric_sum(m, "ml_stream_kafka_assigned_partitions")))
    return t, preds, parts, sum(cpu_s(e.proc.pid) for e in engines)


def run_mode(env, mode, topic, n, models, loadgen):
    watched = model_id(0)
    want_watched = len(range(0, n, models))  # messages of the watched model
    nodes = redis_ports(env, mode)
    roles = redis_roles(nodes)
    menv = mode_env(env, mode)
    gw = Gateway(env, mode)
    client = None
    engines = []
    try:
        client = WsClient(loadgen, gw, watched, want_watched, 600)
        per_model = mode != "single"
        wait_for(lambda: metric_sum(gw.metrics(), "ml_stream_gateway_subscriptions") >= 1
                 and (not per_model or
                      metric_sum(gw.metrics(), "ml_stream_gateway_redis_channels") >= 2),
                 30, "the gateway subscribed to %s" % watched)
        gw_pid = gw.proc.pid
        tcp0 = tcp_received(gw_pid, nodes)
        if not tcp0:
            fail("ss shows no TCP connection of the gateway (pid %d) to Redis ports %s"
                 % (gw_pid, nodes))
        rchar0 = read_bytes(gw_pid)
        gwm0 = gw.metrics()
        gw_preds0 = metric_sum(gwm0, "ml_stream_gateway_payloads_total", type="prediction")
        gw_cpu0 = cpu_s(gw_pid)
        group = "clbench-%s-%s" % (mode, uuid.uuid4().hex[:8])
        extra = dict(menv, ML_LOG_LEVEL="warn", KAFKA_CONF_HEARTBEAT_INTERVAL_MS="100")
        t_launch = time.monotonic()
        engines = [Engine(env, topic=topic, group=group,
                          extra_env=dict(extra, ML_ENGINE_ID="%s-%d" % (group, i)))
                   for i in range(2)]
        for e in engines:
            e.wait_ready()
        start = None
        while True:
            s = sample(engines)
            if start is None and s[1] > 0 and s[2] == [2, 2]:
                start = s
                rcpu0 = redis_cpu_s(nodes)
            if s[1] >= n:
                end = s
                rcpu1 = redis_cpu_s(nodes)
                break
            for e in engines:
                if e.proc.poll() is not None:
                    fail("a %s engine exited (status %s): %s" % (
                        mode, e.proc.returncode, e.output()[-800:]))
            if s[0] - t_launch > 600:
                fail("%s: the engines scored %d of %d messages in 600 s" % (mode, s[1], n))
            time.sleep(0.05)
        if start is None or start[1] > n * 0.5:
            fail("%s: %s of the backlog was scored before each engine held two partitions; "
                 "use more --messages" % (mode, "all" if start is None else
                                          "%d%%" % (100 * start[1] / n)))
        if end[2] != [2, 2]:
            fail("%s: a rebalance during the measurement: partitions %s" % (mode, end[2]))
        scored = end[1] - start[1]
        wall = end[0] - start[0]
        # the gateway has read what it will read: every prediction in single
        # mode, the watched model's with per-model channels
        want_gw = n if mode == "single" else want_watched
        try:
            wait_for(lambda: gw.predictions_read() - gw_preds0 >= want_gw, 120,
                     "the %s gateway to read %d predictions" % (mode, want_gw))
        except AssertionError:
            got = gw.predictions_read() - gw_preds0
            fail("%s: the gateway read %d of the %d predictions it should (lost its "
                 "subscription? Redis' client-output-buffer-limit pubsub): %s"
                 % (mode, got, want_gw, gw.output()[-500:]))
        t_gw_done = time.monotonic()
        res = client.close(timeout=60)
        client = None
        time.sleep(0.2)
        tcp1 = tcp_received(gw_pid, nodes)
        rchar1 = read_bytes(gw_pid)
        gwm1 = gw.metrics()
        gw_cpu = cpu_s(gw_pid) - gw_cpu0
        inbound = sum(v - tcp0.get(k, 0) for k, v in tcp1.items())
        gw_preds = metric_sum(gwm1, "ml_stream_gateway_payloads_total",
                              type="prediction") - gw_preds0
        resubscribes = metric_sum(gwm1, "ml_stream_gateway_redis_resubscribes_total") - \
            metric_sum(gwm0, "ml_stream_gateway_redis_resubscribes_total")
        if resubscribes:
            fail("%s: the gateway subscribed again %d time(s) during the drain (see its log): "
                 "%s" % (mode, resubscribes, gw.output()[-500:]))
        gw_hb = metric_sum(gwm1, "ml_stream_gateway_payloads_total", type="heartbeat") - \
            metric_sum(gwm0, "ml_stream_gateway_payloads_total", type="heartbeat")
        engine_preds = end[1]
    finally:
        for e in engines:
            try:
                e.stop()
            except Exception:
                e.kill()
        if client:
            client.proc.kill()
            client.close()
        gw.stop()
    deliveries = (res or {}).get("deliveries")
    if deliveries is None or deliveries < want_watched:
        fail("%s: the client watching %s received %s of its model's %d predictions"
             % (mode, watched, deliveries, want_watched))
    return {
        "mode": mode, "redis_nodes": len(nodes), "messages": n,
        "engine_predictions": engine_preds,
        "measured_messages": scored, "before_steady_state": start[1], "wall_s": wall,
        "msgs_per_s": scored / wall,
        "engine_cpu_us_per_msg": (end[3] - start[3]) * 1e6 / scored,
        "redis_cpu_us_per_msg": sum(rcpu1[p] - rcpu0[p] for p in nodes) * 1e6 / scored,
        "redis_cpu_us_per_msg_by_node": {
            "%d %s" % (p, roles.get(p, "?")): round((rcpu1[p] - rcpu0[p]) * 1e6 / scored, 3)
            for p in nodes},
        "gateway": {
            "watched_model": watched, "watched_predictions": want_watched,
            "client_deliveries": deliveries,
            "read_all_after_last_published_s": t_gw_done - end[0],
            "predictions_read": gw_preds, "heartbeats_read": gw_hb,
            "redis_connections": len(tcp1),
            "tcp_bytes_received": inbound,
            "bytes_per_published_prediction": inbound / n,
            "rchar_delta": (rchar1 - rchar0) if rchar0 is not None and rchar1 is not None
            else None,
            "cpu_s": gw_cpu,
        },
    }


# --- references: redis-benchmark ---------------------------------------------------------


def redis_benchmark(argv, n):
    out = subprocess.run(["redis-benchmark", "-n", str(n), "-P", "64", "-q"] + argv,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        fail("redis-benchmark %s failed: %s" % (" ".join(argv[:4]),
                                                (out.stderr or out.stdout)[-300:]))
    m = re.findall(r"([\d.]+) requests per second", out.stdout)
    if not m:
        fail("redis-benchmark printed no rate: %r" % out.stdout[-200:])
    return float(m[-1])


def references(env, payload_len, n):
    payload = "x" * payload_len
    host, port = redis_addr(env)
    one = redis_benchmark(["-h", host, "-p", str(port), "PUBLISH", "ml:bench:ref", payload], n)
    seed = cluster_ports(env)[0]
    cl = redis_benchmark(["-h", "127.0.0.1", "-p", str(seed), "--cluster", "SPUBLISH",
                          "ml:bench:ref:{tag}", payload], n)
    return {"one_node_publish_per_s": one, "cluster_spublish_per_s": cl, "requests": n,
            "payload_bytes": payload_len}


def shard_spread(env, models):
    """{master port: models whose channel it owns}."""
    owners = cluster_slot_owners(env)
    seed = cluster_ports(env)[0]
    spread = {}
    for i in range(models):
        slot = int(cluster_command(seed, "CLUSTER", "KEYSLOT",
                                   "%s:{%s}" % (CHANNEL, model_id(i))))
        port = next(o for (lo, hi), o in owners.items() if lo <= slot <= hi)
        spread.setdefault(str(port), []).append(model_id(i))
    return spread


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=300000,
                    help="backlog size (default 300000)")
    ap.add_argument("--models", type=int, default=50, help="model ids (default 50)")
    ap.add_argument("--ref-requests", type=int, default=1000000,
                    help="requests of each redis-benchmark reference (default 1000000)")
    benchlib.add_common_args(ap, "cluster")
    args = ap.parse_args()
    if args.quick:
        args.messages = min(args.messages, 60000)
        args.ref_requests = min(args.ref_requests, 200000)
    if args.models < 2 or args.messages < 20 * args.models:
        fail("--models must be 2 or more and --messages at least 20 per model")
    result = benchlib.Result("cluster", args)
    binary = benchlib.need_binary("mlstream")
    # engines and gateway: the build's mlstream ($MLSTREAM_BIN wins, as in
    # the integration helpers)
    mlshelpers.MLSTREAM = os.environ.get("MLSTREAM_BIN") or binary
    loadgen = benchlib.need_binary("bench/mls-loadgen")
    benchlib.need_command("kcat", "apt-get install kcat")
    benchlib.need_command("redis-benchmark", "apt-get install redis-tools")
    benchlib.need_command("ss", "apt-get install iproute2")
    env, started = benchlib.services("all")
    cl_started = False
    try:
        env, cl_started = benchlib.cluster_services(env, owned=started)
        wait_for(lambda: cluster_ok(env), 60, "every cluster node to say cluster_state:ok")
        topic = "bench.cluster.%s" % uuid.uuid4().hex[:8]
        topic_create(env, topic, 4)
        sample_msg = fill(env, topic, args.messages, args.models)
        payload_len = 330 + len(sample_msg) // 4  # about a prediction's size
        refs = references(env, payload_len, args.ref_requests)
        print(json.dumps({"references": refs}), flush=True)
        modes = {}
        for mode in MODES:
            if mode == "single":
                with PubsubLimitRaised(redis_addr(env)[1]):
                    modes[mode] = run_mode(env, mode, topic, args.messages, args.models,
                                           loadgen)
            else:
                modes[mode] = run_mode(env, mode, topic, args.messages, args.models, loadgen)
            print(json.dumps(modes[mode]), flush=True)
        spread = shard_spread(env, args.models)
    finally:
        if cl_started:
            stop_services(env, "cluster")
        if started:
            stop_services(env, "all")
    one, cl, single = modes["one-redis"], modes["cluster"], modes["single"]

    def bpp(m):
        return round(m["gateway"]["bytes_per_published_prediction"], 2)
    summary = {
        "cluster_publish_msgs_per_s": round(cl["msgs_per_s"]),
        "one_redis_publish_msgs_per_s": round(one["msgs_per_s"]),
        "cluster_over_one_redis": round(cl["msgs_per_s"] / one["msgs_per_s"], 3),
        "single_channel_publish_msgs_per_s": round(single["msgs_per_s"]),
        "cluster_engine_cpu_us_per_msg": round(cl["engine_cpu_us_per_msg"], 3),
        "one_redis_engine_cpu_us_per_msg": round(one["engine_cpu_us_per_msg"], 3),
        "cluster_redis_cpu_us_per_msg": round(cl["redis_cpu_us_per_msg"], 3),
        "one_redis_redis_cpu_us_per_msg": round(one["redis_cpu_us_per_msg"], 3),
        "ref_one_node_publish_per_s": round(refs["one_node_publish_per_s"]),
        "ref_cluster_spublish_per_s": round(refs["cluster_spublish_per_s"]),
        "ref_cluster_over_one_node": round(refs["cluster_spublish_per_s"]
                                           / refs["one_node_publish_per_s"], 3),
        "gateway_bytes_per_prediction_cluster": bpp(cl),
        "gateway_bytes_per_prediction_one_redis_per_model": bpp(one),
        "gateway_bytes_per_prediction_single": bpp(single),
        "gateway_bytes_cluster_over_single": round(
            cl["gateway"]["tcp_bytes_received"] / single["gateway"]["tcp_bytes_received"], 4),
        "gateway_cpu_ms_cluster": round(cl["gateway"]["cpu_s"] * 1e3, 1),
        "gateway_cpu_ms_single": round(single["gateway"]["cpu_s"] * 1e3, 1),
        "gateway_behind_s_cluster": round(cl["gateway"]["read_all_after_last_published_s"], 2),
        "gateway_behind_s_single": round(single["gateway"]["read_all_after_last_published_s"],
                                         2),
    }
    result.write(summary, binary, env, messages=args.messages, models=args.models,
                 engines=2, mlstream=mlshelpers.MLSTREAM, watched_model=model_id(0),
                 models_per_master=spread,
                 references=refs, modes=modes)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    benchlib.run_main(main)
