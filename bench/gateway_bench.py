#!/usr/bin/env python3
"""Gateway benchmark: deliveries per second, memory per idle connection,
latency and CPU per delivery of a real `mlstream gateway` fed from a real
Redis, next to references measured in the same run.

All load goes over loopback (127.0.0.1), every phase is bounded in time.
Load comes from mls-loadgen (bench/loadgen.c):

  * deliveries/s to 1, 100 and 1,000 subscribers of one model
    (mls-loadgen ws), two ways:
      - burst: a fixed number of payloads published as fast as the publisher
        goes, measured from the first to the last delivery (the gateway
        drains a backlog, i.e. runs flat out);
      - sustained: the publisher at a fixed rate for a few seconds, stepped
        up (x2, then bisected) to the highest rate at which every delivery
        arrives, nothing is dropped and the gateway does not fall behind
        (its last delivery within --max-lag-ms of a bare subscriber's);
    with a bare Redis subscriber (mls-loadgen sub) reading the same channel
    in every run, and Redis' own fan-out to the same number of bare
    subscribers as the reference for the fan-out;
  * resident memory per idle connection: --idle-conns (10,000) initialised
    graphql-transport-ws connections without a subscription on a fresh
    gateway: (RSS with them - RSS before) / connections;
  * latency from PUBLISH (the publisher's clock) to receipt at
    --latency-rate (10,000) messages/s, through the gateway and at a bare
    Redis subscriber, and per message the gateway's receipt minus the bare
    subscriber's;
  * gateway CPU per delivery from /proc/<pid>/stat.

Writes bench/out/gateway.json. Starts its own Redis (scripts/services)
unless REDIS_URL is set; either way it lifts Redis' pubsub output-buffer
limit for the run (so that a gateway that falls behind a burst is measured,
not disconnected) and restores it afterwards. Needs a build (scripts/test or cmake + ninja):
mlstream and bench/mls-loadgen from --build (default build/, or
$MLSTREAM_BUILD_DIR). --profile also records `perf` profiles of the burst
runs (bench/out/gateway-perf-*.txt).

Usage: bench/gateway_bench.py [--build DIR] [--quick] [--profile]
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from mlshelpers import (ensure_services, free_port, stop_services, http_get, metric_sum,  # noqa: E402
                        parse_metrics, redis_addr, wait_for)

TICKS = os.sysconf("SC_CLK_TCK")
MODEL = "bench-model"
FANOUTS = (1, 100, 1000)

# --- processes -----------------------------------------------------------


def cpu_s(pid):
    """utime + stime of a live process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_split(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def machine_jiffies():
    """(busy, total) jiffies of the whole machine (every process)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def busy_since(j0):
    b1, t1 = machine_jiffies()
    return (b1 - j0[0]) / max(1, t1 - j0[1])


def sockstat_mem_pages():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                m = re.search(r"mem (\d+)", line)
                return int(m.group(1)) if m else 0
    return 0


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


class Load:
    """One mls-loadgen process; its stdout lines are collected."""
    running = []

    def __init__(self, loadgen, args):
        self.args = [loadgen] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        Load.running = [l for l in Load.running if l.proc.poll() is None] + [self]
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_ready(self, timeout):
        def ready():
            if any(l.startswith('{"ready"') for l in self.lines):
                return True
            if self.proc.poll() is not None:
                self.thread.join(2)
                raise AssertionError("%s exited %s before it was ready: %s"
                                     % (self.args[1], self.proc.returncode, self.lines))
            return False
        wait_for(ready, timeout, "mls-loadgen %s to be ready" % self.args[1])

    def result(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.thread.join(5)
        for line in reversed(self.lines):
            if line.startswith("{") and not line.startswith('{"ready"'):
                return json.loads(line)
        raise AssertionError("no result from %s: %s" % (" ".join(self.args), self.lines))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Gateway:
    """A real `mlstream gateway` on 127.0.0.1 and a free port."""

    def __init__(self, mlstream, env, channel, max_conns):
        self.port = free_port()
        genv = {k: v for k, v in env.items() if not k.startswith("GATEWAY_")}
        genv.update({
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_MAX_CONNECTIONS": str(max_conns),
            "ML_STREAM_REDIS_CHANNEL": channel,
            "ML_LOG_LEVEL": "warn",
        })
        self.log = tempfile.NamedTemporaryFile("w+", prefix="mlstream-gwbench.", suffix=".log")
        self.proc = subprocess.Popen([mlstream, "gateway"], env=genv, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("gateway exited %s:\n%s" % (self.proc.returncode, self.output()))
            return http_get(self.url("/readyz"))[0] == 200
        wait_for(ready, 30, "gateway /readyz")

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def metrics(self):
        status, text = http_get(self.url("/metrics"))
        assert status == 200, status
        return parse_metrics(text)

    def metric(self, name, **labels):
        return metric_sum(self.metrics(), name, **labels)

    def wait_subscriptions(self, n, timeout=60):
        wait_for(lambda: self.metric("ml_stream_gateway_subscriptions") == n, timeout,
                 "%d subscriptions on the gateway" % n)

    def wait_connections(self, n, timeout=60):
        wait_for(lambda: metric_sum(self.metrics(), "ml_stream_gateway_connections") == n,
                 timeout, "%d connections on the gateway" % n)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- Redis ---------------------------------------------------------------


def redis_password(env):
    u = urllib.parse.urlparse(env["REDIS_URL"])
    return urllib.parse.unquote(u.password) if u.password else None


def redis_cli(env, *args):
    r = subprocess.run(["redis-cli", "-u", env["REDIS_URL"], "--no-auth-warning", *args],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


def redis_version(env):
    m = re.search(r"redis_version:(\S+)", redis_cli(env, "INFO", "server") or "")
    return m.group(1) if m else None


def redis_pid(env):
    """Redis' pid when it runs on this machine (for its CPU time)."""
    info = redis_cli(env, "INFO", "server") or ""
    m = re.search(r"process_id:(\d+)", info)
    if m and os.path.exists("/proc/%s/stat" % m.group(1)):
        return int(m.group(1))
    return None


# --- the measurements ----------------------------------------------------


class Bench:
    def __init__(self, args, env):
        self.args = args
        self.env = env
        build = args.build
        self.mlstream = os.environ.get("MLSTREAM_BIN", os.path.join(build, "mlstream"))
        self.loadgen = os.path.join(build, "bench", "mls-loadgen")
        for p in (self.mlstream, self.loadgen):
            if not os.access(p, os.X_OK):
                sys.exit("gateway_bench: %s is missing; build first (scripts/test, or cmake "
                         "+ ninja with --build DIR)" % p)
        if os.path.getmtime(self.loadgen) < os.path.getmtime(os.path.join(HERE, "loadgen.c")):
            sys.exit("gateway_bench: %s is older than bench/loadgen.c; rebuild it "
                     "(ninja -C %s mls-loadgen)" % (self.loadgen, build))
        host, port = redis_addr(env)
        self.redis = "%s:%d" % (host, port)
        self.auth = redis_password(env)
        self.channel = "ml:bench:gateway:%s" % uuid.uuid4().hex[:8]
        self.redis_pid = redis_pid(env)

    def lg(self, mode, *args):
        a = [mode]
        if mode in ("pub", "sub"):
            a += ["--redis", self.redis, "--channel", self.channel]
            if self.auth:
                a += ["--auth", self.auth]
        return Load(self.loadgen, a + list(args))

    def publish(self, count, rate):
        p = self.lg("pub", "--count", count, "--rate", rate, "--model", MODEL)
        return p.result(timeout=count / max(rate, 1) + 120)

    def ws(self, gw, n, expect, quiet_ms, cap_s, *extra):
        gw.wait_subscriptions(0)  # the previous client's are gone
        w = self.lg("ws", "--gateway", gw.addr, "--conns", n, "--model", MODEL,
                    "--seconds", cap_s, "--expect", expect, "--quiet-ms", quiet_ms,
                    "--pid", gw.pid, *extra)
        w.wait_ready(90)
        gw.wait_subscriptions(n)
        return w

    def sub(self, n, expect, quiet_ms, cap_s, *extra):
        s = self.lg("sub", "--conns", n, "--expect", expect, "--quiet-ms", quiet_ms,
                    "--seconds", cap_s, *extra)
        s.wait_ready(60)
        return s

    # -- deliveries per second --------------------------------------------

    def burst(self, gw, n, count, perf_out=None):
        """count payloads published as fast as possible to n subscribers."""
        cap = 120
        w = self.ws(gw, n, n * count, 3000, cap)
        s = self.sub(1, count, 3000, cap)
        m0 = gw.metrics()
        c0, j0 = cpu_split(gw.pid), machine_jiffies()
        perf = None
        if perf_out:
            perf = subprocess.Popen(["perf", "record", "-q", "-F", "999", "--call-graph",
                                     "dwarf,16384", "-p", str(gw.pid), "-o", perf_out + ".data"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        pub = self.publish(count, 10 ** 8)
        wr = w.result(cap + 60)
        sr = s.result(cap + 60)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            with open(perf_out + ".txt", "w") as f:
                for view in ("--no-children", "--children"):
                    f.flush()
                    subprocess.run(["perf", "report", "-i", perf_out + ".data", "--stdio",
                                    view, "-g", "none", "--percent-limit", "1",
                                    "--sort", "dso,sym"], stdout=f, stderr=subprocess.DEVNULL)
            os.unlink(perf_out + ".data")
        c1, busy = cpu_split(gw.pid), busy_since(j0)
        m1 = gw.metrics()
        cpu = (c1[0] - c0[0]) + (c1[1] - c0[1])
        d = wr["received"]
        return {
            "subscribers": n, "published": pub["published"], "publish_rate": pub["rate"],
            "expected_deliveries": n * count, "deliveries": d,
            "dropped": metric_sum(m1, "ml_stream_gateway_messages_dropped_total")
            - metric_sum(m0, "ml_stream_gateway_messages_dropped_total"),
            "deliveries_per_s": wr["rate"], "window_s": wr["window_s"],
            "messages_per_s_into_gateway": wr["rate"] / n,
            "gateway_cpu_s": cpu, "gateway_user_s": c1[0] - c0[0], "gateway_sys_s": c1[1] - c0[1],
            "gateway_cpu_us_per_delivery": cpu * 1e6 / d if d else None,
            "deliveries_per_gateway_core_s": d / cpu if cpu else None,
            "client_cpu_s": wr["cpu_s"],
            "latency_p50_ms": wr["p50_ms"], "latency_p99_ms": wr["p99_ms"],
            "bare_sub_received": sr["received"], "bare_sub_rate": sr["rate"],
            "machine_busy": busy, "dead": wr["dead"],
        }

    def redis_fanout(self, n, count):
        """Reference: Redis' own fan-out to n bare subscribers."""
        cap = 120
        s = self.sub(n, n * count, 3000, cap, "--sample-every", 1 if n == 1 else 64)
        r0 = cpu_s(self.redis_pid) if self.redis_pid else None
        j0 = machine_jiffies()
        pub = self.publish(count, 10 ** 8)
        sr = s.result(cap + 60)
        out = {"subscribers": n, "published": pub["published"], "publish_rate": pub["rate"],
               "deliveries": sr["received"], "deliveries_per_s": sr["rate"],
               "client_cpu_s": sr["cpu_s"], "latency_p50_ms": sr["p50_ms"],
               "latency_p99_ms": sr["p99_ms"], "machine_busy": busy_since(j0)}
        if r0 is not None:
            rc = cpu_s(self.redis_pid) - r0
            out["redis_cpu_s"] = rc
            out["redis_cpu_us_per_delivery"] = rc * 1e6 / max(1, sr["received"])
        return out

    def step(self, gw, n, rate, secs):
        """rate payloads/s for secs to n subscribers: did the gateway keep up?"""
        count = max(1, int(rate * secs))
        cap = secs + 60
        w = self.ws(gw, n, n * count, 1500, cap)
        s = self.sub(1, count, 1500, cap)
        m0 = gw.metrics()
        c0, j0, t0 = cpu_s(gw.pid), machine_jiffies(), time.monotonic()
        pub = self.publish(count, rate)
        wr = w.result(cap + 60)
        sr = s.result(cap + 60)
        cpu, busy = cpu_s(gw.pid) - c0, busy_since(j0)
        wall = time.monotonic() - t0
        m1 = gw.metrics()
        dropped = metric_sum(m1, "ml_stream_gateway_messages_dropped_total") - \
            metric_sum(m0, "ml_stream_gateway_messages_dropped_total")
        lag = (wr["last_ns"] - sr["last_ns"]) / 1e9 if wr["received"] and sr["received"] else None
        d = wr["received"]
        res = {
            "rate": rate, "published": pub["published"], "publish_rate": pub["rate"],
            "expected": n * count, "deliveries": d, "dropped": dropped,
            "deliveries_per_s": wr["rate"], "client_cores": wr["cpu_s"] / max(wr["window_s"], 1e-9),
            "lag_s": lag, "latency_p50_ms": wr["p50_ms"], "latency_p99_ms": wr["p99_ms"],
            "gateway_cpu_s": cpu, "gateway_cores": cpu / wall,
            "gateway_cpu_us_per_delivery": cpu * 1e6 / d if d else None,
            "bare_sub_received": sr["received"], "bare_sub_p99_ms": sr["p99_ms"],
            "client_cpu_s": wr["cpu_s"], "machine_busy": busy,
        }
        res["publisher_bound"] = pub["rate"] < 0.95 * rate
        res["ok"] = (d == n * count and dropped == 0 and not res["publisher_bound"]
                     and lag is not None and lag <= self.args.max_lag_ms / 1000.0)
        print("  %5d subscribers x %8.0f msg/s: %s  %.0f deliveries/s, lag %s s, p99 %.1f ms, "
              "gateway %.2f cores, dropped %d%s" % (
                  n, rate, "ok  " if res["ok"] else "FAIL", res["deliveries_per_s"],
                  "%.3f" % lag if lag is not None else "-", wr["p99_ms"], res["gateway_cores"],
                  dropped, " (publisher-bound)" if res["publisher_bound"] else ""), flush=True)
        return res

    def sustained(self, gw, n):
        """Highest rate that keeps up: x2 from the start, then bisect."""
        secs = self.args.step_seconds
        rate = max(1.0, self.args.start_deliveries / n)
        steps, best, worst = [], None, None
        # A step the publisher could not drive at its rate (the machine is
        # saturated) counts as a failure at that rate.
        for _ in range(12):
            r = self.step(gw, n, rate, secs)
            steps.append(r)
            if r["ok"]:
                best = rate
            else:
                worst = rate
            if worst is None:
                rate *= 2
            elif best is None:
                if len(steps) >= 6:
                    break
                rate /= 2
            else:
                break
        for _ in range(self.args.bisect):
            if best is None or worst is None:
                break
            rate = (best * worst) ** 0.5
            r = self.step(gw, n, rate, secs)
            steps.append(r)
            if r["ok"]:
                best = rate
            else:
                worst = rate
        top = max((s for s in steps if s["ok"]), key=lambda s: s["rate"], default=None)
        return {"subscribers": n, "step_seconds": secs, "steps": steps,
                "max_rate_kept_up": best, "first_rate_failed": worst,
                "max_deliveries_per_s": top["deliveries_per_s"] if top else None,
                "at_max": top}

    # -- latency ------------------------------------------------------------

    def latency(self, gw, n, rate, secs, tmp):
        count = int(rate * secs)
        gdump, bdump = os.path.join(tmp, "gw.lat"), os.path.join(tmp, "bare.lat")
        w = self.ws(gw, n, n * count, 2000, secs + 60, "--sample-every", 1, "--dump", gdump)
        s = self.sub(1, count, 2000, secs + 60, "--dump", bdump)
        c0, j0, t0 = cpu_s(gw.pid), machine_jiffies(), time.monotonic()
        pub = self.publish(count, rate)
        wr = w.result(secs + 120)
        sr = s.result(secs + 120)
        cpu, busy = cpu_s(gw.pid) - c0, busy_since(j0)
        wall = time.monotonic() - t0

        def load(path):
            out = {}
            with open(path) as f:
                for line in f:
                    seq, sent, got = (int(x) for x in line.split())
                    out.setdefault(seq, (sent, got))  # the first subscriber's receipt
            return out
        g, b = load(gdump), load(bdump)
        gl = [(v[1] - v[0]) / 1e6 for v in g.values()]
        bl = [(v[1] - v[0]) / 1e6 for v in b.values()]
        diff = [(g[k][1] - b[k][1]) / 1e6 for k in g if k in b]

        def stats(v):
            v = sorted(v)
            if not v:
                return None

            def q(p):
                return v[min(len(v) - 1, int(p / 100.0 * (len(v) - 1)))]
            return {"n": len(v), "p50_ms": q(50), "p90_ms": q(90), "p99_ms": q(99),
                    "p999_ms": q(99.9), "max_ms": v[-1], "mean_ms": sum(v) / len(v)}
        return {"subscribers": n, "rate": rate, "published": pub["published"],
                "publish_rate": pub["rate"], "deliveries": wr["received"],
                "gateway": stats(gl), "bare_redis_subscriber": stats(bl),
                "gateway_minus_bare_per_message": stats(diff),
                "gateway_cpu_s": cpu, "gateway_cores": cpu / wall,
                "gateway_cpu_us_per_delivery": cpu * 1e6 / max(1, wr["received"]),
                "client_cpu_s": wr["cpu_s"],
                "machine_busy": busy}

    # -- idle connections -------------------------------------------------

    def idle(self, n, hold):
        gw = Gateway(self.mlstream, self.env, self.channel, max(16384, n + 1024))
        try:
            gw.metrics()  # warm: the HTTP path and the metrics registry
            time.sleep(0.5)
            before = mem(gw.pid)
            sock0 = sockstat_mem_pages()
            c0 = cpu_s(gw.pid)
            t0 = time.monotonic()
            w = self.lg("ws", "--gateway", gw.addr, "--conns", n, "--idle",
                        "--seconds", hold + 30, "--pid", gw.pid)
            w.wait_ready(120)
            gw.wait_connections(n)
            setup_s = time.monotonic() - t0
            # let the per-connection init-timeout timers (3 s) fire once
            time.sleep(4)
            c1 = cpu_s(gw.pid)
            settled = mem(gw.pid)
            time.sleep(hold)
            c2 = cpu_s(gw.pid)
            held = mem(gw.pid)
            sock1 = sockstat_mem_pages()
            conns = metric_sum(gw.metrics(), "ml_stream_gateway_connections")
            w.kill()
            gw.wait_connections(0)
            time.sleep(1)
            after = mem(gw.pid)
            # again: is the memory of closed connections reused?
            w = self.lg("ws", "--gateway", gw.addr, "--conns", n, "--idle",
                        "--seconds", 60, "--pid", gw.pid)
            w.wait_ready(120)
            gw.wait_connections(n)
            time.sleep(1)
            again = mem(gw.pid)
            w.kill()
            gw.wait_connections(0)
        finally:
            gw.stop()
        page = os.sysconf("SC_PAGE_SIZE")
        return {
            "connections": n, "connections_seen_by_gateway": conns,
            "rss_before": before["VmRSS"], "rss_connected": held["VmRSS"],
            "rss_connected_at_settle": settled["VmRSS"], "rss_peak": held["VmHWM"],
            "rss_after_close": after["VmRSS"], "rss_second_round": again["VmRSS"],
            "rss_anon_before": before.get("RssAnon"), "rss_anon_connected": held.get("RssAnon"),
            "bytes_per_connection": (held["VmRSS"] - before["VmRSS"]) / n,
            "kernel_tcp_bytes_per_connection_both_ends": (sock1 - sock0) * page / n,
            "setup_wall_s": setup_s, "setup_gateway_cpu_s": c1 - c0,
            "setup_gateway_cpu_us_per_connection": (c1 - c0) * 1e6 / n,
            "idle_gateway_cpu_s": c2 - c1, "idle_hold_s": hold,
        }


def git_head():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+src-changes" if dirty else "")
    except OSError:
        return None


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memtotal = int(f.readline().split()[1]) * 1024
    return {"cores": os.cpu_count(), "cpu": model, "memory_bytes": memtotal,
            "kernel": platform.release(), "load_avg_start": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("MLSTREAM_BUILD_DIR",
                                                      os.path.join(ROOT, "build")))
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--idle-hold", type=float, default=5)
    ap.add_argument("--latency-rate", type=int, default=10000)
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument("--latency-runs", type=int, default=3)
    ap.add_argument("--note", default="", help="free text stored in the result (e.g. the build)")
    ap.add_argument("--step-seconds", type=float, default=3)
    ap.add_argument("--start-deliveries", type=float, default=250000,
                    help="deliveries/s of the first sustained step")
    ap.add_argument("--bisect", type=int, default=2)
    ap.add_argument("--max-lag-ms", type=float, default=250)
    ap.add_argument("--burst-deliveries", type=int, default=5000000)
    ap.add_argument("--burst-max-messages", type=int, default=300000)
    ap.add_argument("--quick", action="store_true", help="smaller and shorter (a smoke test)")
    ap.add_argument("--profile", action="store_true", help="perf profiles of the burst runs")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "gateway.json"))
    args = ap.parse_args()
    if args.quick:
        args.idle_conns, args.idle_hold = 1000, 1
        args.latency_seconds, args.step_seconds, args.bisect = 2, 1, 0
        args.latency_runs = 1
        args.burst_deliveries, args.burst_max_messages = 500000, 50000
    args.build = os.path.abspath(args.build)
    # both the gateway and mls-loadgen inherit this (each also raises its own)
    nofile = raise_nofile(args.idle_conns + 1024)

    env, started = ensure_services("redis")
    bench = Bench(args, env)
    # A subscriber that falls behind a burst would exceed Redis' default
    # pubsub output-buffer limit (32 MB) and be disconnected: lift it for
    # the run (restored afterwards).
    old_limit = redis_cli(env, "CONFIG", "GET", "client-output-buffer-limit")
    lifted = redis_cli(env, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0") == "OK"
    if not lifted:
        args.burst_max_messages = min(args.burst_max_messages, 50000)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": git_head(),
           "machine": machine(), "nofile_limit": nofile,
           "redis": {"address": bench.redis, "started_here": started,
                     "version": redis_version(env), "pubsub_output_limit_lifted": lifted},
           "channel": bench.channel, "note": args.note,
           "binaries": {"mlstream": bench.mlstream, "mls-loadgen": bench.loadgen,
                        "mlstream_mtime": time.strftime(
                            "%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(bench.mlstream)))},
           "settings": {k: v for k, v in vars(args).items()}}
    gw = None
    tmp = tempfile.mkdtemp(prefix="mlstream-gwbench.")
    try:
        print("idle connections: %d" % args.idle_conns, flush=True)
        res["idle"] = bench.idle(args.idle_conns, args.idle_hold)
        print("  %.0f bytes/connection" % res["idle"]["bytes_per_connection"], flush=True)

        gw = Gateway(bench.mlstream, env, bench.channel, 16384)
        res["gateway_rss_start"] = mem(gw.pid)["VmRSS"]
        res["latency_runs"] = []
        for i in range(max(1, args.latency_runs)):
            print("latency at %d msg/s, run %d" % (args.latency_rate, i + 1), flush=True)
            lat = bench.latency(gw, 1, args.latency_rate, args.latency_seconds, tmp)
            res["latency_runs"].append(lat)
            print("  gateway p50 %.3f p99 %.3f ms, bare p50 %.3f p99 %.3f ms, added p99 %.3f ms, "
                  "machine busy %.0f%%" % (
                      lat["gateway"]["p50_ms"], lat["gateway"]["p99_ms"],
                      lat["bare_redis_subscriber"]["p50_ms"],
                      lat["bare_redis_subscriber"]["p99_ms"],
                      lat["gateway_minus_bare_per_message"]["p99_ms"],
                      100 * lat["machine_busy"]), flush=True)
        # the run with the median gateway p99 stands for all
        runs = sorted(res["latency_runs"], key=lambda r: r["gateway"]["p99_ms"])
        res["latency"] = runs[len(runs) // 2]

        res["burst"], res["redis_fanout"], res["sustained"] = [], [], []
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        for n in FANOUTS:
            count = max(1000, min(args.burst_max_messages, args.burst_deliveries // n))
            print("burst: %d payloads to %d subscribers" % (count, n), flush=True)
            b = bench.burst(gw, n, count)
            res["burst"].append(b)
            print("  gateway %.0f deliveries/s (%.3f us CPU each), bare subscriber %.0f msg/s"
                  % (b["deliveries_per_s"], b["gateway_cpu_us_per_delivery"] or 0,
                     b["bare_sub_rate"]), flush=True)
            r = bench.redis_fanout(n, count)
            res["redis_fanout"].append(r)
            print("  redis fan-out to %d bare subscribers: %.0f deliveries/s"
                  % (n, r["deliveries_per_s"]), flush=True)
        for n in FANOUTS:
            print("sustained: %d subscribers" % n, flush=True)
            res["sustained"].append(bench.sustained(gw, n))
        if args.profile and shutil.which("perf"):
            res["profiles"] = []
            for n in (1, 1000):
                count = max(1000, min(args.burst_max_messages, args.burst_deliveries // n))
                stem = os.path.join(os.path.dirname(args.out), "gateway-perf-%d" % n)
                print("profile: burst to %d subscribers -> %s.txt" % (n, stem), flush=True)
                b = bench.burst(gw, n, count, perf_out=stem)
                res["profiles"].append(dict(b, report=os.path.relpath(stem + ".txt", ROOT)))
        res["gateway_rss_end"] = mem(gw.pid)
        res["gateway_log_tail"] = gw.output()[-2000:]
    finally:
        for load in Load.running:
            load.kill()
        if gw:
            gw.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if lifted and old_limit:
            lines = old_limit.splitlines()
            if len(lines) == 2:
                redis_cli(env, "CONFIG", "SET", "client-output-buffer-limit", lines[1])
        if started:
            stop_services(env, "redis")
    res["machine"]["load_avg_end"] = os.getloadavg()
    res["summary"] = summarize(res)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res["summary"], indent=2))


def summarize(res):
    """The numbers the issue's targets are about."""
    s = {}
    for b, r, t in zip(res["burst"], res["redis_fanout"], res["sustained"]):
        s["%d_subscribers" % b["subscribers"]] = {
            "burst_deliveries_per_s": round(b["deliveries_per_s"]),
            "burst_gateway_cpu_us_per_delivery": b["gateway_cpu_us_per_delivery"],
            "burst_deliveries_per_gateway_core_s": b["deliveries_per_gateway_core_s"],
            "sustained_max_deliveries_per_s": t["max_deliveries_per_s"],
            "sustained_gateway_cores_at_max": t["at_max"]["gateway_cores"] if t["at_max"] else None,
            "bare_redis_subscriber_msgs_per_s": b["bare_sub_rate"],
            "redis_fanout_deliveries_per_s": round(r["deliveries_per_s"]),
        }
    s["idle_bytes_per_connection"] = res["idle"]["bytes_per_connection"]
    s["latency_p99_ms_each_run"] = [r["gateway"]["p99_ms"] for r in res["latency_runs"]]
    lat = res["latency"]
    s["latency_ms"] = {"gateway_p50": lat["gateway"]["p50_ms"], "gateway_p99": lat["gateway"]["p99_ms"],
                       "bare_p50": lat["bare_redis_subscriber"]["p50_ms"],
                       "bare_p99": lat["bare_redis_subscriber"]["p99_ms"],
                       "added_p50": lat["gateway_minus_bare_per_message"]["p50_ms"],
                       "added_p99": lat["gateway_minus_bare_per_message"]["p99_ms"]}
    k = "1000_subscribers"
    s["targets"] = {
        "deliveries_1000_subscribers_ge_500k_per_s": (
            s.get(k, {}).get("sustained_max_deliveries_per_s") or 0) >= 500000,
        "idle_connection_le_16KiB": s["idle_bytes_per_connection"] <= 16384,
        "latency_p99_le_1ms_from_redis": lat["gateway_minus_bare_per_message"]["p99_ms"] <= 1.0,
    }
    return s


if __name__ == "__main__":
    main()
