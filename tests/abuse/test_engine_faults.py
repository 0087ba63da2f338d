"""Faults and hostile backlogs against a real engine, Kafka broker and
Redis. Each test ends with every input accounted for (delivered or
dead-lettered, listed exactly) or with the bound it must hold."""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from mlshelpers import (CHANNEL, FAST_GROUP, MLSTREAM, SERVICES, Subscriber, cluster_ok,
                        consume_all, free_port, http_get, kafka_clients, messages, metric_sum,
                        output_ids, parse_metrics, produce, shard_subscribe, topic_create,
                        wait_for)

# Under AddressSanitizer RSS is mostly shadow memory and quarantine: the
# memory bounds are asserted in the normal build only.
SANITIZED = os.environ.get("MLS_SANITIZED") == "1"


class PrivateRedis:
    """A redis-server of this test's own on a fixed port, so that the test
    can stop and start it without disturbing the shared one."""

    def __init__(self):
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_for(up, 20, "redis-server on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def rss_mb(pid, field="VmRSS"):
    """pid's resident memory now (VmHWM: its peak so far), in MB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def test_rebalance_while_redis_down_loses_nothing(services, topic, engines):
    """Redis stops; a second engine joins and takes half the partitions
    while the first holds undelivered messages of all four. Eager and
    cooperative assignors: every input reaches the output topic once
    Redis is back."""
    for strategy, tag in (("cooperative-sticky", "c"), ("range", "e")):
        redis = PrivateRedis()
        group = "g-%s-%s" % (tag, topic)
        env = dict(FAST_GROUP, KAFKA_OUTPUT_TOPIC=topic + ".out", REDIS_URL=redis.url,
                   REDIS_RETRY_MAX_MS="200",
                   KAFKA_CONF_PARTITION_ASSIGNMENT_STRATEGY=strategy)
        try:
            a = engines(topic=topic, group=group, extra_env=env)
            a.wait_ready()
            wait_for(lambda: metric_sum(a.metrics(), "ml_stream_kafka_assigned_partitions") == 4,
                     60, "the first engine to hold all partitions")
            redis.stop()
            produce(services, topic, messages(tag, 400))
            wait_for(lambda: http_get(a.url("/readyz"))[0] == 503, 60,
                     "the first engine to notice Redis is down")
            b = engines(topic=topic, group=group, extra_env=env)
            wait_for(lambda: metric_sum(a.metrics(), "ml_stream_kafka_assigned_partitions") == 2
                     and metric_sum(b.metrics(), "ml_stream_kafka_assigned_partitions") == 2,
                     90, "the partitions to be shared (%s)" % strategy)
            assert "revoked" in a.output()
            redis.start()
            want = {"%s%d" % (tag, i) for i in range(400)}
            ids = output_ids(services, topic + ".out", want)
            missing = want - set(ids)
            assert not missing, "%s: %d inputs lost, e.g. %s" % (
                strategy, len(missing), sorted(missing)[:5])
            assert a.stop() == 0 and b.stop() == 0
        finally:
            redis.stop()


def test_idle_engine_notices_redis_gone_and_comes_back(services, topic, engines):
    """With nothing to score, heartbeats are the engine's only traffic to
    Redis. Redis is stopped, then (the half-open case: connected, never
    answering) SIGSTOPped, each time with no input at all: /readyz turns
    503 and ml_stream_redis_connected 0 within the heartbeat interval plus
    the 5 s reply deadline, and once Redis is back the heartbeats resume
    and /readyz is 200 again, still without any input. Inputs sent then are
    all delivered. With Redis away once more and nothing owed to it,
    SIGTERM ends the engine with status 0 well within its drain time."""
    redis = PrivateRedis()
    env = {"REDIS_URL": redis.url, "REDIS_RETRY_MAX_MS": "200",
           "ML_SHUTDOWN_TIMEOUT_MS": "60000",
           "ML_HEARTBEAT_INTERVAL_MS": "200", "ML_ENGINE_ID": "idle-engine"}
    sub = None
    try:
        eng = engines(topic=topic, extra_env=env)
        eng.wait_ready()
        for fault in ("stopped", "SIGSTOP"):
            if fault == "stopped":
                redis.stop()
            else:
                redis.proc.send_signal(signal.SIGSTOP)
            wait_for(lambda: http_get(eng.url("/readyz"))[0] == 503, 30,
                     "an idle engine to see Redis %s" % fault)
            # and it stays so: its retries (a stopped Redis still accepts
            # connections) do not count as connected until Redis answers
            until = time.monotonic() + 2
            while time.monotonic() < until:
                assert http_get(eng.url("/readyz"))[0] == 503, fault
                assert metric_sum(eng.metrics(), "ml_stream_redis_connected") == 0, fault
                time.sleep(0.05)
            if fault == "stopped":
                redis.start()
            else:
                redis.proc.send_signal(signal.SIGCONT)
            if sub:
                sub.close()
            sub = Subscriber({"REDIS_URL": redis.url})
            wait_for(lambda: len([b for b in sub.payloads("heartbeat")
                                  if b["engine_id"] == "idle-engine"]) >= 2, 30,
                     "heartbeats again after Redis was %s, without any input" % fault)
            wait_for(lambda: http_get(eng.url("/readyz"))[0] == 200, 30,
                     "/readyz 200 again after Redis was %s" % fault)
            assert metric_sum(eng.metrics(), "ml_stream_redis_connected") == 1
        out = eng.output()
        assert out.count("delivery resumed") >= 2, out
        produce(services, topic, messages("h", 50))
        want = {"h%d" % i for i in range(50)}
        wait_for(lambda: want <= {p["input_id"] for p in sub.payloads()}, 60,
                 "every input after the outages delivered")
        # Redis away again, everything delivered: SIGTERM ends the engine
        # at once with status 0 (nothing is owed to Redis), not at the end
        # of the drain time with "undelivered"
        redis.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: http_get(eng.url("/readyz"))[0] == 503, 30,
                 "an idle engine to see Redis SIGSTOPped again")
        assert eng.stop(timeout=30) == 0, eng.output()[-2000:]
        assert "undelivered" not in eng.output()
    finally:
        if sub:
            sub.close()
        if redis.proc.poll() is None:
            redis.proc.send_signal(signal.SIGCONT)
        redis.stop()


class Relay:
    """A TCP server on a loopback port of its own in front of a real Redis
    (upstream_port). Each connection is handed to serve(), on a thread of
    its own, in the order they come; upstream_for() opens its connection to
    Redis and relays Redis' side back, pipe() relays one direction."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        raise NotImplementedError

    def upstream_for(self, c):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=self.pipe, args=(up, c), daemon=True).start()
        return up

    @staticmethod
    def pipe(a, b):
        """Relays a to b until either ends, then ends both."""
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()


