"""Scale-out on a real Kafka broker and Redis: engines of one
consumer group share a topic's partitions and, in steady state, score every
message exactly once; gateways each subscribe to Redis and deliver every
prediction to their own WebSocket subscribers.
"""
import json
import os
import subprocess

from mlshelpers import (MLSTREAM, ROOT, Subscriber, free_port, http_get, metric_sum,
                        produce, produce_to, wait_for)

LOADGEN = os.environ.get("MLS_LOADGEN", os.path.join(ROOT, "build", "bench", "mls-loadgen"))

LAG = "ml_stream_kafka_consumer_lag"
# Distinct powers of two: the sum of any set of partitions' counts tells
# which partitions those were.
PER_PARTITION = {0: 100, 1: 200, 2: 400, 3: 800}


def test_two_engines_share_four_partitions_exactly_once(services, topic, engines):
    sub = Subscriber(services)
    env = {"KAFKA_CONF_STATISTICS_INTERVAL_MS": "200"}
    a = engines(topic=topic, extra_env=dict(env, ML_ENGINE_ID="engine-a"))
    b = engines(topic=topic, extra_env=dict(env, ML_ENGINE_ID="engine-b"))
    a.wait_ready()
    b.wait_ready()

    def metric(eng, name):
        return metric_sum(eng.metrics(), name)

    # Steady state: one group, two partitions each.
    wait_for(lambda: metric(a, "ml_stream_kafka_assigned_partitions") == 2
             and metric(b, "ml_stream_kafka_assigned_partitions") == 2, 60,
             "two partitions on each engine")
    # Both engines publish heartbeats on the shared channel.
    wait_for(lambda: {p["engine_id"] for p in sub.payloads("heartbeat")} >=
             {"engine-a", "engine-b"}, 30, "heartbeats from both engines")

    for p, n in PER_PARTITION.items():
        produce_to(services, topic, p, [
            json.dumps({"input_id": "p%d-%d" % (p, i), "features": [p, i]}) for i in range(n)])
    total = sum(PER_PARTITION.values())

    # Done when every partition's committed offset has reached its end (lag 0
    # on all four, each exported by the engine holding it): nothing is left
    # to be delivered or redelivered, so the counts below are final.
    def settled():
        la = {dict(l)["partition"] for (n, l), v in a.metrics().items() if n == LAG and v == 0}
        lb = {dict(l)["partition"] for (n, l), v in b.metrics().items() if n == LAG and v == 0}
        return (len(sub.payloads()) >= total and la | lb == {"0", "1", "2", "3"}
                and not la & lb and (la, lb))
    parts_a, parts_b = wait_for(settled, 120, "all %d predictions and lag 0 everywhere" % total)

    preds = sub.payloads()
    ids = [p["input_id"] for p in preds]
    assert len(ids) == total, "%d predictions for %d messages" % (len(ids), total)
    assert set(ids) == {"p%d-%d" % (p, i) for p, n in PER_PARTITION.items() for i in range(n)}
    for p in preds:
        part = int(p["input_id"][1:].split("-")[0])
        assert p["kafka"]["partition"] == part and p["kafka"]["topic"] == topic

    # Each engine scored exactly the messages of the two partitions it holds.
    n_a = metric(a, "ml_stream_inference_predictions_total")
    n_b = metric(b, "ml_stream_inference_predictions_total")
    assert len(parts_a) == 2 and len(parts_b) == 2, (parts_a, parts_b)
    assert n_a == sum(PER_PARTITION[int(p)] for p in parts_a), (n_a, parts_a)
    assert n_b == sum(PER_PARTITION[int(p)] for p in parts_b), (n_b, parts_b)
    assert metric(a, "ml_stream_kafka_assigned_partitions") == 2
    assert metric(b, "ml_stream_kafka_assigned_partitions") == 2
    sub.close()


def test_two_gateways_each_deliver_every_prediction(services, topic, engines):
    """Two engines in one group, two gateways on the same Redis channel, two
    graphql-transport-ws subscribers on each gateway: every subscriber gets
    every prediction of its model exactly once."""
    n, model = 600, "scale-" + topic
    gateways, clients = [], []
    try:
        for _ in range(2):
            port = free_port()
            env = dict(services, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port))
            proc = subprocess.Popen([MLSTREAM, "gateway"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            gateways.append((proc, port))
        for proc, port in gateways:
            wait_for(lambda: http_get("http://127.0.0.1:%d/readyz" % port)[0] == 200,
                     30, "gateway ready")
        for _, port in gateways:
            # stops once it has 2 x n deliveries, or 2 s after the last one
            c = subprocess.Popen([LOADGEN, "ws", "--gateway", "127.0.0.1:%d" % port,
                                  "--conns", "2", "--model", model, "--seconds", "60",
                                  "--expect", str(2 * n), "--quiet-ms", "2000"],
                                 stdout=subprocess.PIPE, text=True)
            assert json.loads(c.stdout.readline())["ready"] == 2
            clients.append(c)
        a = engines(topic=topic, extra_env={"ML_ENGINE_ID": "ea"})
        b = engines(topic=topic, extra_env={"ML_ENGINE_ID": "eb"})
        a.wait_ready()
        b.wait_ready()
        produce(services, topic, [json.dumps({"model_id": model, "input_id": "g%d" % i,
                                              "features": [i]}) for i in range(n)])
        wait_for(lambda: metric_sum(a.metrics(), "ml_stream_inference_predictions_total") +
                 metric_sum(b.metrics(), "ml_stream_inference_predictions_total") >= n,
                 60, "both engines to publish %d predictions" % n)
        for c in clients:
            out = json.loads(c.communicate(timeout=90)[0].strip().splitlines()[-1])
            assert out["ready"] == 2 and out["dead"] == 0, out
            assert out["deliveries"] == 2 * n, out
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        for proc, _ in gateways:
            proc.terminate()
            proc.wait(timeout=30)
