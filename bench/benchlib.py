"""What every benchmark in bench/ shares: the machine stamp, the commit,
process CPU and memory from /proc, the quiet-machine check, statistics over
rounds, and one exception for a precondition that is not met.

A benchmark that cannot run raises BenchError with a message that says what
to do; bench/run (and each script's main) prints it without a traceback.
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
TICKS = os.sysconf("SC_CLK_TCK")

# A round is "under load" when more than this share of the machine's CPU
# time was busy in the seconds before it started (with only the idle
# services of the run up): other work competed for the cores. The load
# average is recorded too, but it cannot decide: it still carries the
# previous round of the same run for a minute.
BUSY_SHARE = 0.25
QUIET_SAMPLE_S = 2.0


class BenchError(Exception):
    """A precondition is not met; the message says which and what to do."""


def fail(msg):
    raise BenchError(msg)


# --- the machine and the build -------------------------------------------------


def _cmd_version(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else None


def mlstream_versions(binary):
    """{component: version} from `mlstream --version` (librdkafka, hiredis,
    torch, ...), plus "mlstream" itself."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    except OSError:
        return {}
    versions = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            versions[parts[0]] = parts[1]
    return versions


def git_commit():
    """The commit benchmarked, with "+changes" when src/ differs from it."""
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (rev + ("+changes" if dirty else "")) or None


