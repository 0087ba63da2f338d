"""Operations: the alert rules and Grafana dashboard in deploy/
against real /metrics output, the systemd units, and the consumer-lag gauge
on a real Kafka broker and Redis, across rebalances.

Tests named test_deploy_* read files only (ctest ops.deploy); the others need
the broker and Redis (ctest integration.ops). The gateway's metric names are
checked against a running `mlstream gateway` only when this build has one
(`mlstream gateway --help` succeeds); otherwise that test is skipped.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

from mlshelpers import (MLSTREAM, ROOT, Subscriber, consume_all, free_port, http_get,
                        metric_sum, parse_metrics, lag_of, produce, produce_to, wait_for)

DEPLOY = os.path.join(ROOT, "deploy")
RULES = os.path.join(DEPLOY, "prometheus", "rules.yml")
RULES_TEST = os.path.join(DEPLOY, "prometheus", "rules_test.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "mlstream.json")
SYSTEMD = os.path.join(DEPLOY, "systemd")
LAG = "ml_stream_kafka_consumer_lag"
# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan"}


# --- PromQL metric names ------------------------------------------------------

def promql_metric_names(expr):
    """The metric names a PromQL expression (Grafana variables allowed)
    selects: identifiers that are not functions, keywords, label names in
    grouping clauses or matchers, numbers or durations."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
    if m:
        expr = m.group(1)
    elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", expr):
        return set()
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = set()
    for t in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        before = e[t.start() - 1] if t.start() else " "
        after = e[t.end():].lstrip()[:1]
        word = t.group(0)
        if before.isdigit() or before == "." or after == "(" or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rule_exprs():
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for sub in [p] + p.get("panels", []):
            out += [t["expr"] for t in sub.get("targets", [])]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def used_names():
    names = set()
    for e in rule_exprs() + dashboard_exprs():
        names |= promql_metric_names(e)
    return names


def exposed_names(text):
    """Sample names in a /metrics text, plus every family a # TYPE line
    declares (series with labels appear only once something happened, e.g.
    the first publish failure), histograms expanded."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\w+)", line)
        if m:
            base, kind = m.groups()
            names.add(base)
            if kind == "histogram":
                names |= {base + "_bucket", base + "_sum", base + "_count"}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def is_gateway(name):
    return name.startswith("ml_stream_gateway_")


def test_deploy_promql_name_extraction():
    e = ('histogram_quantile(0.95, sum by (model_id, le) (rate(a_bucket{model_id=~"$model_id",'
         'x="rate(b)"}[$__rate_interval]))) > 0.25 and on(job) b offset 5m '
         'unless ignoring (instance) group_left(k) c:recorded * 1e3 / d{job="$engine_job"}')
    assert promql_metric_names(e) == {"a_bucket", "b", "c:recorded", "d"}
    assert promql_metric_names('label_values(m_total{job="$j"}, model_id)') == {"m_total"}
    assert promql_metric_names("label_values(model_id)") == set()
    assert promql_metric_names('up{job=~"$engine_job|$gateway_job"} == 0') == {"up"}
    # The check below must be able to fail: a misspelt name is found.
    assert "ml_stream_inference_predictions_totl" in promql_metric_names(
        "sum(rate(ml_stream_inference_predictions_totl[5m]))")


def test_deploy_names_are_ours_and_cover_the_issue():
    names = used_names()
    assert names - SYNTHETIC, "no metric names found"
    assert {n for n in names if not n.startswith("ml_stream_")} <= SYNTHETIC
    dash = set()
    for e in dashboard_exprs():
        dash |= promql_metric_names(e)
    # What the dashboard must show.
    for n in ("ml_stream_inference_latency_seconds_bucket",
              "ml_stream_inference_predictions_total", "ml_stream_inference_errors_total",
              LAG, "ml_stream_batch_rows_bucket", "ml_stream_gateway_connections",
              "ml_stream_gateway_messages_dropped_total"):
        assert n in dash, n


def test_deploy_rules_tests_cover_every_alert():
    with open(RULES) as f:
        alerts = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]
                  if "alert" in r}
    with open(RULES_TEST) as f:
        doc = yaml.safe_load(f)
    assert doc["rule_files"] == ["rules.yml"]
    fires, quiet = set(), set()
    for t in doc["tests"]:
        for a in t.get("alert_rule_test", []):
            assert a["alertname"] in alerts, "test of an unknown alert %s" % a["alertname"]
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
    assert alerts == fires, "alerts without a firing case: %s" % (alerts - fires)
    assert alerts == quiet, "alerts without a not-firing case: %s" % (alerts - quiet)


def test_deploy_dashboard_structure():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids, cells = set(), set()
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "engine_job", "gateway_job", "model_id"} <= variables
    for p in dash["panels"]:
        assert p["id"] not in ids, "duplicate panel id %s" % p["id"]
        ids.add(p["id"])
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "panel %r overlaps another" % p["title"]
                cells.add((x, y))
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(set(refs)) == len(refs), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip()
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var.startswith("__"), (p["title"], var)


def read_unit(path):
    """{key: [values]} of a unit file, ignoring comments and sections."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")):
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


