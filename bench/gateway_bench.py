#!/usr/bin/env python3
"""Gateway benchmark: deliveries per second, memory per idle connection,
fan-out to many idle subscribers, latency and CPU per delivery of a real
`mlstream gateway` fed from a real Redis, next to references measured in the
same run.

All load goes over loopback, every phase is bounded in time. Load comes
from mls-loadgen (bench/loadgen.c):

  * idle connections (--idle-conns, 10,000; 100,000 works): on a fresh
    gateway, N graphql-transport-ws connections, initialised, without a
    subscription: resident memory per connection, (RSS with them - RSS
    before) / N, and separately the kernel's socket memory
    (/proc/net/sockstat, and /proc/slabinfo when readable). They close, the
    script waits until the gateway's connections gauge is back to 0, and a
    second round of N opens: is the memory of closed connections reused?
    Then the second round subscribes (SIGUSR1 to mls-loadgen): memory per
    subscription; and --fanout-events payloads are published at once: the
    time until every connection received every one, deliveries/s and
    gateway CPU per delivery.
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
  * latency from PUBLISH (the publisher's clock) to receipt at
    --latency-rate (10,000) messages/s, through the gateway and at a bare
    Redis subscriber, and per message the gateway's receipt minus the bare
    subscriber's; then the same at --steady-rate (1,000) messages/s, where
    every event wakes the gateway on its own, again at that rate with the
    events published together every 20 ms (as the engine publishes a batch
    when its fetches wait 20 ms), and the gateway's CPU while its one
    subscriber gets nothing (the cost of staying awake);
  * gateway CPU from /proc/<pid>/stat.

Many connections to one gateway address: every mls-loadgen ws run binds its
sockets to source addresses of its own in 127.0.0.0/8 (127.0.0.2 onwards;
at most --conns-per-source connections each), so that the ports of one
source address are never the limit and the TIME_WAIT entries a closed round
leaves do not stand in the way of the next. Before anything starts the
script checks what N connections need, and stops with one line (status 2)
when something is missing: the open-file hard limit (the gateway and
mls-loadgen each need N descriptors; both raise their soft limit
themselves), net.ipv4.ip_local_port_range against the connections per
source address, net.core.somaxconn against the connections mls-loadgen
keeps in set-up (--max-pending), free memory and file handles (100,000
connections need an open-file hard limit of at least 101,024: `ulimit -Hn`
as root with CAP_SYS_RESOURCE, or the container's nofile limit). It records
net.ipv4.tcp_tw_reuse, the gateway's listen backlog and whether the machine
was quiet (benchlib.quiet_check(); a busy machine is noted, not refused).

Writes --out (bench/out/gateway.json): "bench", "date", "wall_s",
"settings", "quiet", "machine" (benchlib.machine(): CPU, cores, memory,
kernel, commit, versions, load_avg_before / load_avg_after), "system" (the
limits and sysctls above), "summary", then the details of each phase
("idle", "latency_runs", "latency", "burst", "redis_fanout", "sustained").

"summary" is flat; every key is always present, null when its phase did not
run (--only) or could not tell:

  under_load                                  bool: the machine was busy before the run
  idle_connections                            N of the idle phase
  idle_source_addresses                       source addresses per round
  idle_bytes_per_connection                   gateway RSS growth / N, round 1
  idle_second_round_bytes_per_connection      RSS growth of round 2 over the RSS
                                              after round 1 closed, / N (~0: reused)
  idle_kernel_socket_bytes_per_connection     /proc/net/sockstat TCP "mem" growth / N
                                              (socket buffers, both ends of loopback)
  idle_kernel_slab_bytes_per_connection       slab growth (TCP, sockets, files,
                                              epoll) / N, both ends; null unless root
  idle_setup_s                                wall time to open N (round 1)
  idle_setup_gateway_cpu_us_per_connection    gateway CPU / N while opening round 1
  idle_close_s                                client gone -> gateway gauge back to 0
  idle_subscribed_bytes_per_connection        (RSS with N subscribed connections - RSS
                                              before round 1) / N
  fanout_subscribers                          N subscribed connections
  fanout_events                               payloads published
  fanout_deliveries                           received in total (N x events when all came)
  fanout_deliveries_per_s                     deliveries / (last receipt - first publish)
  fanout_all_received_ms                      first publish -> last receipt; null if some
                                              never arrived
  fanout_cpu_us_per_delivery                  gateway CPU / delivery during the fan-out
  latency_p50_ms, latency_p99_ms              publish -> gateway client at --latency-rate,
                                              the run with the median p99
  latency_p99_ms_min, latency_p99_ms_max      over the --latency-runs runs
  latency_added_p99_ms                        per message: gateway client - bare subscriber
  latency_bare_p99_ms                         publish -> bare Redis subscriber
  cpu_us_per_event_1_subscriber               gateway CPU per payload at --latency-rate,
                                              one subscriber
  steady_cpu_us_per_event_1_subscriber        the same at --steady-rate (1,000 msg/s):
                                              every event wakes the gateway alone
  steady_redis_cpu_us_per_message             the reference: redis-server's CPU per
                                              message in the same run (it too wakes
                                              for each one, and writes it to the
                                              gateway and a bare subscriber)
  steady_batched_20_ms_cpu_us_per_event_1_subscriber
                                              the same rate published in batches
                                              every 20 ms
  steady_batched_20_ms_redis_cpu_us_per_message
                                              redis-server's, in that run
  idle_gateway_core_percent                   gateway CPU with one subscriber and
                                              nothing published, % of one core
  burst_deliveries_per_s_<n>_subscribers      n = 1, 100, 1000
  burst_cpu_us_per_delivery_<n>_subscribers
  sustained_max_deliveries_per_s_<n>_subscribers
  redis_fanout_deliveries_per_s_<n>_subscribers
  target_deliveries_1000_subscribers_ge_500k_per_s   bool
  target_idle_connection_le_16KiB                    bool
  target_latency_added_p99_le_1ms                    bool

Starts its own Redis (scripts/services) unless REDIS_URL is set; either way
it lifts Redis' pubsub output-buffer limit for the run (so that a gateway
that falls behind a burst is measured, not disconnected) and restores it
afterwards. Needs a build (scripts/test or cmake + ninja): mlstream and
bench/mls-loadgen from --build (default build/, or $MLSTREAM_BUILD_DIR).
--profile also records `perf` profiles of the burst runs
(bench/out/gateway-perf-*.txt).

Usage: bench/gateway_bench.py [--build DIR] [--out FILE] [--quick]
           [--only idle,latency,throughput] [--idle-conns N] [--profile]
Exit status: 0 done; 2 a precondition is not met; 1 a phase failed.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from benchlib import BenchError, cpu_ns, cpu_s, fail, machine, memory, quiet_check, spread  # noqa: E402
from mlshelpers import (ensure_services, free_port, stop_services, http_get, metric_sum,  # noqa: E402
                        parse_metrics, redis_addr, wait_for)

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MODEL = "bench-model"
FANOUTS = (1, 100, 1000)
# the steady rate's batched run: an engine whose fetches wait this long
# (bench/engine_bench.py's STEADY_FETCH_WAIT_MS) publishes a batch as often
STEADY_BATCH_MS = 20
PHASES = ("idle", "latency", "throughput")
# descriptors a process needs beyond its connections
SPARE_FDS = 1024
# memory the machine needs per idle connection, all told: the gateway's
# ~6 KiB, mls-loadgen's buffers and both kernel sockets, with room
MEM_PER_CONN = 48 * 1024


class PhaseError(Exception):
    """A phase could not be measured (connections failed, a timeout)."""


# --- the machine -----------------------------------------------------------


def cpu_split(pid):
    """(user, system) CPU seconds of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def machine_jiffies():
    """(busy, total) jiffies of the whole machine (every process)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def busy_since(j0):
    b1, t1 = machine_jiffies()
    return (b1 - j0[0]) / max(1, t1 - j0[1])


def read_proc(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def sysctl_int(name, default=None):
    v = read_proc("/proc/sys/" + name.replace(".", "/"))
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def sockstat():
    """TCP counters of /proc/net/sockstat: inuse, orphan, tw, alloc, mem
    (pages of socket buffers)."""
    out = {}
    for line in (read_proc("/proc/net/sockstat", "") or "").splitlines():
        if line.startswith("TCP:"):
            f = line.split()[1:]
            out = {f[i]: int(f[i + 1]) for i in range(0, len(f) - 1, 2)}
    return out


# the kernel objects one TCP connection end holds in a process: the socket,
# its inode and file, its epoll entry
SLABS = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq",
         "request_sock_TCP", "skbuff_head_cache")


def slab_bytes():
    """Bytes in the slab caches of SLABS; None unless /proc/slabinfo is
    readable (root)."""
    text = read_proc("/proc/slabinfo")
    if text is None:
        return None
    total = 0
    for line in text.splitlines():
        f = line.split()
        if f and f[0] in SLABS:
            total += int(f[1]) * int(f[3])  # active objects x object size
    return total


def meminfo(key):
    for line in (read_proc("/proc/meminfo", "") or "").splitlines():
        k, _, v = line.partition(":")
        if k == key:
            return int(v.split()[0]) * 1024
    return None


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def nofile_of(pid):
    """The soft open-file limit of a live process (/proc/<pid>/limits)."""
    for line in (read_proc("/proc/%d/limits" % pid, "") or "").splitlines():
        if line.startswith("Max open files"):
            v = line.split()[3]
            return None if v == "unlimited" else int(v)
    return None


def listen_backlog(port):
    """The backlog of the listener on port (ss: Send-Q of a LISTEN socket)."""
    try:
        out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "LISTEN":
            return int(f[2])
    return None


class Sources:
    """Source addresses for mls-loadgen ws, handed out in turn from
    127.0.0.2 on (x.x.x.0, .1 and .255 skipped): every run gets addresses of
    its own, so the TIME_WAIT entries of a closed run never meet the next."""
    FIRST = (127 << 24) | 2
    LAST = (127 << 24) | (255 << 16) | (255 << 8) | 254

    def __init__(self):
        self.next = self.FIRST

    @staticmethod
    def dotted(a):
        return socket.inet_ntoa(a.to_bytes(4, "big"))

    def take(self, k):
        """k addresses, as mls-loadgen's --source-addresses list."""
        got = []
        while len(got) < k:
            a, self.next = self.next, self.next + 1
            if self.next > self.LAST:
                self.next = self.FIRST
            if a & 0xff not in (0, 1, 255):
                got.append(a)
        ranges = []
        for a in got:
            if ranges and ranges[-1][1] == a - 1:
                ranges[-1][1] = a
            else:
                ranges.append([a, a])
        return ",".join(self.dotted(lo) if lo == hi else "%s-%s" % (self.dotted(lo),
                                                                     self.dotted(hi))
                        for lo, hi in ranges)


