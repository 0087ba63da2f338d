"""Helpers for the integration tests: a Redis subscriber speaking RESP over
a socket, kcat wrappers, an engine process, and waiting for conditions."""
import collections
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MLSTREAM = os.environ.get("MLSTREAM_BIN", os.path.join(ROOT, "build", "mlstream"))
SERVICES = os.path.join(ROOT, "scripts", "services")
CHANNEL = "ml:stream:inference"


def ensure_services(which="all"):
    """Returns (env, started): the caller's environment when it already names
    the services `which` needs (KAFKA_BOOTSTRAP_SERVERS / REDIS_URL), else
    one with a fresh Kafka broker and/or Redis from scripts/services, which
    the caller stops with stop_services(env, which) when started is true.
    os.environ is updated too, for helpers that read it."""
    need = {"all": ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"),
            "kafka": ("KAFKA_BOOTSTRAP_SERVERS",), "redis": ("REDIS_URL",)}[which]
    env = dict(os.environ)
    if all(env.get(k) for k in need):
        return env, False
    env["MLSTREAM_SERVICES_DIR"] = env.get("MLSTREAM_SERVICES_DIR") or \
        tempfile.mkdtemp(prefix="mlstream-svc.")
    out = subprocess.run([SERVICES, "start", which, "--owner", str(os.getpid())],
                         env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v.strip("'\"")
    os.environ.update({k: env[k] for k in need})
    return env, True


def stop_services(env, which="all"):
    subprocess.run([SERVICES, "stop", which], env=env, check=False)


def wait_for(cond, timeout, what):
    """Polls cond() until it returns a true value; fails after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.05)


def redis_addr(env):
    m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", env["REDIS_URL"])
    return m.group(1), int(m.group(2))


class Subscriber:
    """Collects every message published on a Redis channel, in order."""

    def __init__(self, env, channel=CHANNEL):
        self.sock = socket.create_connection(redis_addr(env))
        self.messages = []
        self.parsed = []  # json.loads of messages[:len(parsed)]
        self.lock = threading.Lock()
        self._reader_init()
        ch = channel.encode()
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(ch), ch))
        reply = self._read()
        assert reply[0] == b"subscribe", reply
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _reader_init(self):
        # what was received and not parsed yet is buf[pos:]: consumed bytes
        # are dropped once per recv, not once per message, so reading is
        # linear in what arrives (the harness shares the cores with what
        # it tests)
        self.buf = bytearray()
        self.pos = 0

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError
        del self.buf[:self.pos]
        self.pos = 0
        self.buf += data

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                break
            self._fill()
        line = bytes(self.buf[self.pos:end])
        self.pos = end + 2
        return line

    def _read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"*":
            return [self._read() for _ in range(int(rest))]
        if t == b"$":
            n = int(rest)
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            data = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n + 2
            return data
        if t == b":":
            return int(rest)
        return rest

    def _run(self):
        try:
            while True:
                msg = self._read()
                if msg[0] == b"message":
                    with self.lock:
                        self.messages.append(msg[2])
        except (EOFError, OSError):
            pass

    def payloads(self, type_="prediction"):
        """The messages of that type, parsed (each parsed once: callers
        poll this while thousands arrive). Do not modify them."""
        with self.lock:
            new = self.messages[len(self.parsed):]
        self.parsed.extend(json.loads(m) for m in new)
        return [p for p in self.parsed if p.get("type") == type_]

    def raw(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        self.sock.close()


def produce(env, topic, lines, key=None):
    """Produces one Kafka message per line with kcat."""
    data = "".join(l + "\n" for l in lines).encode("utf-8", "surrogateescape")
    args = ["kcat", "-P", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic]
    if key:
        args += ["-K", key]
    subprocess.run(args, input=data, check=True, timeout=60)


def kcat_produce(env, topic, lines, partition=None):
    """Produces one Kafka message per line (bytes, up to 1 MB each) with
    kcat, to the given partition or where librdkafka's partitioner puts
    them (keyless, it sticks to one partition for a while: a short burst
    may leave others empty)."""
    data = b"".join(l + b"\n" for l in lines)
    where = [] if partition is None else ["-p", str(partition)]
    subprocess.run(["kcat", "-P", "-b", env["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic, *where,
                    "-X", "message.max.bytes=1000000"], input=data, check=True, timeout=120)


def produce_to(env, topic, partition, lines):
    """Produces one message per line (str) to one partition of topic."""
    kcat_produce(env, topic, [l.encode() for l in lines], partition=partition)


def lag_of(eng, topic):
    """{partition: lag} the engine's consumer lag gauge exports for topic."""
    return {int(dict(l)["partition"]): v for (n, l), v in eng.metrics().items()
            if n == "ml_stream_kafka_consumer_lag" and dict(l).get("topic") == topic}


def good_input(i):
    """A small valid input message (bytes) with input_id g<i>."""
    return json.dumps({"input_id": "g%d" % i, "features": [i % 13, 1]}).encode()


def consume_all(env, topic, expect, timeout=30):
    """Reads a topic from the beginning until it holds expect messages.
    Returns [(headers dict, value bytes)]."""
    def read():
        r = subprocess.run(["kcat", "-C", "-b", env["KAFKA_BOOTSTRAP_SERVERS"],
                            "-t", topic, "-o", "beginning", "-e", "-q",
                            "-f", "%h\t%S\t%s\n"],
                           capture_output=True, timeout=60)
        out = []
        for line in r.stdout.split(b"\n"):
            if not line:
                continue
            h, size, rest = line.split(b"\t", 2)
            hdrs = {}
            if h:
                for kv in h.decode().split(","):
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        hdrs[k] = v
            out.append((hdrs, rest))
        return out if len(out) >= expect else None

    return wait_for(read, timeout, "%d messages on %s" % (expect, topic))


# Short group timeouts, so that fault tests see rebalances within seconds.
FAST_GROUP = {"KAFKA_CONF_SESSION_TIMEOUT_MS": "6000",
              "KAFKA_CONF_HEARTBEAT_INTERVAL_MS": "500"}


def messages(prefix, n):
    """n input messages with input ids prefix0..prefix{n-1}."""
    return [json.dumps({"input_id": "%s%d" % (prefix, i), "features": [i % 97, 1]})
            for i in range(n)]


def output_ids(env, topic, want, timeout=120):
    """Reads the output topic until every id in want is there (or the time
    is up) and returns a Counter of the ids seen, duplicates included."""
    seen = collections.Counter()

    def complete():
        out = consume_all(env, topic, 0, timeout=timeout)
        seen.clear()
        seen.update(json.loads(v)["input_id"] for _, v in out)
        return want <= set(seen)
    try:
        wait_for(complete, timeout, "every input on %s" % topic)
    except AssertionError:
        pass  # the caller reports what is missing
    return seen


def topic_create(env, name, partitions, *options):
    """Creates a topic; options go to Kafka's TopicCommand, e.g.
    "--config", "max.message.bytes=10000"."""
    subprocess.run([SERVICES, "topic", "create", name, str(partitions), *options],
                   env=env, check=True, capture_output=True, timeout=120)


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$", line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric_sum(metrics, name, **labels):
    want = set(labels.items())
    return sum(v for (n, l), v in metrics.items() if n == name and want <= set(l))


def threads(pid):
    """The fields of /proc/<pid>/task/*/status of each live thread of pid
    (Name, voluntary_ctxt_switches...)."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                lines = f.read().splitlines()
        except OSError:  # the thread ended meanwhile
            continue
        out.append({k: v.strip() for k, v in (l.split(":\t", 1) for l in lines if ":\t" in l)})
    return out


def kafka_clients(pid):
    """How many librdkafka clients process pid runs: each has one thread
    named rdk:main."""
    return sum(t["Name"] == "rdk:main" for t in threads(pid))


def timer_slacks(pid, name):
    """The timer slack (ns) of each live thread of process pid called name,
    sorted."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() != name:
                    continue
            with open("/proc/%s/timerslack_ns" % tid) as f:
                out.append(int(f.read()))
        except OSError:  # the thread ended meanwhile
            continue
    return sorted(out)


class Engine:
    """An `mlstream engine` process with its own metrics port and log."""

    def __init__(self, env, topic, group=None, extra_env=None, args=(), user=None,
                 binary=None):
        self.port = free_port()
        self.env = dict(env)
        self.env.update({
            "KAFKA_INFERENCE_TOPIC": topic,
            "KAFKA_CONSUMER_GROUP": group or "g-" + topic,
            "KAFKA_DLQ_TOPIC": topic + ".dlq",
            "ML_PROMETHEUS_PORT": str(self.port),
            "ML_PROMETHEUS_HOST": "127.0.0.1",
            "ML_HEARTBEAT_INTERVAL_MS": "1000",
        })
        self.env.update(extra_env or {})
        self.log = open("/tmp/mlstream-engine-%s-%d.log" % (topic, self.port), "w+")
        # user: a uid to run as, with the gid of the same number and no
        # other groups (65534: nobody, nogroup), e.g. to hold the engine to
        # a per-user limit that root is exempt from; binary: another copy
        ids = {} if user is None else {"user": user, "group": user, "extra_groups": []}
        self.proc = subprocess.Popen([binary or MLSTREAM, "engine", *args], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, **ids)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("engine exited %s:\n%s" % (self.proc.returncode, self.output()))
            return http_get(self.url("/readyz"))[0] == 200
        wait_for(ready, timeout, "engine /readyz")

    def metrics(self):
        status, text = http_get(self.url("/metrics"))
        assert status == 200, status
        return parse_metrics(text)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- Redis Cluster
# The cluster of `scripts/services start cluster`: REDIS_CLUSTER_URL (seeds)
# and REDIS_CLUSTER_PORTS (every node, all on 127.0.0.1).

CLUSTER_HOST = "127.0.0.1"


class RespError(Exception):
    """An error reply, e.g. MOVED 1234 127.0.0.1:7001."""


class RedisConn(Subscriber):
    """A plain RESP connection to one Redis node (Subscriber's reader)."""

    def __init__(self, port, host=CLUSTER_HOST, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._reader_init()

    def command(self, *args):
        """Sends one command; returns its reply, raises RespError for an
        error reply."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()

    def _reply(self):
        line = self._line()
        if line[:1] == b"-":
            raise RespError(line[1:].decode())
        self.pos -= len(line) + 2  # not an error: read it again as a reply
        return self._read()


def cluster_ports(env):
    return [int(p) for p in env["REDIS_CLUSTER_PORTS"].split(",")]


def cluster_command(port, *args):
    """One command to the cluster node on port; its reply."""
    c = RedisConn(port)
    try:
        return c.command(*args)
    finally:
        c.close()


def cluster_live_ports(env):
    """The nodes that accept connections now."""
    live = []
    for p in cluster_ports(env):
        try:
            socket.create_connection((CLUSTER_HOST, p), timeout=2).close()
            live.append(p)
        except OSError:
            pass
    return live


def cluster_slot_owners(env):
    """{slot range (start, end): master port} as the first live node sees
    it."""
    for p in cluster_live_ports(env):
        try:
            return {(int(r[0]), int(r[1])): int(r[2][1])
                    for r in cluster_command(p, "CLUSTER", "SLOTS")}
        except (OSError, RespError, EOFError):
            continue
    raise AssertionError("no cluster node answers CLUSTER SLOTS")


def cluster_owner(env, channel):
    """The port of the master that owns channel's hash slot."""
    port = cluster_live_ports(env)[0]
    slot = int(cluster_command(port, "CLUSTER", "KEYSLOT", channel))
    for (lo, hi), owner in cluster_slot_owners(env).items():
        if lo <= slot <= hi:
            return owner
    raise AssertionError("no node serves slot %d of %s" % (slot, channel))


def cluster_ok(env):
    """True when every live node says cluster_state:ok and no slot range
    names a node that is down."""
    live = cluster_live_ports(env)
    for p in live:
        try:
            info = cluster_command(p, "CLUSTER", "INFO").decode()
        except (OSError, RespError, EOFError):
            return False
        if "cluster_state:ok" not in info:
            return False
    try:
        owners = cluster_slot_owners(env)
    except AssertionError:
        return False
    return all(o in live for o in owners.values())


class ShardSubscriber(Subscriber):
    """Collects every message of one shard channel (SSUBSCRIBE) on the
    node at port. closed is set when the node goes away, unsubscribed when
    it gives the channel's slot up (Redis sends a sunsubscribe)."""

    def __init__(self, port, channel, host=CLUSTER_HOST):
        self.port = port
        self.channel = channel
        self.sock = socket.create_connection((host, port), timeout=10)
        self.messages = []
        self.parsed = []
        self.lock = threading.Lock()
        self._reader_init()
        self.closed = self.unsubscribed = False
        ch = channel.encode()
        try:
            self.sock.sendall(b"*2\r\n$10\r\nSSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(ch), ch))
            reply = RedisConn._reply(self)
        except BaseException:
            self.sock.close()
            raise
        assert reply[0] == b"ssubscribe", reply
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                msg = self._read()
                if msg[0] == b"smessage":
                    with self.lock:
                        self.messages.append(msg[2])
                elif msg[0] == b"sunsubscribe":
                    self.unsubscribed = True
        except (EOFError, OSError):
            pass
        self.closed = True


def shard_subscribe(env, channel, timeout=30):
    """A ShardSubscriber at the node that owns channel's slot, asking again
    while a failover or slot move makes the answer wrong (MOVED)."""
    def attempt():
        try:
            return ShardSubscriber(cluster_owner(env, channel), channel)
        except (OSError, RespError, EOFError, AssertionError):
            return None
    return wait_for(attempt, timeout, "a shard subscription to %s" % channel)


# ---------------------------------------------------------------- gateways

class Gateway:
    """An `mlstream gateway` process on a port of its own (GATEWAY_PORT=0:
    the port it logs it listens on), with its log in a file."""

    def __init__(self, env, extra_env=None):
        self.env = dict(env, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT="0", ML_LOG_LEVEL="info")
        self.env.update(extra_env or {})
        self.log = tempfile.NamedTemporaryFile("w+", prefix="mlstream-gateway-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen([MLSTREAM, "gateway"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.log.close()  # the log stays, for a failed test's post-mortem

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("gateway exited %s:\n%s" % (self.proc.returncode,
                                                                 self.output()))
            m = re.search(r"listening on [^\s:]+:(\d+)", self.output())
            return m and int(m.group(1))
        self.port = wait_for(listening, 60, "the gateway to listen")
        self.base = "http://127.0.0.1:%d" % self.port
        self.ws = "ws://127.0.0.1:%d/graphql" % self.port

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def ready(self):
        return http_get(self.base + "/readyz")[0] == 200

    def metrics(self):
        status, text = http_get(self.base + "/metrics")
        assert status == 200, status
        return parse_metrics(text)

    def metric(self, name, **labels):
        return metric_sum(self.metrics(), name, **labels)

    def graphql(self, query, variables=None):
        """POST /graphql; the response's data (fails on errors)."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.base + "/graphql", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.loads(r.read())
        assert not doc.get("errors"), doc
        return doc["data"]

    def local_ports(self):
        return proc_local_ports(self.proc.pid)

    def stop(self, timeout=60):
        """SIGTERM; the exit status (0: a clean stop, no leaks under ASan)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def proc_local_ports(pid):
    """The local TCP ports of process pid's sockets (from /proc)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        m = re.match(r"socket:\[(\d+)\]$", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def client_list(port, host=CLUSTER_HOST):
    """CLIENT LIST of the Redis node on port: one dict per connection, with
    "port" (the client's own port, from addr=) added."""
    out = []
    for line in cluster_command(port, "CLIENT", "LIST").decode().splitlines():
        c = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        c["port"] = int(c["addr"].rsplit(":", 1)[1])
        out.append(c)
    return out


class RoundFeeder(threading.Thread):
    """Calls produce_round(n) for n = first, first + 1, ... until halted,
    each call producing one whole round (one kcat, never cut short);
    finish() halts it and returns the first round not produced."""

    def __init__(self, produce_round, first=0):
        super().__init__(daemon=True)
        self.produce_round = produce_round
        self.next = first
        self.error = None
        self.halt = threading.Event()
        self.start()

    def run(self):
        try:
            while not self.halt.is_set():
                self.produce_round(self.next)
                self.next += 1
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self):
        self.halt.set()
        self.join(120)
        assert not self.is_alive() and self.error is None, self.error
        return self.next