class HostileRedis(Relay):
    """A TCP server in front of a real Redis whose first connections each
    answer the engine's first command with one of `answers` (a reply of
    bytes, then with endless=True filler until the engine hangs up, at
    most 256 MB; with a third item, drip seconds, the filler goes a byte
    at a time, one each drip); later connections are relayed to the real
    Redis. With pong=True a connection answers PING as Redis does and
    keeps its answer for the first other command."""

    CAP = 256 << 20

    def __init__(self, upstream_port, answers, pong=False):
        self.answers = list(answers)
        self.pong = pong
        self.sent = []  # filler bytes each hostile connection got out
        self.lock = threading.Lock()
        super().__init__(upstream_port)

    def serve(self, c):
        with self.lock:
            answer = self.answers.pop(0) if self.answers else None
        if answer:
            self._hostile(c, *answer)
        else:
            self.pipe(c, self.upstream_for(c))

    def _hostile(self, c, reply, endless, drip=0):
        sent = 0
        try:
            while (c.recv(65536) == b"*1\r\n$4\r\nPING\r\n"  # the engine's first command
                   and self.pong):
                c.sendall(b"+PONG\r\n")
            c.sendall(reply)
            filler = b"x" * (1 if drip else 65536)
            while endless and sent < self.CAP:
                # dripping: until the engine hangs up (EOF; what else it
                # sends, more of its commands, is dropped)
                if drip and select.select([c], [], [], drip)[0]:
                    if not c.recv(65536):
                        break
                    continue
                sent += c.send(filler)
        except OSError:
            pass
        self.sent.append(sent)
        c.close()