def machine(binary=None, env=None):
    """The stamp every result carries: CPU model, cores, memory, kernel,
    load averages now, and the versions of what the figures depend on."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memtotal = int(f.readline().split()[1]) * 1024
    stamp = {"cpu": model, "cores": os.cpu_count(), "memory_bytes": memtotal,
             "kernel": platform.release(), "load_avg": list(os.getloadavg()),
             "commit": git_commit()}
    if binary:
        stamp["versions"] = mlstream_versions(binary)
    else:
        stamp["versions"] = {}
    redis_server = shutil.which("redis-server")
    if redis_server:
        stamp["versions"]["redis"] = _cmd_version([redis_server, "--version"],
                                                  r"v=(\S+)")
    env = env or os.environ
    if env.get("MLSTREAM_KAFKA_VERSION"):
        stamp["versions"]["kafka"] = env["MLSTREAM_KAFKA_VERSION"]
    return stamp


def load_per_core():
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def machine_cpu():
    """(busy, total) jiffies of the whole machine, all cores, from /proc/stat
    (busy: all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def machine_busy(seconds=QUIET_SAMPLE_S):
    """The share of all cores' time spent busy over the next seconds."""
    b0, t0 = machine_cpu()
    time.sleep(seconds)
    b1, t1 = machine_cpu()
    return (b1 - b0) / max(1, t1 - t0)


def service_pid(env, name):
    """The pid of a service that scripts/services started ("kafka",
    "redis"), from the pid file in its MLSTREAM_SERVICES_DIR; None when the
    environment names no such directory (services started some other way)
    or the file is missing."""
    d = env.get("MLSTREAM_SERVICES_DIR")
    try:
        with open(os.path.join(d, name, "pid")) as f:
            pid, started = f.read().split()[:2]
        with open("/proc/%s/stat" % pid) as f:  # the same process, not a reused pid
            if f.read().rsplit(")", 1)[1].split()[19] != started:
                return None
        return int(pid)
    except (TypeError, OSError, ValueError, IndexError):
        return None


def quiet_check():
    """{"busy_before", "load_per_core", "under_load"} for the moment before
    a round: the machine's busy share over QUIET_SAMPLE_S seconds decides.
    A round under load is not refused: it is marked, and the report says
    so."""
    busy = machine_busy()
    return {"busy_before": round(busy, 3), "load_per_core": round(load_per_core(), 3),
            "under_load": busy > BUSY_SHARE}


# --- processes -------------------------------------------------------------------


def cpu_s(pid):
    """utime + stime of a live process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _threads_ns(pid):
    """{tid: (name, CPU ns)} of the live threads of a process, the CPU time
    from /proc/<pid>/task/*/schedstat (nanoseconds: at a low rate a run's
    CPU is a few dozen 10 ms clock ticks, too coarse for a figure per
    message), or from the ticks of .../stat where schedstat is missing."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    ns = int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                ns = (int(fields[11]) + int(fields[12])) * 1000000000 // TICKS
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = (head.split("(", 1)[1], ns)
    return out


def cpu_ns(pid):
    """CPU time of a live process in nanoseconds, summed over its live
    threads (see _threads_ns(); a thread that ended takes its time with it,
    so read it across spans where no thread ends)."""
    return sum(ns for _, ns in _threads_ns(pid).values())


def thread_cpu_s(pid):
    """CPU seconds of each live thread of a process, summed by thread name
    (librdkafka names its threads rdk:main, rdk:broker1, ...)."""
    out = {}
    for name, ns in _threads_ns(pid).values():
        out[name] = out.get(name, 0) + ns / 1e9
    return out


def memory(pid):
    """VmRSS, VmHWM, RssAnon, RssFile of a live process, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


# --- rounds ----------------------------------------------------------------------


def spread(values):
    """{"min", "median", "max", "n"} of the numbers in values (None skipped)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals),
            "n": len(vals)}


def percentile(values, p):
    """The p-th percentile (nearest rank on the sorted values), None if empty."""
    vals = sorted(values)
    if not vals:
        return None
    return vals[min(len(vals) - 1, int(round(p / 100.0 * (len(vals) - 1))))]


# --- preconditions -----------------------------------------------------------------

BUILD_DIR = os.path.abspath(os.environ.get("MLSTREAM_BUILD_DIR", os.path.join(ROOT, "build")))


def build_path(*parts):
    """A file of the build benchmarked ($MLSTREAM_BUILD_DIR, default build/)."""
    return os.path.join(BUILD_DIR, *parts)


def need_file(path, hint):
    """Fails unless path exists; hint says how to get it."""
    if not os.path.exists(path):
        fail("%s is missing: %s" % (os.path.relpath(path, ROOT), hint))
    return path


def need_binary(name):
    """A program of the build (mlstream, mls_model_bench, bench/mls-loadgen, ...)."""
    return need_file(build_path(name),
                     "build it first (bench/run builds what it needs, or "
                     "`ninja -C %s`)" % os.path.relpath(BUILD_DIR, ROOT))


def produce_file(env, topic, path):
    """Produces each line of path as a message to topic with kcat, batched
    (linger.ms 50), and spread evenly over its partitions: with librdkafka's
    default sticky partitioning, messages without a key go to one partition
    for 10 ms at a time, which for a backlog produced in a second or two
    leaves some partitions with most of it (and a second engine of a group
    with little to do)."""
    with open(path, "rb") as f:
        subprocess.run(["kcat", "-P", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic,
                        "-X", "linger.ms=50", "-X", "batch.num.messages=10000",
                        "-X", "sticky.partitioning.linger.ms=0"],
                       stdin=f, stderr=subprocess.PIPE, check=True, timeout=900)


def need_command(name, hint):
    path = shutil.which(name)
    if not path:
        fail("'%s' is not on PATH (%s)" % (name, hint))
    return path


def services(which="all"):
    """mlshelpers.ensure_services, failing with the scripts/services message
    instead of a traceback."""
    from mlshelpers import ensure_services  # tests/integration, on sys.path
    try:
        return ensure_services(which)
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or "").strip().splitlines()[-5:]
        fail("could not start %s with scripts/services: %s"
             % ("Kafka and Redis" if which == "all" else which, " / ".join(tail) or e))


def cluster_services(env, owned=False):
    """(env, started): env with REDIS_CLUSTER_URL / REDIS_CLUSTER_PORTS of the
    3-master cluster of `scripts/services start cluster`, started in env's
    MLSTREAM_SERVICES_DIR unless env already names one; the caller stops it
    (mlshelpers.stop_services(env, "cluster")) when started is true. owned:
    the caller started that directory's services itself, so they may all be
    stopped when it exits (--owner); never so for someone else's."""
    if env.get("REDIS_CLUSTER_URL") and env.get("REDIS_CLUSTER_PORTS"):
        return env, False
    env = dict(env)
    if not env.get("MLSTREAM_SERVICES_DIR"):
        fail("no MLSTREAM_SERVICES_DIR to start the Redis Cluster in "
             "(scripts/services start all cluster; eval \"$(scripts/services env)\")")
    owner = ["--owner", str(os.getpid())] if owned else []
    out = subprocess.run([os.path.join(ROOT, "scripts", "services"), "start", "cluster"]
                         + owner, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        fail("could not start the Redis Cluster with scripts/services: %s"
             % " / ".join(out.stderr.strip().splitlines()[-5:]))
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v.strip("'\"")
    if not env.get("REDIS_CLUSTER_URL"):
        fail("scripts/services start cluster printed no REDIS_CLUSTER_URL")
    return env, True


# --- one result file ---------------------------------------------------------------


class BareSubscriber:
    """`mls-loadgen sub` on a Redis channel: a live subscriber, as in
    production, that costs the machine little (the harness parsing the
    stream in Python would take a core from what is measured) and counts
    what it receives, so a run can tell whether its subscriber kept up."""

    def __init__(self, env, channel, expect, seconds=900):
        from mlshelpers import redis_addr
        host, port = redis_addr(env)
        self.expect = expect
        self.proc = subprocess.Popen(
            [need_binary("bench/mls-loadgen"), "sub", "--redis", "%s:%d" % (host, port),
             "--channel", channel, "--seconds", str(seconds), "--expect", str(expect),
             "--quiet-ms", "5000", "--sample-every", "1000000000"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("{") or json.loads(line).get("ready") != 1:
            self.proc.kill()
            fail("mls-loadgen sub did not subscribe to %s: %r" % (channel, line))

    def received(self, timeout=30):
        """Waits for it to stop (it has all it expects, or nothing came for
        5 s) and returns how many messages it received."""
        try:
            out = self.proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = self.proc.communicate()[0]
        lines = [l for l in out.splitlines() if l.startswith("{")]
        return json.loads(lines[-1]).get("received", 0) if lines else 0

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def add_common_args(ap, name):
    """--out FILE and --quick, which every benchmark takes."""
    ap.add_argument("--out", default=os.path.join(HERE, "out", name + ".json"),
                    help="result file (JSON; default bench/out/%s.json)" % name)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes: a smoke test, not a measurement")


class Result:
    """The JSON a benchmark writes: its name, when, the settings, the quiet
    check and the machine stamp taken before it ran (load average before and
    after), the flat "summary" of key figures (units in the names) and the
    details. Create it before the benchmark starts, call write() at the end."""

    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.quiet = quiet_check()
        self.load_before = list(os.getloadavg())
        self.started = time.time()
        self.data = {}

    def write(self, summary, binary=None, env=None, **detail):
        stamp = machine(binary, env)
        stamp["load_avg_before"] = self.load_before
        stamp["load_avg_after"] = stamp.pop("load_avg")
        res = {"bench": self.name,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started)),
               "wall_s": round(time.time() - self.started, 1),
               "settings": {k: v for k, v in vars(self.args).items() if k != "out"},
               "quiet": self.quiet, "machine": stamp, "summary": summary}
        res.update(detail)
        out = os.path.abspath(self.args.out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=2)
        os.replace(tmp, out)
        return res


def run_main(fn):
    """Runs a benchmark's main(): a precondition that is not met (BenchError),
    a timeout while waiting for something (AssertionError from wait_for) or a
    helper program that failed ends with one line on stderr and a non-zero
    status, not a traceback. Status 2: BenchError; 1: anything else; 130:
    interrupted."""
    prog = os.path.basename(sys.argv[0])
    try:
        fn()
    except BenchError as e:
        print("%s: %s" % (prog, e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        sys.exit(130)
    except AssertionError as e:
        print("%s: %s" % (prog, e or "a check failed"), file=sys.stderr)
        sys.exit(1)
    except subprocess.TimeoutExpired as e:
        print("%s: %s did not finish within %s s" % (
            prog, os.path.basename(str(e.cmd[0] if isinstance(e.cmd, list) else e.cmd)),
            e.timeout), file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print("%s: %s%s" % (prog, e.strerror or e, (": " + e.filename) if e.filename else ""),
              file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        err = e.stderr
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        tail = " / ".join((err or "").strip().splitlines()[-3:])
        print("%s: %s exited with status %s%s" % (
            prog, os.path.basename(str(e.cmd[0] if isinstance(e.cmd, list) else e.cmd)),
            e.returncode, (": " + tail) if tail else ""), file=sys.stderr)
        sys.exit(1)


# --- a Kafka producer without a Python client library -------------------------------


class KafkaProducer:
    """A minimal librdkafka producer through ctypes (the library the engine
    uses; no Python Kafka client needed): produce() sends one message at once
    (linger.ms=0) to a partition chosen by librdkafka. kcat -P cannot stand
    in for it in latency runs: it reads its input in blocks, so the last lines
    written wait in its buffer."""

    def __init__(self, bootstrap, topic, conf=None):
        import ctypes
        import ctypes.util
        self.ct = ctypes
        path = ctypes.util.find_library("rdkafka") or "librdkafka.so.1"
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            fail("librdkafka is not loadable (%s): apt-get install librdkafka1" % e)
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        lib.rd_kafka_conf_new.restype = vp
        lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, sz]
        lib.rd_kafka_new.restype = vp
        lib.rd_kafka_new.argtypes = [ctypes.c_int, vp, cp, sz]
        lib.rd_kafka_topic_new.restype = vp
        lib.rd_kafka_topic_new.argtypes = [vp, cp, vp]
        lib.rd_kafka_produce.argtypes = [vp, ctypes.c_int32, ctypes.c_int, cp, sz, vp, sz, vp]
        lib.rd_kafka_poll.argtypes = [vp, ctypes.c_int]
        lib.rd_kafka_flush.argtypes = [vp, ctypes.c_int]
        lib.rd_kafka_topic_destroy.argtypes = [vp]
        lib.rd_kafka_destroy.argtypes = [vp]
        self.lib = lib
        err = ctypes.create_string_buffer(512)
        c = lib.rd_kafka_conf_new()
        settings = {"bootstrap.servers": bootstrap, "linger.ms": "0"}
        settings.update(conf or {})
        for k, v in settings.items():
            if lib.rd_kafka_conf_set(c, k.encode(), str(v).encode(), err, 512) != 0:
                fail("librdkafka: %s" % err.value.decode())
        self.rk = lib.rd_kafka_new(0, c, err, 512)  # RD_KAFKA_PRODUCER
        if not self.rk:
            fail("librdkafka: %s" % err.value.decode())
        self.rkt = lib.rd_kafka_topic_new(self.rk, topic.encode(), None)

    def produce(self, value):
        while self.lib.rd_kafka_produce(self.rkt, -1, 2, value, len(value),  # UA, F_COPY
                                        None, 0, None) != 0:
            self.lib.rd_kafka_poll(self.rk, 1)  # queue full: serve delivery reports
        self.lib.rd_kafka_poll(self.rk, 0)

    def close(self, timeout_ms=10000):
        if self.rk:
            self.lib.rd_kafka_flush(self.rk, timeout_ms)
            self.lib.rd_kafka_topic_destroy(self.rkt)
            self.lib.rd_kafka_destroy(self.rk)
            self.rk = None
