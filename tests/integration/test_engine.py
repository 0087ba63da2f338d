"""mlstream engine end to end on a real Kafka broker and a real Redis."""
import json
import random
import re
import signal
import subprocess
import time
import uuid

from mlshelpers import (MLSTREAM, SERVICES, Subscriber, consume_all, http_get, kafka_clients,
                        metric_sum, produce, threads, timer_slacks, wait_for)

GOOD = 2000
INFERENCE_NS = uuid.UUID("f46be9bf-7623-585b-9ca0-435ffcedda0f")


def good_message(i, rng):
    rows = [[round(rng.uniform(-10, 10), 3) for _ in range(3)]
            for _ in range(1 + i % 3)]
    msg = {"input_id": "event-%d" % i, "features": rows if i % 2 else rows[0] if len(rows) == 1 else rows,
           "metadata": {"tenant": "t%d" % (i % 5), "seq": i}}
    if i % 7:
        msg["model_id"] = "threat-detector-v%d" % (i % 2)
    return msg, rows


# One of each malformed class of DESIGN §3, with the reason the dead-letter
# header must carry.
BAD = [
    ("not json at all", "invalid_json"),
    ('{"features": [1, 2', "invalid_json"),
    ('{"input_id": "\udcff", "features": [1]}', "invalid_json"),
    ("[1, 2, 3]", "not_object"),
    ('{"model_id": "m"}', "missing_features"),
    ('{"features": []}', "bad_features"),
    ('{"features": ["a", "b"]}', "bad_features"),
    ('{"features": [[1, 2], [3]]}', "ragged_rows"),
    ('{"features": [NaN, 1]}', "non_finite"),
    ('{"features": [1e999]}', "non_finite"),
    ('{"model_id": 7, "features": [1]}', "bad_field"),
    ('{"input_id": "%s", "features": [1]}' % ("x" * 600), "bad_field"),
    ('{"features": [%s]}' % ",".join(["1"] * 700), "oversize"),
]


def test_pipeline_end_to_end(services, topic, engines):
    rng = random.Random(42)
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env={"ML_MAX_MESSAGE_BYTES": "1024",
                                          "ML_DEFAULT_MODEL_ID": "fallback"})
    eng.wait_ready()
    expected = {}
    lines = []
    for i in range(GOOD):
        msg, rows = good_message(i, rng)
        line = json.dumps(msg)
        expected[msg["input_id"]] = (msg, rows, line)
        lines.append(line)
        if i % 150 == 0:
            bad, _ = BAD[(i // 150) % len(BAD)]
            lines.append(bad)
    bad_sent = [l for l in lines if not l.startswith('{"input_id": "event-')]
    produce(services, topic, lines)

    preds = wait_for(lambda: (lambda p: p if len(p) >= GOOD else None)(sub.payloads()),
                     90, "%d predictions" % GOOD)
    ids = [p["input_id"] for p in preds]
    assert len(ids) == len(set(ids)) == GOOD, "each good message exactly once"
    for p in preds:
        msg, rows, line = expected[p["input_id"]]
        assert p["type"] == "prediction"
        assert p["model_id"] == msg.get("model_id", "fallback")
        assert p["predictions"] == [[float(x) for x in r] for r in rows] or \
            all(abs(a - b) < 1e-5 for r1, r2 in zip(p["predictions"], rows) for a, b in zip(r1, r2))
        assert len(p["predictions"]) == len(rows)
        assert p["metadata"] == msg["metadata"]
        # docs/reference.md, "Inference ids" (identity: no model version)
        assert p["inference_id"] == str(uuid.uuid5(INFERENCE_NS, "%s/%d/%d//%s" % (
            topic, p["kafka"]["partition"], p["kafka"]["offset"], p["model_id"])))
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", p["received_at"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", p["published_at"])
        assert p["published_at"] >= p["received_at"]
        assert 0 <= p["latency_ms"] < 10000
        assert p["kafka"]["topic"] == topic
        assert 0 <= p["kafka"]["partition"] < 4
    # per-partition order is kept: offsets rise within each partition
    last = {}
    for p in preds:
        part, off = p["kafka"]["partition"], p["kafka"]["offset"]
        assert off > last.get(part, -1)
        last[part] = off

    dlq = consume_all(services, topic + ".dlq", len(bad_sent))
    assert len(dlq) == len(bad_sent), "the dead-letter topic holds exactly the bad ones"
    assert sorted(v for _, v in dlq) == sorted(l.encode("utf-8", "surrogateescape") for l in bad_sent)
    want_reason = dict((b.encode("utf-8", "surrogateescape"), r) for b, r in BAD)
    for hdrs, value in dlq:
        assert hdrs["mls.error.reason"] == want_reason[value], (value[:60], hdrs)
        assert hdrs["mls.source.topic"] == topic
        assert hdrs.get("mls.error.message")

    def counts_settled():
        m = eng.metrics()
        return m if metric_sum(m, "ml_stream_inference_predictions_total") == GOOD else None
    m = wait_for(counts_settled, 10, "metrics to count every prediction")
    assert metric_sum(m, "ml_stream_inference_errors_total") == len(bad_sent)
    assert metric_sum(m, "ml_stream_dead_letters_total") == len(bad_sent)
    assert metric_sum(m, "ml_stream_messages_consumed_total") == len(lines)
    assert metric_sum(m, "ml_stream_inference_latency_seconds_count") == GOOD
    n7 = sum(1 for i in range(GOOD) if i % 7 == 0)
    assert metric_sum(m, "ml_stream_inference_predictions_total", model_id="fallback") == n7
    assert eng.stop() == 0
    sub.close()


def test_heartbeats(services, topic, engines):
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env={"ML_ENGINE_ID": "hb-engine"})
    eng.wait_ready()
    beats = wait_for(lambda: [b for b in sub.payloads("heartbeat")
                              if b["engine_id"] == "hb-engine"][:2] or None
                     if len([b for b in sub.payloads("heartbeat")
                             if b["engine_id"] == "hb-engine"]) >= 2 else None,
                     15, "two heartbeats")
    for b in beats:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", b["at"])
        assert isinstance(b["models"], list)
    eng.stop()