# --- preconditions -----------------------------------------------------------


def preconditions(args, phases):
    """Checks what the run needs before anything starts; fails with one line
    (BenchError) when something is missing. Returns the "system" record."""
    n_idle = args.idle_conns if "idle" in phases else 0
    n_max = max(n_idle, max(FANOUTS) if "throughput" in phases else 1)
    per_source = min(args.conns_per_source, max(1, n_max))
    sysinfo = {"quiet": quiet_check()}

    # open files: the gateway and mls-loadgen each hold one per connection
    need = n_max + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        fail("the open-file hard limit (RLIMIT_NOFILE) is %d, below the %d descriptors that "
             "%d connections need in the gateway and in mls-loadgen; raise it (as root: "
             "`ulimit -Hn %d` in the shell that runs this, or LimitNOFILE= / limits.conf) "
             "or pass --idle-conns %d" % (hard, need, n_max, need, max(1, hard - SPARE_FDS)))
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))  # children inherit it
    sysinfo["nofile_soft"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    sysinfo["nofile_hard"] = None if hard == resource.RLIM_INFINITY else hard
    sysinfo["nofile_needed"] = need
    nr_open = sysctl_int("fs.nr_open")
    sysinfo["fs_nr_open"] = nr_open
    filenr = (read_proc("/proc/sys/fs/file-nr", "") or "").split()
    if len(filenr) == 3:
        allocated, _, file_max = (int(x) for x in filenr)
        sysinfo["fs_file_max"] = file_max
        if file_max - allocated < 2 * need:
            fail("fs.file-max (%d, %d in use) leaves fewer than the %d file handles that %d "
                 "connections need (both ends); raise fs.file-max or pass a smaller "
                 "--idle-conns" % (file_max, allocated, 2 * need, n_max))

    # ephemeral ports: one source address takes at most per_source connections
    rng = (read_proc("/proc/sys/net/ipv4/ip_local_port_range", "") or "").split()
    if len(rng) == 2:
        lo, hi = int(rng[0]), int(rng[1])
        ports = hi - lo + 1
        sysinfo["ip_local_port_range"] = [lo, hi]
        sysinfo["ephemeral_ports_per_source_address"] = ports
        if per_source > ports - SPARE_FDS:
            fail("net.ipv4.ip_local_port_range (%d-%d) has %d ports per source address, too "
                 "few for %d connections per address (--conns-per-source) with %d spare; "
                 "lower --conns-per-source or widen the range (sysctl -w "
                 "net.ipv4.ip_local_port_range=\"1024 65535\")"
                 % (lo, hi, ports, per_source, SPARE_FDS))
    sysinfo["conns_per_source_address"] = per_source
    # TIME_WAIT: each run binds addresses of its own, so reuse is not needed
    tw = sysctl_int("net.ipv4.tcp_tw_reuse")
    sysinfo["tcp_tw_reuse"] = tw
    sysinfo["tcp_tw_reuse_means"] = {0: "off", 1: "on", 2: "loopback only"}.get(tw)
    sysinfo["tcp_timestamps"] = sysctl_int("net.ipv4.tcp_timestamps")
    sysinfo["time_wait_at_start"] = sockstat().get("tw")

    # the listen backlog: lws listens with SOMAXCONN, the kernel caps it
    somax = sysctl_int("net.core.somaxconn")
    sysinfo["somaxconn"] = somax
    sysinfo["tcp_max_syn_backlog"] = sysctl_int("net.ipv4.tcp_max_syn_backlog")
    sysinfo["tcp_syncookies"] = sysctl_int("net.ipv4.tcp_syncookies")
    if somax is not None and args.max_pending > 0 and somax < args.max_pending:
        fail("net.core.somaxconn is %d, below the %d connections mls-loadgen keeps in set-up "
             "at once (--max-pending): the gateway's listen backlog would overflow; raise it "
             "(sysctl -w net.core.somaxconn=4096) or lower --max-pending" % (somax,
                                                                               args.max_pending))

    # memory
    avail = meminfo("MemAvailable")
    sysinfo["mem_available_bytes"] = avail
    if avail is not None and avail < n_max * MEM_PER_CONN:
        fail("%d connections need about %d MiB of memory (gateway, mls-loadgen and kernel); "
             "%d MiB is available: pass a smaller --idle-conns"
             % (n_max, n_max * MEM_PER_CONN >> 20, avail >> 20))

    # the source addresses bind (127.0.0.0/8 is all local on Linux)
    s = socket.socket()
    try:
        s.bind(("127.0.0.2", 0))
    except OSError as e:
        fail("cannot bind a socket to 127.0.0.2 (%s): mls-loadgen binds its connections to "
             "127.0.0.x source addresses" % e.strerror)
    finally:
        s.close()
    return sysinfo


# --- processes -----------------------------------------------------------


class Load:
    """One mls-loadgen process; its stdout lines are collected."""
    running = []

    def __init__(self, loadgen, args):
        self.args = [loadgen] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        Load.running = [ld for ld in Load.running if ld.proc.poll() is None] + [self]
        self.lines, self.errors = [], []
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.strip())

    def _join(self):
        for t in self.threads:
            t.join(5)

    def _line(self):
        """The result line (the last JSON object that is not a progress
        line), or None."""
        for line in reversed(self.lines):
            if line.startswith("{") and not line.startswith(('{"ready"', '{"subscribed"')):
                return json.loads(line)
        return None

    def why(self):
        """What went wrong, in one line, from the result or stderr."""
        r = self._line()
        if r and "dead_by" in r:
            causes = ", ".join("%s %d" % kv for kv in r["dead_by"].items() if kv[1])
            return "%d of %d connections failed (%s): %s" % (
                r["dead"], r["conns"], causes, r.get("first_error") or "?")
        return " / ".join(self.errors[-3:]) or "exit status %s" % self.proc.returncode

    def wait_ready(self, timeout):
        def ready():
            if any(ln.startswith('{"ready"') for ln in self.lines):
                return True
            if self.proc.poll() is not None:
                self._join()
                if self.proc.returncode == 2:
                    fail("mls-loadgen %s: %s" % (self.args[1], self.why()))
                raise PhaseError("mls-loadgen %s exited %s before it was ready: %s"
                                 % (self.args[1], self.proc.returncode, self.why()))
            return False
        try:
            wait_for(ready, timeout, "mls-loadgen %s to be ready" % self.args[1])
        except AssertionError as e:
            self.kill()
            raise PhaseError(str(e)) from None
        return json.loads(next(ln for ln in self.lines if ln.startswith('{"ready"')))

    def result(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PhaseError("mls-loadgen %s gave no result within %ss" % (self.args[1],
                                                                          timeout)) from None
        self._join()
        r = self._line()
        if r is None:
            raise PhaseError("no result from %s: %s" % (" ".join(self.args), self.why()))
        return r

    def result_line(self, timeout):
        """The result while the process may still run (--linger-ms)."""
        def got():
            if self._line() is not None:
                return True
            if self.proc.poll() is not None:
                self._join()
                if self._line() is None:
                    raise PhaseError("mls-loadgen %s exited %s: %s" % (
                        self.args[1], self.proc.returncode, self.why()))
            return self._line() is not None
        try:
            wait_for(got, timeout, "the result of mls-loadgen %s" % self.args[1])
        except AssertionError as e:
            raise PhaseError(str(e)) from None
        return self._line()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._join()


class Gateway:
    """A real `mlstream gateway` on 127.0.0.1 and a free port."""

    def __init__(self, mlstream, env, channel, max_conns, need_nofile=0):
        self.port = free_port()
        self.max_conns = max_conns
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
                raise PhaseError("gateway exited %s: %s" % (self.proc.returncode,
                                                            self.output()[-500:]))
            return http_get(self.url("/readyz"))[0] == 200
        try:
            wait_for(ready, 30, "gateway /readyz")
        except AssertionError as e:
            self.stop()
            raise PhaseError(str(e)) from None
        # the gateway raises its own soft limit towards GATEWAY_MAX_CONNECTIONS
        self.nofile = nofile_of(self.pid)
        if self.nofile is not None and self.nofile < need_nofile:
            self.stop()
            fail("the gateway's open-file limit is %d, below the %d descriptors its connections "
                 "need: raise the hard limit (ulimit -Hn)" % (self.nofile, need_nofile))
        self.backlog = listen_backlog(self.port)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def metrics(self):
        status, text = http_get(self.url("/metrics"))
        if status != 200:
            raise PhaseError("gateway /metrics answered %s" % status)
        return parse_metrics(text)

    def metric(self, name, **labels):
        return metric_sum(self.metrics(), name, **labels)

    def _wait(self, cond, timeout, what):
        try:
            wait_for(cond, timeout, what)
        except AssertionError as e:
            raise PhaseError("%s (gateway: %d connections, %d subscriptions)" % (
                e, self.metric("ml_stream_gateway_connections"),
                self.metric("ml_stream_gateway_subscriptions"))) from None

    def wait_subscriptions(self, n, timeout=60):
        self._wait(lambda: self.metric("ml_stream_gateway_subscriptions") == n, timeout,
                   "%d subscriptions on the gateway" % n)

    def wait_connections(self, n, timeout=60):
        self._wait(lambda: self.metric("ml_stream_gateway_connections") == n, timeout,
                   "%d connections on the gateway" % n)

    def closes(self):
        """{(reason or refusal): count} of the gateway's close and refusal
        counters that are not zero."""
        out = {}
        for (name, labels), v in self.metrics().items():
            if v and name in ("ml_stream_gateway_connections_closed_total",
                              "ml_stream_gateway_connections_rejected_total",
                              "ml_stream_gateway_ws_closed_total"):
                out["%s{%s}" % (name[len("ml_stream_gateway_"):],
                                ",".join("%s=%s" % kv for kv in sorted(labels)))] = v
        return out

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
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


def start_redis():
    """(env, started) with Redis; one line instead of a traceback when
    scripts/services cannot start it."""
    if not shutil.which("redis-cli"):
        fail("redis-cli is not on PATH (scripts/bootstrap installs Redis)")
    try:
        return ensure_services("redis")
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or "").strip().splitlines()[-3:]
        fail("could not start Redis with scripts/services: %s" % (" / ".join(tail) or e))


