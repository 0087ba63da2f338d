"""Poison messages against a real engine, Kafka broker and Redis: a message
that a sink refuses for good never stalls the engine, and every input is
accounted for, delivered or dead-lettered, exactly."""
import collections
import json
import re
import subprocess

from mlshelpers import (good_input, kcat_produce, Subscriber, consume_all, metric_sum, produce,
                        topic_create, wait_for)


def read_topic(env, topic, expect):
    return consume_all(env, topic, expect, timeout=120)


def test_poison_on_dead_letter_and_output_topics(services, topic, engines):
    # The dead-letter topic takes at most 100 kB, the output topic 10 kB.
    topic_create(services, topic + ".dlq", 1, "--config", "max.message.bytes=100000")
    topic_create(services, topic + ".out", 1, "--config", "max.message.bytes=10000")
    eng = engines(topic=topic, extra_env={"KAFKA_OUTPUT_TOPIC": topic + ".out",
                                          "ML_LOG_LEVEL": "warn"})
    eng.wait_ready()
    n = 2000
    big_bad = b"x" * 300000                       # not JSON, 3x the DLQ limit
    big_good = json.dumps({"input_id": "wide", "features": [0.5] * 4000}).encode()
    lines = [good_input(i) for i in range(n // 2)] + [big_bad, big_good] + \
        [good_input(i) for i in range(n // 2, n)]
    kcat_produce(services, topic, lines)

    out = read_topic(services, topic + ".out", n)
    ids = collections.Counter(json.loads(v)["input_id"] for _, v in out)
    assert set(ids) == {"g%d" % i for i in range(n)}, "good messages missing"
    dlq = read_topic(services, topic + ".dlq", 2)
    assert len(dlq) == 2, dlq
    by_reason = {h["mls.error.reason"]: (h, v) for h, v in dlq}
    # the undecodable message: truncated to ML_DEAD_LETTER_MAX_BYTES (64 KiB)
    h, v = by_reason["invalid_json"]
    assert h["mls.truncated"] == "true"
    assert h["mls.original.size"] == str(len(big_bad))
    assert v == big_bad[:65536]
    assert h["mls.source.topic"] == topic
    assert "refused" in h["mls.error.message"]
    # the prediction the output topic refused: dead-lettered, truncated
    h, v = by_reason["output_refused"]
    assert h["mls.truncated"] == "true"
    assert int(h["mls.original.size"]) > 10000
    assert v.startswith(b'{"type":"prediction"')
    assert h["mls.source.topic"] == topic
    m = eng.metrics()
    assert metric_sum(m, "ml_stream_kafka_refused_total", action="truncated") == 2
    assert metric_sum(m, "ml_stream_kafka_refused_total", action="dropped") == 0
    assert eng.proc.poll() is None
    assert eng.stop() == 0
    assert "truncated dead letter" in eng.output()


def test_dead_letter_refused_even_truncated_is_counted_and_skipped(services, topic, engines):
    topic_create(services, topic + ".dlq", 1, "--config", "max.message.bytes=1000")
    eng = engines(topic=topic, extra_env={"ML_LOG_LEVEL": "warn"})
    eng.wait_ready()
    n = 500
    poison = [b"not json " + b"y" * (5000 + i) for i in range(3)]
    lines = [good_input(i) for i in range(n)]
    lines[100:100] = [poison[0]]
    lines[300:300] = [poison[1], poison[2]]
    kcat_produce(services, topic, lines)
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_kafka_refused_total",
                                action="dropped") == 3, 60, "three poison messages skipped")
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") == n,
             60, "every good message scored")
    # nothing stalled: offsets advanced past the poison (lag 0 once committed)
    assert eng.stop() == 0
    log = eng.output()
    assert "skipped, nothing could be written" in log, log


def test_batch_output_past_payload_cap_is_dead_lettered_not_wedged(services, topic, engines):
    """A batch whose predictions pass ML_BATCH_MAX_OUTPUT_BYTES (2 MiB here,
    4 MB of predictions in one batch) dead-letters the predictions that do
    not fit (output_too_large) and delivers the rest; the partition goes
    on."""
    src = topic + ".one"
    topic_create(services, src, 1)
    n = 40
    row = [0.5] * 1000
    big = [json.dumps({"input_id": "b%d" % i, "features": [row] * 25}).encode()
           for i in range(n)]                     # ~125 kB in, ~100 kB out each
    kcat_produce(services, src, big)
    eng = engines(topic=src, extra_env={
        "ML_LOG_LEVEL": "warn", "ML_BATCH_MAX_ROWS": "65536",
        "ML_BATCH_MAX_MESSAGES": str(n), "ML_BATCH_MAX_OUTPUT_BYTES": str(2 << 20),
        "ML_BATCH_MAX_WAIT_US": "1000000", "KAFKA_DLQ_TOPIC": src + ".dlq",
        "KAFKA_OUTPUT_TOPIC": src + ".out"})
    eng.wait_ready()

    def settled():
        m = eng.metrics()
        return (metric_sum(m, "ml_stream_inference_predictions_total") +
                metric_sum(m, "ml_stream_dead_letters_total") == n)
    wait_for(settled, 120, "every big message scored or dead-lettered")
    kcat_produce(services, src, [good_input(0)])
    wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_inference_predictions_total") +
             metric_sum(eng.metrics(), "ml_stream_dead_letters_total") == n + 1, 60,
             "a small message after the big batch")
    m = eng.metrics()
    dead_n = int(metric_sum(m, "ml_stream_dead_letters_total", reason="output_too_large"))
    assert 0 < dead_n < n, "the batch's predictions passed 2 MiB and were split"
    out = read_topic(services, src + ".out", n + 1 - dead_n)
    delivered = {re.search(rb'"input_id":"(\w+)"', v).group(1).decode() for _, v in out}
    dlq = read_topic(services, src + ".dlq", dead_n)
    assert all(h["mls.error.reason"] == "output_too_large" for h, _ in dlq)
    dead = {"b%s" % h["mls.source.offset"] for h, _ in dlq}
    assert delivered | dead == {"b%d" % i for i in range(n)} | {"g0"}
    assert not delivered & dead
    assert eng.stop() == 0