def test_restart_resumes_from_committed_offsets(services, topic, engines):
    sub = Subscriber(services)
    group = "g-restart-" + topic
    first = engines(topic=topic, group=group)
    first.wait_ready()
    produce(services, topic, [json.dumps({"input_id": "a%d" % i, "features": [i]})
                              for i in range(1000)])
    wait_for(lambda: len(sub.payloads()) >= 1000, 60, "first 1000 predictions")
    assert first.stop() == 0, first.output()
    produce(services, topic, [json.dumps({"input_id": "b%d" % i, "features": [i]})
                              for i in range(1000)])
    second = engines(topic=topic, group=group)
    second.wait_ready()
    wait_for(lambda: len(sub.payloads()) >= 2000, 60, "all 2000 predictions")
    ids = [p["input_id"] for p in sub.payloads()]
    assert set(ids) == {"a%d" % i for i in range(1000)} | {"b%d" % i for i in range(1000)}
    # a clean stop commits everything: nothing is scored twice
    assert len(ids) == 2000
    assert second.stop() == 0


def test_what_has_arrived_is_scored_together_without_a_batch_wait(services, topic, engines):
    # A backlog is already there when the engine starts: with no batch wait
    # (ML_BATCH_MAX_WAIT_US=0, the default) each batch still takes what the
    # consumer holds, up to ML_BATCH_MAX_ROWS, instead of one message each.
    n = 2000
    produce(services, topic, [json.dumps({"input_id": "q%d" % i, "features": [i]})
                              for i in range(n)])
    sub = Subscriber(services)
    try:
        eng = engines(topic=topic, extra_env={"ML_BATCH_MAX_WAIT_US": "0",
                                              "ML_BATCH_MAX_ROWS": "100"})
        eng.wait_ready()
        wait_for(lambda: len(sub.payloads()) >= n, 60, "%d predictions" % n)
        m = eng.metrics()
        batches = metric_sum(m, "ml_stream_batch_rows_count")
        assert metric_sum(m, "ml_stream_batch_rows_sum") == n
        print("%d messages in %d batches" % (n, batches))
        # full batches but for the tails of the prefetches
        assert n / 100 <= batches <= n / 10, batches
        assert eng.stop() == 0
    finally:
        sub.close()