# --- the measurements ----------------------------------------------------


def binaries(args):
    """(mlstream, mls-loadgen) of the build; fails unless both are there and
    mls-loadgen is not older than its source."""
    mlstream = os.environ.get("MLSTREAM_BIN", os.path.join(args.build, "mlstream"))
    loadgen = os.path.join(args.build, "bench", "mls-loadgen")
    for p in (mlstream, loadgen):
        if not os.access(p, os.X_OK):
            fail("%s is missing; build first (scripts/test, or cmake + ninja with --build DIR)"
                 % p)
    if os.path.getmtime(loadgen) < os.path.getmtime(os.path.join(HERE, "loadgen.c")):
        fail("%s is older than bench/loadgen.c; rebuild it (ninja -C %s mls-loadgen)"
             % (loadgen, args.build))
    return mlstream, loadgen


class Bench:
    def __init__(self, args, env):
        self.args = args
        self.env = env
        self.mlstream, self.loadgen = binaries(args)
        host, port = redis_addr(env)
        self.redis = "%s:%d" % (host, port)
        self.auth = redis_password(env)
        self.channel = "ml:bench:gateway:%s" % uuid.uuid4().hex[:8]
        self.redis_pid = redis_pid(env)
        self.sources = Sources()

    def lg(self, mode, *args):
        a = [mode]
        if mode in ("pub", "sub"):
            a += ["--redis", self.redis, "--channel", self.channel]
            if self.auth:
                a += ["--auth", self.auth]
        if mode == "ws":
            n = int(args[args.index("--conns") + 1])
            k = -(-n // self.args.conns_per_source)
            a += ["--source-addresses", self.sources.take(k),
                  "--max-pending", self.args.max_pending]
        return Load(self.loadgen, a + list(args))

    def publish(self, count, rate, every_ms=0):
        p = self.lg("pub", "--count", count, "--rate", rate, "--model", MODEL,
                    "--every-ms", every_ms)
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
        # the total from schedstat (nanoseconds: a burst is a few hundred
        # ms of CPU, where 10 ms clock ticks are a few percent each); the
        # user/system split from the ticks
        c0, n0, j0 = cpu_split(gw.pid), cpu_ns(gw.pid), machine_jiffies()
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
        c1, n1, busy = cpu_split(gw.pid), cpu_ns(gw.pid), busy_since(j0)
        m1 = gw.metrics()
        cpu = (n1 - n0) / 1e9
        d = wr["received"]
        if d < n * count and sr["received"] >= count and not (
                metric_sum(m1, "ml_stream_gateway_messages_dropped_total")
                - metric_sum(m0, "ml_stream_gateway_messages_dropped_total")):
            print("warning: burst to %d: %d of %d deliveries, none dropped by the gateway: "
                  "Redis dropped its subscription (client-output-buffer-limit pubsub), the "
                  "burst outran it; figures are over the deliveries made" % (n, d, n * count),
                  file=sys.stderr, flush=True)
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

    def latency(self, gw, n, rate, secs, tmp, every_ms=0):
        count = int(rate * secs)
        gdump, bdump = os.path.join(tmp, "gw.lat"), os.path.join(tmp, "bare.lat")
        w = self.ws(gw, n, n * count, 2000, secs + 60, "--sample-every", 1, "--dump", gdump)
        s = self.sub(1, count, 2000, secs + 60, "--dump", bdump)
        r0 = cpu_ns(self.redis_pid) if self.redis_pid else None
        c0, j0, t0 = cpu_ns(gw.pid), machine_jiffies(), time.monotonic()
        pub = self.publish(count, rate, every_ms)
        wr = w.result(secs + 120)
        sr = s.result(secs + 120)
        cpu, busy = (cpu_ns(gw.pid) - c0) / 1e9, busy_since(j0)
        rcpu = (cpu_ns(self.redis_pid) - r0) / 1e9 if r0 is not None else None
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
                # the reference: Redis' own CPU per message, which also
                # wakes for each one and writes it to two subscribers
                "redis_cpu_us_per_message":
                    rcpu * 1e6 / max(1, pub["published"]) if rcpu is not None else None,
                "client_cpu_s": wr["cpu_s"],
                "machine_busy": busy}

    def steady(self, gw, rate, secs, tmp):
        """One subscriber at a modest steady rate (each event wakes the
        gateway on its own), the same rate in batches every
        STEADY_BATCH_MS, then the same subscriber with nothing published:
        CPU per event, and the cost of staying awake."""
        lat = self.latency(gw, 1, rate, secs, tmp)
        b = self.latency(gw, 1, rate, secs, tmp, STEADY_BATCH_MS)
        lat["batched"] = {"every_ms": STEADY_BATCH_MS,
                          "gateway_cpu_us_per_delivery": b["gateway_cpu_us_per_delivery"],
                          "redis_cpu_us_per_message": b["redis_cpu_us_per_message"],
                          "deliveries": b["deliveries"], "published": b["published"]}
        w = self.ws(gw, 1, 1, 1000, secs + 60)
        c0, t0 = cpu_ns(gw.pid), time.monotonic()
        time.sleep(secs)
        idle = (cpu_ns(gw.pid) - c0) / 1e9 / (time.monotonic() - t0)
        w.kill()
        lat["idle_core_percent"] = 100 * idle
        return lat

    # -- idle connections, then fan-out to all of them -------------------

    def open_idle(self, gw, n, *extra):
        """N initialised, idle connections; (loadgen, its ready line)."""
        w = self.lg("ws", "--gateway", gw.addr, "--conns", n, "--idle", "--model", MODEL,
                    "--seconds", 24 * 3600, "--pid", gw.pid, *extra)
        # set-up costs the gateway more per connection the more are open
        ready = w.wait_ready(120 + n * 0.01)
        gw.wait_connections(n, timeout=60 + n / 1000)
        return w, ready

    def close_idle(self, gw, w, fds0):
        """Ends a round: the client goes (the kernel closes its sockets), then
        waits until the gateway's gauge says 0 and its descriptors are back.
        Returns the seconds that took."""
        n = gw.metric("ml_stream_gateway_connections")
        t0 = time.monotonic()
        w.kill()
        gw.wait_connections(0, timeout=60 + n / 1000)
        if fds0 is not None:
            gw._wait(lambda: (open_fds(gw.pid) or 0) <= fds0 + 16, 60,
                     "the gateway to close its sockets (%d descriptors before)" % fds0)
        return time.monotonic() - t0

    def idle(self, n, hold, events):
        gw = Gateway(self.mlstream, self.env, self.channel, n + SPARE_FDS, need_nofile=n + 64)
        res = {"connections": n, "gateway_nofile": gw.nofile, "gateway_listen_backlog": gw.backlog,
               "gateway_max_connections": gw.max_conns,
               "source_addresses_per_round": -(-n // self.args.conns_per_source)}
        w = None
        try:
            gw.metrics()  # warm: the HTTP path and the metrics registry
            time.sleep(0.5)
            fds0 = open_fds(gw.pid)
            before, sock0, slab0 = memory(gw.pid), sockstat(), slab_bytes()
            c0, t0 = cpu_s(gw.pid), time.monotonic()
            print("  round 1: %d connections" % n, flush=True)
            w, ready = self.open_idle(gw, n)
            setup_s = time.monotonic() - t0
            # let the per-connection init-timeout timers (3 s) fire once
            time.sleep(4)
            c1, settled = cpu_s(gw.pid), memory(gw.pid)
            time.sleep(hold)
            c2, held = cpu_s(gw.pid), memory(gw.pid)
            sock1, slab1 = sockstat(), slab_bytes()
            conns = gw.metric("ml_stream_gateway_connections")
            res.update({
                "connections_seen_by_gateway": conns,
                "rss_before": before["VmRSS"], "rss_connected": held["VmRSS"],
                "rss_connected_at_settle": settled["VmRSS"],
                "rss_anon_before": before.get("RssAnon"), "rss_anon_connected": held.get("RssAnon"),
                "bytes_per_connection": (held["VmRSS"] - before["VmRSS"]) / n,
                "sockstat_before": sock0, "sockstat_connected": sock1,
                "kernel_socket_bytes_per_connection_both_ends":
                    (sock1.get("mem", 0) - sock0.get("mem", 0)) * PAGE / n,
                "kernel_slab_bytes_per_connection_both_ends":
                    (slab1 - slab0) / n if slab0 is not None and slab1 is not None else None,
                "setup_wall_s": setup_s, "loadgen_setup_s": ready.get("setup_s"),
                "setup_gateway_cpu_s": c1 - c0,
                "setup_gateway_cpu_us_per_connection": (c1 - c0) * 1e6 / n,
                "idle_gateway_cpu_s": c2 - c1, "idle_hold_s": hold,
                "gateway_open_fds_connected": open_fds(gw.pid),
            })
            print("  %.0f bytes/connection, set-up %.1f s (%.0f us gateway CPU each)"
                  % (res["bytes_per_connection"], setup_s,
                     res["setup_gateway_cpu_us_per_connection"]), flush=True)

            res["close_s"] = self.close_idle(gw, w, fds0)
            time.sleep(1)
            after = memory(gw.pid)
            res["rss_after_close"] = after["VmRSS"]
            res["time_wait_after_close"] = sockstat().get("tw")

            # again, from other source addresses: is the memory reused?
            print("  round 2: %d connections (after %.1f s to close round 1)"
                  % (n, res["close_s"]), flush=True)
            t0 = time.monotonic()
            w, ready = self.open_idle(gw, n, "--expect", n * events, "--quiet-ms", 10000,
                                      "--sample-every", 1, "--linger-ms", 600000)
            res["second_round_setup_wall_s"] = time.monotonic() - t0
            time.sleep(1)
            again = memory(gw.pid)
            res["rss_second_round"] = again["VmRSS"]
            res["second_round_bytes_per_connection"] = (again["VmRSS"] - after["VmRSS"]) / n

            # every connection subscribes
            w.proc.send_signal(signal.SIGUSR1)
            gw.wait_subscriptions(n, timeout=60 + n / 1000)
            time.sleep(1)
            subscribed = memory(gw.pid)
            res["rss_subscribed"] = subscribed["VmRSS"]
            # growth from subscribing: a lower bound, as freed heap of round 1
            # can absorb it; with everything: an upper bound (heap slack too)
            res["subscription_growth_bytes_per_connection"] = (
                subscribed["VmRSS"] - again["VmRSS"]) / n
            res["subscribed_bytes_per_connection"] = (subscribed["VmRSS"] - before["VmRSS"]) / n
            res["fanout"] = self.fanout(gw, w, n, events)
            res["gateway_closes"] = gw.closes()
            res["close_round_2_s"] = self.close_idle(gw, w, fds0)
        except PhaseError as e:
            raise PhaseError("idle phase, %d connections: %s%s" % (
                n, e, (" (gateway counters: %s)" % gw.closes()) if gw.proc.poll() is None
                else "")) from None
        finally:
            if w:
                w.kill()
            gw.stop()
        return res

    def fanout(self, gw, w, n, events):
        """events payloads published at once to n subscribed connections:
        how long until every one has all of them, at what CPU."""
        m0 = gw.metrics()
        c0, n0, j0 = cpu_split(gw.pid), cpu_ns(gw.pid), machine_jiffies()
        pub = self.publish(events, 10 ** 8)
        wr = w.result_line(120 + n * events / 10000)
        c1, n1, busy = cpu_split(gw.pid), cpu_ns(gw.pid), busy_since(j0)
        m1 = gw.metrics()
        d = wr["received"]
        cpu = (n1 - n0) / 1e9
        span_ns = wr["last_ns"] - pub["first_ns"] if d else None
        out = {
            "subscribers": n, "events": events, "expected_deliveries": n * events,
            "deliveries": d, "publish_first_ns": pub["first_ns"], "publish_last_ns": pub["last_ns"],
            "first_receipt_ns": wr["first_ns"], "last_receipt_ns": wr["last_ns"],
            "all_received_ms": span_ns / 1e6 if d == n * events else None,
            "first_publish_to_last_receipt_ms": span_ns / 1e6 if span_ns else None,
            "deliveries_per_s": d / (span_ns / 1e9) if span_ns else None,
            "latency_p50_ms": wr["p50_ms"], "latency_p99_ms": wr["p99_ms"],
            "latency_max_ms": wr["max_ms"],
            "gateway_cpu_s": cpu, "gateway_user_s": c1[0] - c0[0], "gateway_sys_s": c1[1] - c0[1],
            "gateway_cpu_us_per_delivery": cpu * 1e6 / d if d else None,
            "gateway_messages_sent": metric_sum(m1, "ml_stream_gateway_messages_sent_total")
            - metric_sum(m0, "ml_stream_gateway_messages_sent_total"),
            "dropped": metric_sum(m1, "ml_stream_gateway_messages_dropped_total")
            - metric_sum(m0, "ml_stream_gateway_messages_dropped_total"),
            "client_cpu_s": wr["cpu_s"], "connections_lost": wr.get("lost"),
            "machine_busy": busy,
        }
        print("  fan-out: %d events to %d subscribers: %d deliveries in %.0f ms, %.0f/s, "
              "%.3f us gateway CPU each" % (
                  events, n, d, out["first_publish_to_last_receipt_ms"] or 0,
                  out["deliveries_per_s"] or 0, out["gateway_cpu_us_per_delivery"] or 0),
              flush=True)
        return out


# --- the run ---------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("MLSTREAM_BUILD_DIR",
                                                      os.path.join(ROOT, "build")))
    ap.add_argument("--out", default=os.path.join(HERE, "out", "gateway.json"),
                    help="result file (default bench/out/gateway.json)")
    ap.add_argument("--quick", action="store_true", help="smaller and shorter (a smoke test)")
    ap.add_argument("--only", default=",".join(PHASES),
                    help="comma-separated phases to run: %s (default all)" % ",".join(PHASES))
    ap.add_argument("--idle-conns", type=int, default=10000,
                    help="connections of the idle phase (and subscribers of its fan-out)")
    ap.add_argument("--idle-hold", type=float, default=5)
    ap.add_argument("--fanout-events", type=int, default=10,
                    help="payloads published to the idle phase's subscribers")
    ap.add_argument("--conns-per-source", type=int, default=10000,
                    help="connections per 127.0.0.x source address")
    ap.add_argument("--max-pending", type=int, default=256,
                    help="connections mls-loadgen keeps in set-up at once")
    ap.add_argument("--latency-rate", type=int, default=10000)
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument("--latency-runs", type=int, default=3)
    ap.add_argument("--steady-rate", type=int, default=1000,
                    help="messages/s of the steady-rate run (default 1000)")
    ap.add_argument("--steady-seconds", type=float, default=10)
    ap.add_argument("--note", default="", help="free text stored in the result (e.g. the build)")
    ap.add_argument("--step-seconds", type=float, default=3)
    ap.add_argument("--start-deliveries", type=float, default=250000,
                    help="deliveries/s of the first sustained step")
    ap.add_argument("--bisect", type=int, default=2)
    ap.add_argument("--max-lag-ms", type=float, default=250)
    ap.add_argument("--burst-deliveries", type=int, default=5000000)
    ap.add_argument("--burst-max-messages", type=int, default=300000)
    ap.add_argument("--profile", action="store_true", help="perf profiles of the burst runs")
    args = ap.parse_args()
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        ap.error("--only takes %s" % ", ".join(PHASES))
    if args.quick:
        if not any(a.startswith("--idle-conns") for a in sys.argv[1:]):
            args.idle_conns = 1000
        args.idle_hold, args.fanout_events = 1, 3
        args.latency_seconds, args.step_seconds, args.bisect = 2, 1, 0
        args.latency_runs, args.steady_seconds = 1, 3
        args.burst_deliveries, args.burst_max_messages = 500000, 50000
    if args.idle_conns < 1 or args.conns_per_source < 1 or args.fanout_events < 1:
        ap.error("--idle-conns, --conns-per-source and --fanout-events must be positive")
    args.build = os.path.abspath(args.build)
    return args, phases