UNITS = ("mlstream-engine@.service", "mlstream-gateway.service")


def test_deploy_systemd_hardening():
    for unit in UNITS:
        u = read_unit(os.path.join(SYSTEMD, unit))
        for key, want in (("DynamicUser", "yes"), ("ProtectSystem", "strict"),
                          ("NoNewPrivileges", "yes"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                          ("RestrictSUIDSGID", "yes"), ("CapabilityBoundingSet", "")):
            assert u.get(key) == [want], (unit, key, u.get(key))
        assert "/etc/mlstream/mlstream.env" in u["EnvironmentFile"], unit
        assert u["ExecStart"][0].startswith("/usr/bin/mlstream "), unit
        assert u["KillSignal"] == ["SIGTERM"], unit


def test_deploy_env_example_names_real_settings():
    r = subprocess.run([MLSTREAM, "config", "--markdown"], capture_output=True, text=True,
                       check=True)
    known = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", r.stdout, re.M))
    assert "REDIS_URL" in known
    seen = set()
    with open(os.path.join(SYSTEMD, "mlstream.env.example")) as f:
        for line in f:
            m = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", line.strip())
            if m:
                seen.add(m.group(1))
    assert seen, "no variables in the example"
    unknown = {n for n in seen if n not in known and not n.startswith("KAFKA_CONF_")}
    assert not unknown, "not settings of mlstream: %s" % unknown


def test_deploy_systemd_analyze():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed; units not verified")
    with tempfile.TemporaryDirectory() as d:
        # verify insists that ExecStart exists: point it at this build.
        for unit in UNITS:
            with open(os.path.join(SYSTEMD, unit)) as f:
                text = f.read().replace("/usr/bin/mlstream ", MLSTREAM + " ")
            with open(os.path.join(d, unit), "w") as f:
                f.write(text)
        r = subprocess.run(["systemd-analyze", "verify", *UNITS], cwd=d,
                           capture_output=True, text=True)
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "mlstream" not in out, out
        # An exposure score (0 best, 10 worst) guards against lost hardening.
        for unit in ("mlstream-engine@1.service", "mlstream-gateway.service"):
            r = subprocess.run(["systemd-analyze", "security", "--offline=yes", unit], cwd=d,
                               capture_output=True, text=True)
            m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
            assert m, r.stdout + r.stderr
            assert float(m.group(1)) <= 2.0, (unit, m.group(1))


# --- Against a real broker and Redis -------------------------------------------

STATS = {"KAFKA_CONF_STATISTICS_INTERVAL_MS": "200"}
# Offsets are committed only at a rebalance or at exit, so the committed lag
# is exactly what was produced since.
NO_AUTOCOMMIT = dict(STATS, ML_COMMIT_INTERVAL_MS="3600000", ML_COMMIT_MAX_MESSAGES="100000000")


def predictions(eng):
    return metric_sum(eng.metrics(), "ml_stream_inference_predictions_total")


def assigned(eng):
    return metric_sum(eng.metrics(), "ml_stream_kafka_assigned_partitions")


def msgs(tag, n):
    return [json.dumps({"input_id": "%s-%d" % (tag, i), "features": [i]}) for i in range(n)]


def test_consumer_lag_per_partition_across_rebalances(services, topic, engines):
    # A first engine commits one message per partition, so that the group
    # has committed offsets and librdkafka knows every partition's lag.
    a = engines(topic=topic, extra_env=STATS)
    a.wait_ready()
    for p in range(4):
        produce_to(services, topic, p, msgs("first%d" % p, 1))
    wait_for(lambda: lag_of(a, topic) == {0: 0, 1: 0, 2: 0, 3: 0}, 60,
             "lag 0 on all four partitions")
    assert a.stop() == 0

    # Messages scored but not committed are the lag, per partition.
    backlog = {0: 5, 1: 1, 2: 8, 3: 3}
    for p, n in backlog.items():
        produce_to(services, topic, p, msgs("second%d" % p, n))
    a = engines(topic=topic, extra_env=NO_AUTOCOMMIT)
    a.wait_ready()
    wait_for(lambda: predictions(a) == sum(backlog.values()) and lag_of(a, topic) == backlog,
             60, "lag %s" % backlog)

    # A second engine joins: the rebalance commits what a scored, each engine
    # exports exactly the two partitions it holds, none twice.
    b = engines(topic=topic, extra_env=NO_AUTOCOMMIT)
    b.wait_ready()

    def split():
        la, lb = lag_of(a, topic), lag_of(b, topic)
        ok = (assigned(a) == 2 and assigned(b) == 2 and len(la) == 2 and len(lb) == 2
              and set(la) | set(lb) == {0, 1, 2, 3}
              and all(v == 0 for v in list(la.values()) + list(lb.values())))
        return ok and (set(la), set(lb))
    parts_a, parts_b = wait_for(split, 60, "two partitions each, lag 0")

    # New messages: each engine scores and reports only its own partitions.
    more = {0: 2, 1: 4, 2: 6, 3: 9}
    base_a = predictions(a)
    for p, n in more.items():
        produce_to(services, topic, p, msgs("third%d" % p, n))
    want_a = {p: more[p] for p in parts_a}
    want_b = {p: more[p] for p in parts_b}
    wait_for(lambda: lag_of(a, topic) == want_a and lag_of(b, topic) == want_b
             and predictions(a) - base_a == sum(want_a.values())
             and predictions(b) == sum(want_b.values()),
             60, "lag %s on a and %s on b" % (want_a, want_b))

    # b leaves (committing on the way out): a takes all four back, and the
    # revoked partitions' series come back with a's view, all committed.
    assert b.stop() == 0
    wait_for(lambda: assigned(a) == 4 and lag_of(a, topic) == {0: 0, 1: 0, 2: 0, 3: 0}, 60,
             "a holding all four partitions at lag 0")


def test_offsets_committed_by_count_and_by_interval(services, topic, engines):
    # The committed lag shows what the engine has committed. With the
    # interval out of reach, ML_COMMIT_MAX_MESSAGES alone decides.
    a = engines(topic=topic, extra_env=dict(STATS, ML_COMMIT_INTERVAL_MS="3600000",
                                            ML_COMMIT_MAX_MESSAGES="5"))
    a.wait_ready()
    steps = ((5, 0, "5 delivered: the count is reached, all committed"),
             (3, 3, "3 more: under the count, held back"),
             (2, 0, "2 more: the count is reached again, all committed"))
    sent = 0
    for i, (n, lag, what) in enumerate(steps):
        produce_to(services, topic, 0, msgs("count%d" % i, n))
        sent += n
        wait_for(lambda: predictions(a) == sent and lag_of(a, topic).get(0) == lag, 60, what)
    assert a.stop() == 0

    # With the count out of reach, the interval commits what was delivered
    # once it has passed, although nothing else arrives to wake the engine.
    b = engines(topic=topic, extra_env=dict(STATS, ML_COMMIT_INTERVAL_MS="300",
                                            ML_COMMIT_MAX_MESSAGES="100000000"))
    b.wait_ready()
    wait_for(lambda: lag_of(b, topic).get(0) == 0, 60, "lag 0 after the first engine left")
    produce_to(services, topic, 0, msgs("interval", 3))
    wait_for(lambda: predictions(b) == 3 and lag_of(b, topic).get(0) == 0, 60,
             "the 3 new messages committed by the interval")
    assert b.stop() == 0


def test_consumer_lag_off_when_statistics_disabled(services, topic, engines):
    # Two groups on one topic: "on" shows when lag would have appeared.
    on = engines(topic=topic, group="on-" + topic, extra_env=STATS)
    off = engines(topic=topic, group="off-" + topic,
                  extra_env={"KAFKA_CONF_STATISTICS_INTERVAL_MS": "0"})
    on.wait_ready()
    off.wait_ready()
    for p in range(4):  # every partition gets a committed offset
        produce_to(services, topic, p, msgs("x%d" % p, 5))
    wait_for(lambda: predictions(off) == 20 and predictions(on) == 20
             and len(lag_of(on, topic)) == 4, 60, "20 predictions each, lag on the first")
    assert lag_of(off, topic) == {}


def test_dashboard_and_rule_names_exist_in_engine_metrics(services, topic, engines):
    eng = engines(topic=topic, extra_env=STATS)
    eng.wait_ready()
    for p in range(4):  # every partition gets a committed offset
        produce_to(services, topic, p, msgs("ok%d" % p, 3))
    produce(services, topic, ["not json"])
    wait_for(lambda: predictions(eng) == 12 and len(lag_of(eng, topic)) == 4, 60,
             "12 predictions and lag on 4 partitions")
    status, text = http_get(eng.url("/metrics"))
    assert status == 200
    # With the lag series in it, the output still passes promtool.
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    exposed = exposed_names(text)
    wanted = {n for n in used_names() if n not in SYNTHETIC and not is_gateway(n)}
    assert wanted, "no engine names in the rules and dashboard"
    missing = wanted - exposed
    assert not missing, "used in deploy/ but not in the engine's /metrics: %s" % sorted(missing)


def gateway_available():
    r = subprocess.run([MLSTREAM, "gateway", "--help"], capture_output=True)
    return r.returncode == 0


def test_dashboard_and_rule_names_exist_in_gateway_metrics(services):
    if not gateway_available():
        pytest.skip("`mlstream gateway` is not in this build; gateway names not checked")
    port = free_port()
    env = dict(services, GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port))
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([MLSTREAM, "gateway"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = "http://127.0.0.1:%d/metrics" % port

        def scraped():
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError("gateway exited %s:\n%s" % (proc.returncode, log.read()))
            status, text = http_get(url)
            return (status == 200 and metric_sum(parse_metrics(text),
                                                 "ml_stream_gateway_redis_connected") >= 1
                    and text)
        text = wait_for(scraped, 60, "the gateway's /metrics with Redis connected")
        exposed = exposed_names(text)
        wanted = {n for n in used_names() if is_gateway(n)}
        assert wanted, "no gateway names in the rules and dashboard"
        missing = wanted - exposed
        assert not missing, "used in deploy/ but not in the gateway's /metrics: %s" % sorted(
            missing)
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_kafka_client_log_lines_use_our_log_format():
    """librdkafka's own lines (here: the broker refusing connections) come
    out through mlstream's logger, so ML_LOG_FORMAT=json yields only JSON
    lines that a log pipeline can parse, and the engine keeps running."""
    dead = "127.0.0.1:%d" % free_port()  # nothing listens there
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=dead, REDIS_URL="redis://" + dead,
               ML_MODEL_FRAMEWORK="identity", ML_PROMETHEUS_PORT="0",
               ML_LOG_FORMAT="json", ML_LOG_LEVEL="info")
    env.pop("ML_MODEL_PATH", None)
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([MLSTREAM, "engine"], env=env, stdout=log, stderr=log)
    try:
        def kafka_lines():
            log.seek(0)
            lines = [ln for ln in log.read().splitlines() if ln.strip()]
            objs = [json.loads(ln) for ln in lines]  # raises on a raw line
            return [o for o in objs if o["msg"].startswith("kafka ")]
        lines = wait_for(kafka_lines, 30, "a librdkafka log line")
        assert proc.poll() is None, "the engine exited"
        assert all(o["component"] == "engine" for o in lines)
        assert any("Connect to" in o["msg"] or "brokers are down" in o["msg"] for o in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.seek(0)
        for ln in log.read().splitlines():
            if ln.strip():
                json.loads(ln)  # every line to the end, shutdown included
        log.close()


def test_kafka_sasl_ssl_through_the_config_file(services, topic, engines, tmp_path):
    """KAFKA_CONFIG_FILE gives SASL and TLS to every Kafka client of the
    engine: on the broker's SASL_SSL listener, with SASL/PLAIN and with
    SCRAM-SHA-512 (the example in docs/security.md), the consumer scores
    and the producer writes dead letters. With a wrong password, or without
    the CA that signed the broker's certificate, the engine stays unready
    and says why, never printing a password; a file every user may read is
    warned of, once."""
    if "KAFKA_SASL_CA_LOCATION" not in services:
        pytest.fail("the broker has no SASL_SSL listener: scripts/services stop kafka, then start")
    password = services["KAFKA_SASL_PASSWORD"]

    def conf_file(name, pw, mode=0o600, ca=services["KAFKA_SASL_CA_LOCATION"],
                  mechanism="PLAIN"):
        path = tmp_path / name
        text = ("# the test broker's SASL_SSL listener\n"
                "security.protocol = SASL_SSL\n"
                "sasl.mechanisms=%s\n"
                "sasl.username=%s\nsasl.password=%s\n"
                % (mechanism, services["KAFKA_SASL_USERNAME"], pw))
        if ca:
            text += "ssl.ca.location=%s\n" % ca
        path.write_text(text)
        path.chmod(mode)
        return str(path)
    secure = {"KAFKA_BOOTSTRAP_SERVERS": services["KAFKA_SASL_BOOTSTRAP_SERVERS"]}
    n = 20
    produce(services, topic, [json.dumps({"input_id": "s%d" % i, "features": [i]})
                              for i in range(n)] + ["not json"])
    # each mechanism in a group of its own: both score the whole topic
    for round_, mechanism in enumerate(("PLAIN", "SCRAM-SHA-512"), 1):
        sub = Subscriber(services)
        try:
            eng = engines(topic=topic, group="g-%s-%s" % (mechanism.lower(), topic),
                          extra_env=dict(secure, KAFKA_CONFIG_FILE=conf_file(
                              "ok-" + mechanism, password, mechanism=mechanism)))
            eng.wait_ready()
            wait_for(lambda: len(sub.payloads()) >= n, 60, "%d predictions" % n)
            assert sorted(p["input_id"] for p in sub.payloads()) == \
                sorted("s%d" % i for i in range(n)), mechanism
            dead = consume_all(services, topic + ".dlq", round_)
            assert [(h["mls.error.reason"], v) for h, v in dead] == \
                [("invalid_json", b"not json")] * round_, mechanism
            assert eng.stop() == 0
            assert "readable by every user" not in eng.output()
        finally:
            sub.close()

    wrong = "not-" + password
    refusals = [
        # wrong, and readable by all: warned of once for all the clients
        (conf_file("wrong", wrong, mode=0o644), "SASL authentication error: Authentication failed"),
        # the system's CAs do not know the test broker's certificate
        (conf_file("noca", password, ca=None), "certificate verify failed"),
    ]
    for path, why in refusals:
        eng = engines(topic=topic, group="g-refused-" + topic,
                      extra_env=dict(secure, KAFKA_CONFIG_FILE=path))
        wait_for(lambda: why in eng.output(), 60, "the engine to log: " + why)
        assert eng.proc.poll() is None, eng.output()
        assert http_get(eng.url("/readyz"))[0] == 503
        assert eng.stop() == 0
        out = eng.output()
        assert wrong not in out and password not in out
        warning = "KAFKA_CONFIG_FILE: %s is readable by every user (chmod 600 it)" % path
        assert out.count(warning) == (path.endswith("wrong")), out