def test_batches_close_on_input_bytes(services, topic, engines):
    # ML_BATCH_MAX_BYTES bounds what a batch holds on a backlog, whatever
    # the row limit: 520-byte messages and 1,024 bytes close every batch at
    # two messages (the one that reaches the limit closes it), where the
    # row limit alone would take 256.
    n = 400
    lines = []
    for i in range(n):
        doc = {"input_id": "y%d" % i, "features": [i], "metadata": {"pad": ""}}
        doc["metadata"]["pad"] = "p" * (520 - len(json.dumps(doc)))
        lines.append(json.dumps(doc))
    assert {len(l) for l in lines} == {520}
    produce(services, topic, lines)
    sub = Subscriber(services)
    try:
        eng = engines(topic=topic, extra_env={"ML_BATCH_MAX_BYTES": "1024",
                                              "ML_BATCH_MAX_ROWS": "256"})
        eng.wait_ready()
        wait_for(lambda: len(sub.payloads()) >= n, 60, "%d predictions" % n)
        assert sorted(p["input_id"] for p in sub.payloads()) == sorted("y%d" % i for i in range(n))
        m = eng.metrics()
        calls = metric_sum(m, "ml_stream_batch_rows_count")
        within = metric_sum(m, "ml_stream_batch_rows_bucket", le="2")
        assert metric_sum(m, "ml_stream_batch_rows_sum") == n
        assert within == calls >= n / 2, (within, calls)
        assert eng.stop() == 0
    finally:
        sub.close()


def test_model_series_capped_by_ml_metrics_max_models(services, topic, engines):
    # ML_METRICS_MAX_MODELS=3: the first three model ids seen get series of
    # their own; every later id is counted under model_id="__other__", and
    # the counts still add up to every message. ("unknown", for messages
    # whose model id never resolved, is there from the start, outside the
    # cap.)
    first = ["cap-a", "cap-b", "cap-c"]
    later = ["cap-d", "cap-e", "cap-f", "cap-g"]
    eng = engines(topic=topic, extra_env={"ML_METRICS_MAX_MODELS": "3"})
    eng.wait_ready()
    produce(services, topic, [json.dumps({"model_id": m, "features": [1]})
                              for m in first for _ in range(2)])
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") == 6,
             60, "the first six predictions counted")
    produce(services, topic, [json.dumps({"model_id": m, "features": [1]})
                              for m in later + first for _ in range(5)])
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") == 41,
             60, "all 41 predictions counted")
    m = eng.metrics()
    counts = {dict(l)["model_id"]: v for (n, l), v in m.items()
              if n == "ml_stream_inference_predictions_total"}
    assert counts == {"cap-a": 7, "cap-b": 7, "cap-c": 7, "__other__": 20,
                      "unknown": 0}, counts
    assert eng.stop() == 0