class HeartbeatEater(Relay):
    """A relay to a real Redis that, once the engine has sent n predictions
    through it, swallows the engine's next heartbeat and all it sends after
    that, on every connection, new ones too: Redis stops answering right
    after taking the predictions. Replies to what went through still reach
    the engine."""

    PREDICTION = b'"type":"prediction"'
    HEARTBEAT = b'"type":"heartbeat"'

    def __init__(self, upstream_port, n):
        self.n = n
        self.predictions = 0
        self.eaten = threading.Event()
        super().__init__(upstream_port)

    def serve(self, c):
        tail = b""  # a marker may straddle two reads
        try:
            up = None if self.eaten.is_set() else self.upstream_for(c)
            while not self.eaten.is_set():
                data = c.recv(65536)
                if not data:
                    break
                seen = tail + data
                if self.predictions >= self.n and self.HEARTBEAT in seen:
                    self.eaten.set()
                    break
                self.predictions += seen.count(self.PREDICTION) - tail.count(self.PREDICTION)
                tail = seen[-len(self.PREDICTION):]
                up.sendall(data)
            while c.recv(65536):  # swallowed
                pass
        except OSError:
            pass
        c.close()


def test_unanswered_heartbeat_does_not_undo_the_batch_redis_answered(services, topic, engines):
    """The engine hands Redis a batch and reads the replies with the next
    batch's, or alone 100 ms later; a heartbeat due before then is flushed
    on the same connection. Here Redis answers the predictions and then
    nothing (a relay swallows the next heartbeat and everything after it):
    the engine goes down over the heartbeat, yet the batch Redis answered
    counts as delivered, not to be sent again. SIGTERM then ends the
    engine with status 0 as soon as its reconnect attempt gives up, not at
    the end of the drain time with the batch "undelivered"; each input
    reached the subscriber exactly once."""
    n = 50
    redis = PrivateRedis()
    relay = HeartbeatEater(redis.port, n)
    sub = Subscriber({"REDIS_URL": redis.url})
    try:
        eng = engines(topic=topic, extra_env={
            "REDIS_URL": "redis://127.0.0.1:%d/0" % relay.port, "REDIS_RETRY_MAX_MS": "200",
            "ML_HEARTBEAT_INTERVAL_MS": "100", "ML_SHUTDOWN_TIMEOUT_MS": "60000"})
        eng.wait_ready()
        produce(services, topic, messages("hb", n))
        wait_for(lambda: http_get(eng.url("/readyz"))[0] == 503, 30,
                 "the engine to give up on its unanswered heartbeat")
        assert relay.eaten.is_set()
        assert "heartbeat not delivered" in eng.output(), eng.output()[-2000:]
        wait_for(lambda: len(sub.payloads()) >= n, 10, "the %d predictions Redis took" % n)
        assert sorted(p["input_id"] for p in sub.payloads()) == sorted(
            "hb%d" % i for i in range(n))
        # a reconnect attempt takes up to the 5 s reply deadline
        t0 = time.monotonic()
        try:
            assert eng.stop(timeout=20) == 0, eng.output()[-2000:]
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not end the engine within 20 s (drain time 60 s): "
                        + eng.output()[-2000:])
        print("BUDGET: engine down over an unanswered heartbeat, %d delivered, ended %.1f s "
              "after SIGTERM (drain time 60 s)" % (n, time.monotonic() - t0))
        assert "undelivered" not in eng.output()
    finally:
        sub.close()
        relay.close()
        redis.stop()


# The two tests below give the engine a Redis user "eng" whose ACL allows
# only the engine's heartbeat channel until the test allows the
# predictions' channel too.
ACL_CONTROL = "ml:stream:inference:control"
ACL_CHANNEL = "ml:stream:inference:{default}"


def acl_user(redis, *rule):
    subprocess.run(["redis-cli", "-p", str(redis.port), "ACL", "SETUSER", "eng"] + list(rule),
                   check=True, capture_output=True, timeout=10)


def acl_engine_env(redis, **extra):
    return dict({"REDIS_URL": "redis://eng:s3cret@127.0.0.1:%d/0" % redis.port,
                 "ML_STREAM_REDIS_CHANNEL_MODE": "per-model", "REDIS_RETRY_MAX_MS": "200"},
                **extra)


def redis_refusals_seen(eng, at_least):
    status, text = http_get(eng.url("/metrics"))
    return status == 200 and metric_sum(parse_metrics(text), "ml_stream_publish_failures_total",
                                        sink="redis") >= at_least