def test_big_batch_reaches_redis_in_pieces(services, topic, engines):
    """A 12 MB batch of predictions goes to Redis in 8 MiB pieces: every
    prediction arrives, once."""
    src = topic + ".one"
    topic_create(services, src, 1)
    n = 120
    row = [0.5] * 1000
    kcat_produce(services, src, [json.dumps({"input_id": "p%d" % i, "features": [row] * 25})
                                 .encode() for i in range(n)])
    sub = Subscriber(services)
    try:
        eng = engines(topic=src, extra_env={
            "ML_LOG_LEVEL": "warn", "ML_BATCH_MAX_ROWS": "65536",
            "ML_BATCH_MAX_MESSAGES": str(n), "ML_BATCH_MAX_WAIT_US": "1000000"})
        eng.wait_ready()
        wait_for(lambda: sum(b'"input_id":"p' in m for m in sub.raw()) >= n, 120,
                 "%d predictions on Redis" % n)
        ids = collections.Counter(re.search(rb'"input_id":"(p\d+)"', m).group(1)
                                  for m in sub.raw() if b'"input_id":"p' in m)
        assert len(ids) == n and max(ids.values()) == 1
        assert metric_sum(eng.metrics(), "ml_stream_publish_failures_total") == 0
        assert eng.stop() == 0
    finally:
        sub.close()


def test_refused_shadow_channel_never_holds_up_the_live_stream(services, topic, engines,
                                                               tmp_path):
    """Redis refuses the shadow channel (an ACL user allowed only the live
    channel): every input still reaches the live channel and its offsets
    are committed; the shadow predictions are compared, counted as
    unpublished, and not retried."""
    host, port = services["REDIS_URL"][len("redis://"):].split("/")[0].rsplit(":", 1)
    user = "mls-live-only-" + topic[-6:]
    subprocess.run(["redis-cli", "-h", host, "-p", port, "ACL", "SETUSER", user, "reset", "on",
                    ">pw", "~*", "&ml:stream:inference", "+@all"], check=True,
                   capture_output=True)
    repo = tmp_path / "models"
    for v in ("a", "b"):
        (repo / "m" / v).mkdir(parents=True)
        (repo / "m" / v / "model.conf").write_text("framework = identity\n")
    (repo / "m" / "model.conf").write_text("serving = a\nshadow = b\n")
    sub = Subscriber(services)
    try:
        eng = engines(topic=topic, extra_env={
            "ML_MODEL_REPOSITORY": str(repo), "ML_DEFAULT_MODEL_ID": "m",
            "REDIS_URL": "redis://%s:pw@%s:%s/0" % (user, host, port)})
        eng.wait_ready()
        n = 500
        produce(services, topic, [json.dumps({"input_id": "s%d" % i, "features": [i]})
                                  for i in range(n)])
        wait_for(lambda: len(sub.payloads()) >= n, 60, "%d live predictions" % n)
        m = eng.metrics()
        assert metric_sum(m, "ml_stream_shadow_rows_total") == n
        assert metric_sum(m, "ml_stream_shadow_unpublished_total") >= 1
        assert "shadow predictions not published (the live stream goes on)" in eng.output()
        assert "NOPERM" in eng.output()
        wait_for(lambda: metric_sum(eng.metrics(), "ml_stream_kafka_consumer_lag") == 0, 60,
                 "every offset committed")
        assert len(sub.payloads()) == n
        assert eng.stop() == 0
    finally:
        sub.close()
        subprocess.run(["redis-cli", "-h", host, "-p", port, "ACL", "DELUSER", user],
                       capture_output=True)