def run(args, phases, started_at):
    binaries(args)
    sysinfo = preconditions(args, phases)
    quiet = sysinfo.pop("quiet")
    env, started = start_redis()
    bench = None
    lifted, old_limit = False, None
    gw = None
    tmp = tempfile.mkdtemp(prefix="mlstream-gwbench.")
    res = {"bench": "gateway", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started_at)),
           "settings": {k: v for k, v in vars(args).items() if k != "out"}, "phases": phases,
           "quiet": quiet, "system": sysinfo, "note": args.note}
    try:
        bench = Bench(args, env)
        stamp = machine(bench.mlstream, env)
        stamp["load_avg_before"] = stamp.pop("load_avg")
        res["machine"] = stamp
        # A subscriber that falls behind a burst would exceed Redis' default
        # pubsub output-buffer limit (32 MB) and be disconnected: lift it for
        # the run (restored afterwards).
        old_limit = redis_cli(env, "CONFIG", "GET", "client-output-buffer-limit")
        lifted = redis_cli(env, "CONFIG", "SET", "client-output-buffer-limit",
                           "pubsub 0 0 0") == "OK"
        if not lifted:
            args.burst_max_messages = min(args.burst_max_messages, 50000)
        res.update({
            "redis": {"address": bench.redis, "started_here": started,
                      "version": redis_version(env), "pubsub_output_limit_lifted": lifted},
            "channel": bench.channel,
            "binaries": {"mlstream": bench.mlstream, "mls-loadgen": bench.loadgen,
                         "mlstream_mtime": time.strftime(
                             "%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(bench.mlstream)))},
        })
        if "idle" in phases:
            print("idle connections: %d, twice, then %d events to all of them"
                  % (args.idle_conns, args.fanout_events), flush=True)
            res["idle"] = bench.idle(args.idle_conns, args.idle_hold, args.fanout_events)

        if "latency" in phases or "throughput" in phases:
            gw = Gateway(bench.mlstream, env, bench.channel, 16384)
            res["gateway_rss_start"] = memory(gw.pid)["VmRSS"]
        if "latency" in phases:
            res["latency_runs"] = []
            for i in range(max(1, args.latency_runs)):
                print("latency at %d msg/s, run %d" % (args.latency_rate, i + 1), flush=True)
                lat = bench.latency(gw, 1, args.latency_rate, args.latency_seconds, tmp)
                res["latency_runs"].append(lat)
                print("  gateway p50 %.3f p99 %.3f ms, bare p50 %.3f p99 %.3f ms, added p99 "
                      "%.3f ms, machine busy %.0f%%" % (
                          lat["gateway"]["p50_ms"], lat["gateway"]["p99_ms"],
                          lat["bare_redis_subscriber"]["p50_ms"],
                          lat["bare_redis_subscriber"]["p99_ms"],
                          lat["gateway_minus_bare_per_message"]["p99_ms"],
                          100 * lat["machine_busy"]), flush=True)
            # the run with the median gateway p99 stands for all
            runs = sorted(res["latency_runs"], key=lambda r: r["gateway"]["p99_ms"])
            res["latency"] = runs[len(runs) // 2]
            res["latency_p99_ms_spread"] = spread(r["gateway"]["p99_ms"]
                                                  for r in res["latency_runs"])
            print("steady: %d msg/s to one subscriber for %.0f s, then idle for %.0f s" % (
                args.steady_rate, args.steady_seconds, args.steady_seconds), flush=True)
            res["steady"] = bench.steady(gw, args.steady_rate, args.steady_seconds, tmp)
            print("  gateway %.1f us CPU per event at %d msg/s (redis-server %.1f us per "
                  "message), %.1f us in batches every %d ms; idle %.3f%% of a core" % (
                      res["steady"]["gateway_cpu_us_per_delivery"], args.steady_rate,
                      res["steady"]["redis_cpu_us_per_message"] or 0,
                      res["steady"]["batched"]["gateway_cpu_us_per_delivery"],
                      STEADY_BATCH_MS, res["steady"]["idle_core_percent"]), flush=True)

        if "throughput" in phases:
            res["burst"], res["redis_fanout"], res["sustained"] = [], [], []
            for n in FANOUTS:
                count = max(1000, min(args.burst_max_messages, args.burst_deliveries // n))
                print("burst: %d payloads to %d subscribers" % (count, n), flush=True)
                b = bench.burst(gw, n, count)
                res["burst"].append(b)
                print("  gateway %.0f deliveries/s (%.3f us CPU each), bare subscriber %.0f "
                      "msg/s" % (b["deliveries_per_s"], b["gateway_cpu_us_per_delivery"] or 0,
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
                    stem = os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                        "gateway-perf-%d" % n)
                    os.makedirs(os.path.dirname(stem), exist_ok=True)
                    print("profile: burst to %d subscribers -> %s.txt" % (n, stem), flush=True)
                    b = bench.burst(gw, n, count, perf_out=stem)
                    res["profiles"].append(dict(b, report=os.path.relpath(stem + ".txt", ROOT)))
        if gw:
            res["gateway_rss_end"] = memory(gw.pid)
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
    res["machine"]["load_avg_after"] = list(os.getloadavg())
    res["wall_s"] = round(time.time() - started_at, 1)
    res["summary"] = summarize(res)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(res, f, indent=2)
    os.replace(out + ".tmp", out)
    print(json.dumps(res["summary"], indent=2))
    print("wrote %s" % args.out)


def summarize(res):
    """The flat "summary" (see the module's docstring): every key, None
    where its phase did not run."""
    s = {"under_load": res["quiet"]["under_load"]}
    idle = res.get("idle") or {}
    fan = idle.get("fanout") or {}
    s.update({
        "idle_connections": idle.get("connections"),
        "idle_source_addresses": idle.get("source_addresses_per_round"),
        "idle_bytes_per_connection": idle.get("bytes_per_connection"),
        "idle_second_round_bytes_per_connection": idle.get("second_round_bytes_per_connection"),
        "idle_kernel_socket_bytes_per_connection":
            idle.get("kernel_socket_bytes_per_connection_both_ends"),
        "idle_kernel_slab_bytes_per_connection":
            idle.get("kernel_slab_bytes_per_connection_both_ends"),
        "idle_setup_s": idle.get("setup_wall_s"),
        "idle_setup_gateway_cpu_us_per_connection":
            idle.get("setup_gateway_cpu_us_per_connection"),
        "idle_close_s": idle.get("close_s"),
        "idle_subscribed_bytes_per_connection": idle.get("subscribed_bytes_per_connection"),
        "fanout_subscribers": fan.get("subscribers"),
        "fanout_events": fan.get("events"),
        "fanout_deliveries": fan.get("deliveries"),
        "fanout_deliveries_per_s": fan.get("deliveries_per_s"),
        "fanout_all_received_ms": fan.get("all_received_ms"),
        "fanout_cpu_us_per_delivery": fan.get("gateway_cpu_us_per_delivery"),
    })
    lat = res.get("latency")
    sp = res.get("latency_p99_ms_spread") or {}
    s.update({
        "latency_p50_ms": lat["gateway"]["p50_ms"] if lat else None,
        "latency_p99_ms": lat["gateway"]["p99_ms"] if lat else None,
        "latency_p99_ms_min": sp.get("min"),
        "latency_p99_ms_max": sp.get("max"),
        "latency_added_p99_ms": lat["gateway_minus_bare_per_message"]["p99_ms"] if lat else None,
        "latency_bare_p99_ms": lat["bare_redis_subscriber"]["p99_ms"] if lat else None,
        "cpu_us_per_event_1_subscriber": lat["gateway_cpu_us_per_delivery"] if lat else None,
    })
    st = res.get("steady")
    s.update({
        "steady_cpu_us_per_event_1_subscriber":
            st["gateway_cpu_us_per_delivery"] if st else None,
        "steady_redis_cpu_us_per_message": st["redis_cpu_us_per_message"] if st else None,
        "steady_batched_%d_ms_cpu_us_per_event_1_subscriber" % STEADY_BATCH_MS:
            st["batched"]["gateway_cpu_us_per_delivery"] if st else None,
        "steady_batched_%d_ms_redis_cpu_us_per_message" % STEADY_BATCH_MS:
            st["batched"]["redis_cpu_us_per_message"] if st else None,
        "idle_gateway_core_percent": st["idle_core_percent"] if st else None,
    })
    burst = {b["subscribers"]: b for b in res.get("burst", [])}
    refs = {r["subscribers"]: r for r in res.get("redis_fanout", [])}
    sus = {t["subscribers"]: t for t in res.get("sustained", [])}
    for n in FANOUTS:
        b, r, t = burst.get(n), refs.get(n), sus.get(n)
        s["burst_deliveries_per_s_%d_subscribers" % n] = b["deliveries_per_s"] if b else None
        s["burst_cpu_us_per_delivery_%d_subscribers" % n] = \
            b["gateway_cpu_us_per_delivery"] if b else None
        s["sustained_max_deliveries_per_s_%d_subscribers" % n] = \
            t["max_deliveries_per_s"] if t else None
        s["redis_fanout_deliveries_per_s_%d_subscribers" % n] = \
            r["deliveries_per_s"] if r else None

    def target(v, ok):
        return None if v is None else ok(v)
    s["target_deliveries_1000_subscribers_ge_500k_per_s"] = target(
        s["sustained_max_deliveries_per_s_1000_subscribers"], lambda v: v >= 500000)
    s["target_idle_connection_le_16KiB"] = target(s["idle_bytes_per_connection"],
                                                  lambda v: v <= 16384)
    s["target_latency_added_p99_le_1ms"] = target(s["latency_added_p99_ms"],
                                                  lambda v: v <= 1.0)
    return s


def main():
    started_at = time.time()
    try:
        args, phases = parse_args()
        run(args, phases, started_at)
    except BenchError as e:
        print("gateway_bench: %s" % e, file=sys.stderr)
        sys.exit(2)
    except PhaseError as e:
        print("gateway_bench: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("gateway_bench: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