def test_redis_refusing_an_unacknowledged_batch_loses_nothing(services, topic, engines):
    """In a backlog the engine hands Redis a batch and scores the next one
    before the first is acknowledged. Here Redis refuses the predictions'
    channel (an ACL that allows the engine's heartbeats only) when the
    engine starts on a backlog, so the refusal of the first batch is read
    only after the next was sent: the engine drops the connection, pauses,
    and sends both again until Redis takes them. Once the channel is
    allowed the subscriber sees every input."""
    redis = PrivateRedis()
    n = 20000
    acl_user(redis, "on", ">s3cret", "~*", "resetchannels", "&" + ACL_CONTROL, "+@all")
    produce(services, topic, messages("u", n))
    sub = Subscriber({"REDIS_URL": redis.url}, channel=ACL_CHANNEL)
    try:
        eng = engines(topic=topic, extra_env=acl_engine_env(redis))
        wait_for(lambda: redis_refusals_seen(eng, 3), 60, "refused deliveries")
        assert not sub.payloads()
        acl_user(redis, "&" + ACL_CHANNEL)
        want = {"u%d" % i for i in range(n)}
        wait_for(lambda: want <= {p["input_id"] for p in sub.payloads()}, 120,
                 "every input published once Redis takes them")
        assert "NOPERM" in eng.output() or "permission" in eng.output()
        assert eng.stop() == 0
    finally:
        sub.close()
        redis.stop()


def test_refusal_of_a_lone_message_is_read_without_more_input(services, topic, engines):
    """At a trickle the engine does not wait for Redis' reply to a batch: it
    reads it with the next batch's, or once ACK_WAIT_MS (100 ms) passed with
    no next batch. Here one message arrives on its own, Redis refuses its
    channel, and nothing else comes: no more input, and no heartbeat for an
    hour to read the reply with. The refusal must still be read (the bound
    on how long an acknowledgment waits), the engine must pause and say
    why, and once Redis takes the channel the message is published."""
    redis = PrivateRedis()
    acl_user(redis, "on", ">s3cret", "~*", "resetchannels", "&" + ACL_CONTROL, "+@all")
    sub = Subscriber({"REDIS_URL": redis.url}, channel=ACL_CHANNEL)
    try:
        eng = engines(topic=topic, extra_env=acl_engine_env(
            redis, ML_HEARTBEAT_INTERVAL_MS="3600000"))
        eng.wait_ready()
        produce(services, topic, messages("lone", 1))
        wait_for(lambda: redis_refusals_seen(eng, 1), 30,
                 "the refusal of the lone message to be read")
        wait_for(lambda: http_get(eng.url("/readyz"))[0] == 503, 10,
                 "the engine to pause (/readyz 503)")
        assert "NOPERM" in eng.output() or "permission" in eng.output()
        assert not sub.payloads()
        acl_user(redis, "&" + ACL_CHANNEL)
        wait_for(lambda: {p["input_id"] for p in sub.payloads()} == {"lone0"}, 60,
                 "the lone message published once Redis takes it")
        wait_for(lambda: http_get(eng.url("/readyz"))[0] == 200, 30,
                 "the engine to resume (/readyz 200)")
        assert eng.stop() == 0
    finally:
        sub.close()
        redis.stop()