def test_bad_configuration_fails_fast(tmp_path):
    props = tmp_path / "client.properties"
    props.write_text("security.protocol=plaintext\nbootstrap.servers=pkc-1.example.com:9092\n")
    props.chmod(0o600)
    for env, needle in [({"ML_BATCH_MAX_ROWS": "0"}, "ML_BATCH_MAX_ROWS"),
                        ({"ML_MODEL_FRAMEWORK": "onnx"}, "ML_MODEL_FRAMEWORK"),
                        ({"REDIS_URL": "http://nope"}, "REDIS_URL"),
                        ({"ML_MODEL_FRAMEWORK": "tensorflow", "ML_MODEL_PATH": "/nonexistent"},
                         "ML_MODEL"),
                        # judged by librdkafka only when it makes a producer:
                        # the dead-letter producer is made later, so the
                        # engine checks its settings at start-up
                        ({"KAFKA_CONF_ACKS": "1"}, "`acks` must be set to `all`"),
                        # properties the engine sets itself: another value
                        # would be replaced without a word, or (a producer
                        # made transactional outside ML_EXACTLY_ONCE) stall
                        # the engine at its first dead letter
                        ({"KAFKA_CONF_GROUP_ID": "scorers"},
                         "KAFKA_CONF_* (group.id): group.id=scorers, but mlstream sets group.id "
                         'from KAFKA_CONSUMER_GROUP (now "ml-streaming"): set '
                         "KAFKA_CONSUMER_GROUP instead"),
                        ({"KAFKA_CONFIG_FILE": str(props)},
                         "KAFKA_CONFIG_FILE %s:2: bootstrap.servers=pkc-1.example.com:9092, but "
                         "mlstream sets bootstrap.servers from KAFKA_BOOTSTRAP_SERVERS" % props),
                        ({"KAFKA_CONF_TRANSACTIONAL_ID": "scorer-1"},
                         "transactional.id may not be set: it is for ML_EXACTLY_ONCE=true")]:
        r = subprocess.run([MLSTREAM, "engine"], env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2, (env, r.stderr)
        assert needle in r.stderr, (env, r.stderr)


def test_misspelt_setting_is_reported_with_the_one_meant(services, topic, engines):
    """A typo in a variable's name would leave the setting at its default
    without a word: the engine names the variable and the setting it is
    closest to at start-up, and runs on (the variable is ignored). The
    gateway's settings (one env file for both) and other programs'
    KAFKA_/REDIS_ variables are not reported. A misspelt flag stops it,
    naming the flag meant."""
    eng = engines(topic=topic, extra_env={
        "ML_BATCH_MAX_ROW": "1", "GATEWAY_PORT": "4999",
        "REDIS_HOST": "elsewhere", "KAFKA_HEAP_OPTS": "-Xmx1G",
        "KAFKA_GROUP_ID": "theirs", "KAFKA_TOPIC": "theirs"})
    eng.wait_ready()
    out = eng.output()
    assert ("ML_BATCH_MAX_ROW is set but is no mlstream setting: ignored "
            "(did you mean ML_BATCH_MAX_ROWS?)") in out, out
    # other clients' names for settings of ours that are set too
    for other in ("GATEWAY_PORT", "REDIS_HOST", "KAFKA_HEAP_OPTS", "KAFKA_GROUP_ID",
                  "KAFKA_TOPIC"):
        assert other not in out, out
    assert eng.stop() == 0

    r = subprocess.run([MLSTREAM, "engine", "--batch-max-row=1"], env=services,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert 'unknown option "--batch-max-row" (did you mean --batch-max-rows?)' in r.stderr, \
        r.stderr


def test_other_clients_names_for_our_settings_are_reported():
    """KAFKA_GROUP_ID, KAFKA_TOPIC, KAFKA_BROKERS, REDIS_HOST: what other
    clients call settings of ours. Set while ours is unset, the engine would
    run on the default group, topic, brokers or Redis without a word, so it
    names the setting it reads at start-up (set beside ours, they are
    another program's: the test above). acks=1 then stops it."""
    r = subprocess.run([MLSTREAM, "engine"], capture_output=True, text=True, timeout=30,
                       env={"KAFKA_GROUP_ID": "scorers", "KAFKA_TOPIC": "events",
                            "KAFKA_BROKERS": "b1:9092", "REDIS_HOST": "cache",
                            "KAFKA_CONF_ACKS": "1"})
    assert r.returncode == 2, r.stderr
    for name, ours in [("KAFKA_GROUP_ID", "KAFKA_CONSUMER_GROUP"),
                       ("KAFKA_TOPIC", "KAFKA_INFERENCE_TOPIC"),
                       ("KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS"),
                       ("REDIS_HOST", "REDIS_URL")]:
        assert ("%s is set but is no mlstream setting: ignored (mlstream reads %s, "
                "which is unset)" % (name, ours)) in r.stderr, r.stderr


def test_dead_letter_producer_is_made_by_the_first_bad_message(services, topic, engines):
    """With a dead-letter topic and no output topic (the default), the
    engine runs its consumer alone, no idle producer with its threads and
    connections, until a message is bad; then it dead-letters it and the
    stream goes on. The consumer's threads sleep with a millisecond of
    timer slack (against librdkafka 2.0's spinning before its timers); the
    engine thread and the producer's threads keep the process's own."""
    sub = Subscriber(services)
    eng = engines(topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
    eng.wait_ready()
    produce(services, topic, ['{"input_id": "a%d", "features": [%d]}' % (i, i) for i in range(20)])
    wait_for(lambda: len(sub.payloads()) >= 20, 60, "the first 20 predictions")
    assert kafka_clients(eng.proc.pid) == 1, "only the consumer before any bad message"
    own = timer_slacks(eng.proc.pid, "mlstream")
    assert len(own) == 1 and own[0] != 1000000, own
    assert timer_slacks(eng.proc.pid, "rdk:main") == [1000000]
    produce(services, topic, ["not json"] + ['{"input_id": "b%d", "features": [%d]}' % (i, i)
                                             for i in range(20)])
    dlq = consume_all(services, topic + ".dlq", 1)
    assert [v for _, v in dlq] == [b"not json"]
    assert dlq[0][0]["mls.error.reason"] == "invalid_json"
    preds = wait_for(lambda: (lambda p: p if len(p) >= 40 else None)(sub.payloads()),
                     60, "the 40 predictions")
    assert sorted(p["input_id"] for p in preds) == sorted(
        ["a%d" % i for i in range(20)] + ["b%d" % i for i in range(20)])
    # the batching producer, made for the dead letter; the one that sends
    # a refused message alone is not needed yet
    assert kafka_clients(eng.proc.pid) == 2
    assert timer_slacks(eng.proc.pid, "rdk:main") == sorted([own[0], 1000000])
    assert eng.stop() == 0
    sub.close()


def thread_sleeps(pid, name):
    """Voluntary context switches of process pid's thread called name: the
    times it went to sleep, each after it was woken (or started)."""
    for t in threads(pid):
        if t["Name"] == name:
            return int(t["voluntary_ctxt_switches"])
    raise AssertionError("no thread %s in process %d" % (name, pid))


def test_idle_metrics_server_sleeps_until_scraped(services, topic, engines):
    """The /metrics server wakes for a client, not on a clock: with no
    client it sleeps (it used to wake every second)."""
    eng = engines(topic=topic)
    eng.wait_ready()  # a client of /readyz, answered and gone
    before = thread_sleeps(eng.proc.pid, "mls:metrics")
    time.sleep(3)  # an idle window: a thread on a 1 s clock wakes 2-3 times
    # at most once: it may still be closing the /readyz connection
    assert thread_sleeps(eng.proc.pid, "mls:metrics") - before <= 1
    before = thread_sleeps(eng.proc.pid, "mls:metrics")
    eng.metrics()
    # it is the thread that serves: woken by the scrape, it sleeps again
    # once it has answered and the client has gone
    wait_for(lambda: thread_sleeps(eng.proc.pid, "mls:metrics") > before, 10,
             "the metrics thread to serve the scrape and sleep again")
    assert eng.stop() == 0


def test_idle_engine_loop_sleeps_until_work(services, topic, engines):
    """An idle engine's loop sleeps until its next deadline (here the next
    heartbeat, an hour away), not on a clock, and still answers at once what
    comes from elsewhere: a SIGHUP reloads the model and a SIGTERM stops
    it."""
    eng = engines(topic=topic, extra_env={"ML_HEARTBEAT_INTERVAL_MS": "3600000"})
    eng.wait_ready()
    before = thread_sleeps(eng.proc.pid, "mlstream")
    time.sleep(3)  # an idle window: a loop on a 100 ms clock sleeps ~30 times
    # librdkafka's statistics (every 5 s) reach the loop as a callback
    assert thread_sleeps(eng.proc.pid, "mlstream") - before <= 3

    eng.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "the identity model has nothing to reload" in eng.output(), 20,
             "the engine to take the SIGHUP")
    assert eng.stop(timeout=20) == 0


def test_help_lists_every_option():
    r = subprocess.run([MLSTREAM, "engine", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for flag in ("--kafka-bootstrap-servers", "--kafka-inference-topic", "--redis-url",
                 "--model-framework", "--model-path", "--prometheus-port",
                 "--batch-max-rows", "--batch-max-wait-us", "--kafka-dlq-topic"):
        assert flag in r.stdout


def test_metrics_pass_promtool(services, topic, engines):
    eng = engines(topic=topic)
    eng.wait_ready()
    produce(services, topic, ['{"model_id":"m\\"1","features":[1]}', "bad"])
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_messages_consumed_total") >= 2,
             30, "two messages consumed")
    status, text = http_get(eng.url("/metrics"))
    assert status == 200
    for name in ("ml_stream_inference_latency_seconds_bucket",
                 "ml_stream_inference_predictions_total",
                 "ml_stream_inference_errors_total"):
        assert name in text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert http_get(eng.url("/healthz"))[0] == 200
    assert http_get(eng.url("/nope"))[0] == 404


def test_redis_outage_pauses_and_loses_nothing(services, topic, engines):
    """Redis stopped mid-stream: the engine pauses, /readyz says 503, and once
    Redis is back every message reaches Redis and the output topic. No
    heartbeat in the test's time and batches of 50: the first batch after
    the stop, written while more wait, is what must find Redis gone, before
    it counts as published."""
    eng = engines(topic=topic, extra_env={"KAFKA_OUTPUT_TOPIC": topic + ".out",
                                          "REDIS_RETRY_MAX_MS": "200",
                                          "ML_HEARTBEAT_INTERVAL_MS": "3600000",
                                          "ML_BATCH_MAX_ROWS": "50"})
    eng.wait_ready()
    produce(services, topic, [json.dumps({"input_id": "a%d" % i, "features": [i]})
                              for i in range(300)])
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") >= 300,
             30, "the first 300 predictions")
    subprocess.run([SERVICES, "stop", "--keep", "redis"], env=services, check=True,
                   capture_output=True)
    try:
        produce(services, topic, [json.dumps({"input_id": "b%d" % i, "features": [i]})
                                  for i in range(300)])
        wait_for(lambda: http_get(eng.url("/readyz"))[0] == 503, 30, "/readyz to say 503")
        m = eng.metrics()
        assert metric_sum(m, "ml_stream_inference_predictions_total") == 300
        assert metric_sum(m, "ml_stream_redis_connected") == 0
        assert eng.proc.poll() is None, "the engine keeps running"
    finally:
        subprocess.run([SERVICES, "start", "redis"], env=services, check=True,
                       capture_output=True)
    wait_for(lambda: http_get(eng.url("/readyz"))[0] == 200, 30, "/readyz to recover")
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") >= 600,
             30, "all 600 predictions")
    out = consume_all(services, topic + ".out", 600)
    ids = {json.loads(v)["input_id"] for _, v in out}
    assert ids == {"a%d" % i for i in range(300)} | {"b%d" % i for i in range(300)}
    assert eng.stop() == 0


def test_per_model_channels(services, topic, engines):
    """ML_STREAM_REDIS_CHANNEL_MODE=per-model: each model's predictions on
    its own channel, heartbeats on the control channel, nothing on the
    single channel."""
    models = ("pm-a", "pm-b")
    subs = {m: Subscriber(services, "ml:stream:inference:{%s}" % m) for m in models}
    control = Subscriber(services, "ml:stream:inference:control")
    single = Subscriber(services)
    eng = engines(topic=topic, extra_env={"ML_STREAM_REDIS_CHANNEL_MODE": "per-model",
                                          "ML_ENGINE_ID": "pm-engine",
                                          "ML_HEARTBEAT_INTERVAL_MS": "500"})
    eng.wait_ready()
    lines = [json.dumps({"input_id": "pm-%d" % i, "model_id": models[i % 3 == 0],
                         "features": [i, 1, 2]}) for i in range(300)]
    produce(services, topic, lines)
    wait_for(lambda: len(subs["pm-a"].payloads()) == 200 and len(subs["pm-b"].payloads()) == 100,
             60, "every prediction on its model's channel")
    for m, s in subs.items():
        got = s.payloads()
        assert {p["model_id"] for p in got} == {m}
        want = {"pm-%d" % i for i in range(300) if models[i % 3 == 0] == m}
        assert sorted(p["input_id"] for p in got) == sorted(want)
        for part in {p["kafka"]["partition"] for p in got}:
            offsets = [p["kafka"]["offset"] for p in got if p["kafka"]["partition"] == part]
            assert offsets == sorted(offsets), "in input order per partition"
    beats = wait_for(lambda: [b for b in control.payloads("heartbeat")
                              if b["engine_id"] == "pm-engine" and set(models) <= set(b["models"])],
                     15, "a heartbeat naming both models on the control channel")
    assert beats
    assert not [p for p in single.payloads() if str(p.get("input_id", "")).startswith("pm-")]
    assert not [b for b in single.payloads("heartbeat") if b["engine_id"] == "pm-engine"]
    eng.stop()
    for s in (*subs.values(), control, single):
        s.close()