def test_malformed_backlog_memory_bounded_offsets_advance(services, topic, engines):
    """300,000 malformed ~300-byte messages waiting in the topic: the engine
    dead-letters them in bounded batches, its RSS stays under 64 MB (34 MB
    seen: ML_PREFETCH_MAX_BYTES is 4 MiB), and
    dead letters flow (and offsets are stored) while it drains."""
    n = 300000
    bad = json.dumps({"features": "x", "pad": "p" * 270})
    data = ("".join(bad + "\n" for _ in range(n))).encode()
    subprocess.run(["kcat", "-P", "-b", services["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic],
                   input=data, check=True, timeout=300)
    eng = engines(topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
    peak = [0.0]
    first_dlq_at = []
    stop = threading.Event()

    def sample():
        while not stop.is_set() and eng.proc.poll() is None:
            peak[0] = max(peak[0], rss_mb(eng.proc.pid))
            time.sleep(0.05)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        def dead():
            v = metric_sum(eng.metrics(), "ml_stream_dead_letters_total")
            if v > 0 and not first_dlq_at:
                first_dlq_at.append(v)
            return v >= n
        wait_for(lambda: http_get(eng.url("/metrics"))[0] == 200, 60, "metrics")
        wait_for(dead, 300, "every malformed message dead-lettered")
    finally:
        stop.set()
        t.join()
    print("BUDGET: engine peak RSS on a %d-message malformed backlog: %.1f MB" % (n, peak[0]))
    assert SANITIZED or peak[0] <= 64, "engine RSS %.0f MB > 64 MB" % peak[0]
    # dead letters went out in many batches, not one flush at the end
    assert first_dlq_at and first_dlq_at[0] < n
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_inference_errors_total", stage="decode") == n
    assert eng.stop() == 0
    warnings = [l for l in eng.output().splitlines() if "rejected" in l]
    assert 0 < len(warnings) <= 40, "rejections are logged, rate-limited"


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_good_backlog_memory_bounded(services, topic, engines, mode):
    """A million good messages waiting in four partitions: librdkafka's
    prefetch is bounded by ML_PREFETCH_MAX_BYTES (4 MiB by default) over all
    partitions, about 5x that resident with small messages, so the engine
    stays within 64 MB (44 MB seen on 2-core machines). Exactly once, with an
    output topic, the producer adds what it holds until the broker acks it:
    within 96 MB (65 MB seen). A backlog held in memory would be ~500 MB."""
    n = 1000000
    line = json.dumps({"model_id": "m", "input_id": "x",
                       "features": [[0.1, 0.2, 0.3, 0.4]], "metadata": {"tenant": "a"}})
    subprocess.run(["kcat", "-P", "-b", services["KAFKA_BOOTSTRAP_SERVERS"], "-t", topic],
                   input=((line + "\n") * n).encode(), check=True, timeout=300)
    env = {"ML_LOG_LEVEL": "warn"}
    if mode == "exactly-once":
        topic_create(services, topic + ".out", 4)
        env.update(KAFKA_OUTPUT_TOPIC=topic + ".out", ML_EXACTLY_ONCE="true",
                   ML_ENGINE_ID="mem-" + topic)
    eng = engines(topic=topic, extra_env=env)
    peak = 0.0
    deadline = time.monotonic() + 300
    while True:
        assert eng.proc.poll() is None, eng.output()
        peak = max(peak, rss_mb(eng.proc.pid))
        status, text = http_get(eng.url("/metrics"))
        if status == 200 and metric_sum(parse_metrics(text),
                                        "ml_stream_inference_predictions_total") >= n:
            break
        assert time.monotonic() < deadline, "backlog not drained"
        time.sleep(0.05)
    print("BUDGET: engine peak RSS draining %d good messages, %s: %.1f MB" % (n, mode, peak))
    bound = 64 if mode == "at-least-once" else 96
    assert SANITIZED or peak <= bound, "engine RSS %.0f MB > %d MB" % (peak, bound)
    # With no batch wait (the default) a batch takes what the consumer's
    # queue holds; a backlog never lets that run dry, so the batch size
    # limit (ML_BATCH_MAX_ROWS, 256) is what closes every batch.
    m = parse_metrics(text)
    calls = metric_sum(m, "ml_stream_batch_rows_count")
    within = metric_sum(m, "ml_stream_batch_rows_bucket", le="256")
    print("BUDGET: %d model calls, %.0f rows each on average, largest bound 256"
          % (calls, n / calls))
    assert within == calls, "%d of %d model calls had more than 256 rows" % (calls - within,
                                                                            calls)
    assert calls <= n / 32, "batches did not grow with the backlog: %d calls" % calls
    assert eng.stop() == 0


def assert_refused(eng, hostile, who, reasons):
    """Every hostile answer was asked for and refused with a warning naming
    it, the never-ending ones within what the kernel's socket buffers take
    beyond the engine's read bound; the engine's peak RSS within 64 MB; it
    stops cleanly."""
    log = eng.output()
    for why in reasons:
        assert why in log, "no warning naming %r:\n%s" % (why, log[-3000:])
    assert not hostile.answers, "every hostile answer was asked for"
    assert max(hostile.sent) < 32 << 20, hostile.sent
    peak = rss_mb(eng.proc.pid, "VmHWM")
    print("BUDGET: engine against %s: filler sent before hang-up %s bytes, peak RSS %.1f MB"
          % (who, hostile.sent, peak))
    assert SANITIZED or peak <= 64, "engine peak RSS %.0f MB > 64 MB" % peak
    assert eng.stop() == 0


def test_hostile_redis_replies_are_refused_within_a_bound_and_lose_nothing(
        services, topic, engines):
    """The engine's Redis answers with what PUBLISH never gets (an array
    header claiming a billion elements, a bulk string) and with replies that
    never end (a status line, a 2 GB bulk string, each streamed until the
    engine hangs up, and a status line a byte each 0.25 s, each read well
    within the socket's timeout). Each time the engine drops the connection
    with a warning that names the reply, having read at most 64 KiB of it
    or waited 5 s for it, and reconnects; its memory stays bounded, and
    once Redis behaves every input reaches the subscriber."""
    redis = PrivateRedis()
    hostile = HostileRedis(redis.port, [(b"*1000000000\r\n", False),
                                        (b"$3\r\nabc\r\n", False),
                                        (b"+", True),
                                        (b"$2000000000\r\n", True),
                                        (b"+", True, 0.25)])
    n = 2000
    produce(services, topic, messages("h", n))
    sub = Subscriber({"REDIS_URL": redis.url})
    try:
        eng = engines(topic=topic, extra_env={
            "REDIS_URL": "redis://127.0.0.1:%d/0" % hostile.port,
            "REDIS_RETRY_MAX_MS": "200", "ML_LOG_LEVEL": "warn"})
        want = {"h%d" % i for i in range(n)}
        wait_for(lambda: want <= {p.get("input_id") for p in sub.payloads()}, 120,
                 "every input published once Redis behaves")
        assert_refused(eng, hostile, "a hostile Redis",
                       ("an array reply", "a bulk string reply", "passed 64 KiB without ending",
                        "no whole reply within 5000 ms"))
        assert hostile.sent[-1] < 64, "the dripped reply was given up after ~20 bytes"
    finally:
        sub.close()
        hostile.close()
        redis.stop()


def many_masters(n):
    """A CLUSTER SLOTS reply giving slots 0..n-1 each to a master of its own
    (127.0.0.1, ports 10000 on): every master must answer on connect, so
    this is how many connections the map would have the engine open."""
    return b"*%d\r\n" % n + b"".join(
        b"*3\r\n:%d\r\n:%d\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n" % (i, i, 10000 + i)
        for i in range(n))


def test_hostile_cluster_seed_is_refused_within_a_bound_and_loses_nothing(
        services, topic, engines):
    """The engine's only Redis Cluster seed sits behind a proxy that answers
    its first five CLUSTER SLOTS (after the PING that opens each connection)
    with what no node gives: an array header claiming a billion elements, a
    status line that never ends, a 2 GB bulk string that never ends (each
    streamed until the engine hangs up), a slot map of the wrong shape, and
    one naming 4,097 masters (a connect opens every master: the map's cap
    on nodes bounds the connections a seed can make the engine open). Each
    is refused with a warning naming it, the never-ending ones after at most
    64 KiB of a line or 1 MiB of a reply; the engine's memory stays
    bounded, and once the seed relays to the real node, every input reaches
    its model's shard channel."""
    if not services.get("REDIS_CLUSTER_URL"):
        pytest.skip("REDIS_CLUSTER_URL unset: scripts/services start cluster")
    wait_for(lambda: cluster_ok(services), 60, "every cluster node to say cluster_state:ok")
    seed = int(services["REDIS_CLUSTER_URL"][len("redis://"):].split(",")[0].split(":")[1]
               .split("/")[0])
    hostile = HostileRedis(seed, [(b"*1000000000\r\n", False),
                                  (b"+", True),
                                  (b"$2000000000\r\n", True),
                                  (b"*1\r\n:5\r\n", False),
                                  (many_masters(4097), False)], pong=True)
    models = ["hc-%s-%d" % (topic[-6:], i) for i in range(6)]
    subs = [shard_subscribe(services, "%s:{%s}" % (CHANNEL, m)) for m in models]
    n = 600
    produce(services, topic, [json.dumps({"input_id": "hc%d" % i, "model_id": models[i % 6],
                                          "features": [i]}) for i in range(n)])
    try:
        eng = engines(topic=topic, extra_env={
            "REDIS_CLUSTER": "true", "ML_STREAM_REDIS_CHANNEL_MODE": "per-model",
            "REDIS_URL": "redis://127.0.0.1:%d" % hostile.port,
            "REDIS_RETRY_MAX_MS": "200", "ML_LOG_LEVEL": "warn"})

        def delivered():
            got = set()
            for s in subs:
                got |= {p.get("input_id") for p in s.payloads()}
            return got
        want = {"hc%d" % i for i in range(n)}
        wait_for(lambda: want <= delivered(), 120,
                 "every input on its model's shard channel once the seed behaves")
        assert_refused(eng, hostile, "a hostile cluster seed",
                       ("more than 65,536 elements", "a reply line passed 64 KiB without ending",
                        "a reply passed 1 MiB without ending", "CLUSTER SLOTS: entry 1",
                        "more than 4096 nodes"))
    finally:
        for s in subs:
            s.close()
        hostile.close()


def test_metrics_listener_not_wedged_by_stalled_clients(services, topic, engines):
    """Clients that ask for /metrics and never read, or connect and say
    nothing, do not block /healthz; 1,100 model ids do not grow /metrics
    past the cap and no prediction goes uncounted; a request trickled a
    byte at a time is answered, one past the request caps refused."""
    eng = engines(topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
    eng.wait_ready()
    produce(services, topic, [json.dumps({"model_id": "m%d" % i, "features": [1]})
                              for i in range(1100)])
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_messages_consumed_total") >= 1100,
             60, "1,100 messages consumed")
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") == 1100,
             60, "1,100 predictions counted")
    m = eng.metrics()
    ids = {dict(l)["model_id"] for (n, l) in m if n == "ml_stream_inference_predictions_total"}
    assert len(ids) <= 102 and "__other__" in ids  # 100 + __other__ + unknown
    status, text = http_get(eng.url("/metrics"))
    print("BUDGET: engine /metrics size with 1,100 model ids: %d bytes" % len(text))
    stalled = []
    try:
        for _ in range(40):  # more than the listener's 32 client slots
            s = socket.create_connection(("127.0.0.1", eng.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(s)
        for _ in range(10):
            stalled.append(socket.create_connection(("127.0.0.1", eng.port)))
        worst = 0.0
        for _ in range(20):
            t0 = time.monotonic()
            status, body = http_get(eng.url("/healthz"))
            worst = max(worst, time.monotonic() - t0)
            assert status == 200 and body == "ok\n"
        print("BUDGET: engine /healthz worst latency with 50 stalled clients: %.1f ms"
              % (worst * 1000))
        assert worst < 1.0
    finally:
        for s in stalled:
            s.close()
    # a request sent a byte at a time is answered; a head that fills the
    # 8 KiB cap, or a path past the server's 1 KiB, is refused with 400
    assert raw_request(eng.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                       step=1).endswith(b"\r\n\r\nok\n")
    for req in (b"GET /" + b"a" * 8186, b"GET /" + b"a" * 1024 + b" HTTP/1.1\r\n\r\n"):
        assert raw_request(eng.port, req).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert eng.stop() == 0


def raw_request(port, data, step=None):
    """Sends data to 127.0.0.1:port (in pieces of step bytes) and returns
    everything the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), step or len(data)):
            s.sendall(data[i:i + (step or len(data))])
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_sigterm_while_broker_down_exits_within_drain_time(services, topic, engines):
    """The broker goes away mid-stream, while the engine waits for the
    output topic to acknowledge a batch; SIGTERM still ends the engine
    within ML_SHUTDOWN_TIMEOUT_MS (plus process start-up slack), not after
    librdkafka's 30 s message timeout."""
    eng = engines(topic=topic, extra_env=dict(FAST_GROUP, KAFKA_OUTPUT_TOPIC=topic + ".out",
                                              ML_SHUTDOWN_TIMEOUT_MS="3000"))
    eng.wait_ready()
    produce(services, topic, messages("t", 50000))
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") >= 5000,
             60, "the engine mid-stream")
    subprocess.run([SERVICES, "stop", "--keep", "kafka"], env=services, check=True,
                   capture_output=True, timeout=120)
    try:
        t0 = time.monotonic()
        eng.proc.send_signal(signal.SIGTERM)
        rc = eng.proc.wait(timeout=60)
        took = time.monotonic() - t0
        print("BUDGET: engine exit after SIGTERM with the broker down: %.1f s" % took)
        assert took < 3.0 + 5.0, "took %.1f s" % took
        assert rc in (0, 1)
    finally:
        subprocess.run([SERVICES, "start", "kafka"], env=services, check=True,
                       capture_output=True, timeout=180)


def test_second_sigterm_ends_a_stuck_drain_at_once_and_loses_nothing(services, topic, engines):
    """Redis is down and the engine holds undelivered messages with a 60 s
    drain budget: the first SIGTERM starts the drain, a second one ends the
    process at once with status 1 and says why. A second engine of the
    group then delivers every input: nothing was committed that was not
    delivered."""
    redis = PrivateRedis()
    env = dict(FAST_GROUP, KAFKA_OUTPUT_TOPIC=topic + ".out", REDIS_URL=redis.url,
               REDIS_RETRY_MAX_MS="200", ML_SHUTDOWN_TIMEOUT_MS="60000")
    try:
        a = engines(topic=topic, extra_env=env)
        a.wait_ready()
        produce(services, topic, messages("s", 300))
        wait_for(lambda: metric_sum(a.metrics(), "ml_stream_inference_predictions_total") >= 300,
                 60, "the first 300 inputs scored")
        redis.stop()
        produce(services, topic, messages("s", 600)[300:])
        wait_for(lambda: http_get(a.url("/readyz"))[0] == 503, 60,
                 "the engine to notice Redis is down")
        a.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # lets the drain begin; it then has 59 s to go
        assert a.proc.poll() is None, "the engine left before its drain budget:\n" + a.output()
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        rc = a.proc.wait(timeout=30)
        took = time.monotonic() - t0
        print("BUDGET: engine exit after a second SIGTERM: %.2f s" % took)
        assert took < 2.0, "took %.1f s" % took
        assert rc == 1
        # the line names the step it cut short
        assert "shutdown deadline passed while draining the engine" in a.output(), a.output()
        redis.start()
        b = engines(topic=topic, extra_env=env)
        b.wait_ready()
        want = {"s%d" % i for i in range(600)}
        missing = want - set(output_ids(services, topic + ".out", want))
        assert not missing, "%d inputs lost, e.g. %s" % (len(missing), sorted(missing)[:5])
        assert b.stop() == 0
    finally:
        redis.stop()


NOBODY = 65534


def limit_threads(pid, n):
    """Sets the soft RLIMIT_NPROC of process pid (run as NOBODY) to n: the
    tasks that user may have, so that with n at or below what it runs, the
    process cannot start another thread. Set as that user: root here may
    not change another user's limits."""
    subprocess.run(["prlimit", "--pid", str(pid), "--nproc=%s:" % n], check=True,
                   user=NOBODY, group=NOBODY, extra_groups=[])


def test_dead_letter_producer_that_cannot_be_made_yet_is_retried(services, topic, engines):
    """When the first bad message comes, the dead-letter producer is made;
    if it cannot be (here: the engine may start no thread, as when a host
    runs out of processes), the engine says why, holds the batch rather
    than skip the bad message, and delivers it and every prediction once it
    can."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the engine as another user")
    # a copy that user can run, wherever the build is (/root is 0700)
    bindir = tempfile.mkdtemp(prefix="mls-nobody.")
    os.chmod(bindir, 0o755)
    binary = shutil.copy2(MLSTREAM, bindir)
    try:
        dead_letter_retried(services, topic, engines, binary)
    finally:
        shutil.rmtree(bindir)


def dead_letter_retried(services, topic, engines, binary):
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env={"ML_LOG_LEVEL": "warn"}, user=NOBODY, binary=binary)
    eng.wait_ready()
    good = ['{"input_id": "c%d", "features": [%d]}' % (i, i) for i in range(16)]
    produce(services, topic, good[:8])
    wait_for(lambda: len(sub.payloads()) >= 8, 60, "the first 8 predictions")
    with open("/proc/%d/limits" % eng.proc.pid) as f:
        was = next(l.split()[3] for l in f if l.startswith("Max processes"))
    limit_threads(eng.proc.pid, 1)
    produce(services, topic, ["not json"] + good[8:])
    wait_for(lambda: "Failed to create thread" in eng.output(), 60,
             "the engine to say it cannot make the producer")
    assert "pausing consumption" in eng.output()
    assert eng.proc.poll() is None, "the engine goes on"
    assert http_get(eng.url("/readyz"))[0] == 503, "not ready while it cannot deliver"
    assert kafka_clients(eng.proc.pid) == 1
    limit_threads(eng.proc.pid, was)
    dlq = consume_all(services, topic + ".dlq", 1)
    assert [v for _, v in dlq] == [b"not json"]
    preds = wait_for(lambda: (lambda p: p if len(p) >= 16 else None)(sub.payloads()),
                     60, "the 16 predictions")
    assert sorted(p["input_id"] for p in preds) == sorted("c%d" % i for i in range(16))
    assert kafka_clients(eng.proc.pid) == 2
    wait_for(lambda: http_get(eng.url("/readyz"))[0] == 200, 30, "ready again")
    assert eng.stop() == 0  # and, under ASan, no failed attempt leaked
    sub.close()
