#!/usr/bin/env python3
"""Generates the benchmark report from one bench/run results directory:

    bench/report.py bench/out/run-XXXX > bench/REPORT.md
    bench/report.py --compare RUN_A RUN_B
    bench/report.py --baseline RUN > bench/baseline.json

The second form compares two runs: for each figure of the summary, B's
median over A's, and whether each run's median lies within the other's
min..max (exit status 1 if any does not), and how many would be by chance
alone if the rounds of both runs were independent draws from one
distribution (expected_inside). The third records a run's summary (min / median / max of every
figure, with its commit and machine) as the "before" of the report's
before -> after table ({{before_after}}), so that a change is judged
against figures that were measured, not remembered.

The prose comes from bench/REPORT.in.md, which holds no figures; every number
in the output comes from the JSON files of that directory (run.json and one
<bench>-r<N>.json per round). Placeholders in the template:

    {{run}}           when, the exact command, the machine, versions, commit
    {{reproduce}}     the command that reproduces the run
    {{table:NAME}}    one benchmark's figures, a column per round, with the
                      machine stamp, the quiet check and load averages
    {{summary}}       min / median / max over the rounds of the key figures,
                      and the ratios
    {{chance}}        how often chance alone puts a second run's median
                      within this run's min..max (expected_inside)
    {{before_after}}  the figures of bench/baseline.json next to this run's:
                      before median (min..max), after, after / before
"""
import functools
import itertools
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "REPORT.in.md")
BASELINE = os.path.join(HERE, "baseline.json")

# Labels of the figures the benchmarks write (others appear under their key).
LABELS = {
    "engine_drain_msgs_per_s": "engine drain rate, backlog (msg/s)",
    "ref_kcat_consume_msgs_per_s": "reference: kcat consume (msg/s)",
    "ref_redis_publish_per_s": "reference: redis-benchmark -P 64 PUBLISH (/s)",
    "drain_over_smaller_limit": "engine drain / smaller reference",
    "engine_cpu_us_per_msg": "engine CPU per message, backlog (µs)",
    "ref_kcat_consume_cpu_us_per_msg": "reference: kcat CPU per message, consuming the backlog (µs)",
    "backlog_over_kcat_cpu": "engine / kcat, CPU per message, backlog",
    "engine_peak_rss_mb": "engine peak RSS, draining the backlog (MB)",
    "drain_machine_busy_pct": "whole machine busy during the drain (%)",
    "rest_cpu_us_per_msg_broker": "in the drain: Kafka broker CPU per message (µs)",
    "rest_cpu_us_per_msg_redis":
        "in the drain: redis-server CPU per message, publishing to a subscriber (µs)",
    "rest_cpu_us_per_msg_subscriber": "in the drain: the Redis subscriber's CPU per message (µs)",
    "drain_ceiling_msgs_per_s":
        "drain ceiling: cores / (broker + Redis + subscriber CPU per message) (msg/s)",
    "drain_over_ceiling": "engine drain / drain ceiling",
    "ceiling_over_smaller_limit": "drain ceiling / smaller reference",
    "latency_rate_msgs_per_s": "latency run: rate (msg/s)",
    "e2e_p50_ms": "end to end p50: producer → Redis subscriber (ms)",
    "e2e_p99_ms": "end to end p99 (ms)",
    "e2e_max_ms": "end to end max (ms)",
    "kafka_only_p50_ms": "Kafka only p50: producer → bare consumer (ms)",
    "kafka_only_p99_ms": "Kafka only p99 (ms)",
    "e2e_over_kafka_only_p99": "end-to-end p99 / Kafka-only p99",
    "engine_latency_mean_ms": "engine's own latency, mean (ms)",
    "steady_rss_mb": "engine peak RSS at the steady rate (MB)",
    "steady_cpu_us_per_msg": "engine CPU per message at the steady rate (µs)",
    "steady_cpu_us_per_message_1000_per_s": "engine CPU per message at 1,000 msg/s (µs)",
    "ref_kcat_steady_cpu_us_per_message_1000_per_s":
        "reference: kcat CPU per message at 1,000 msg/s, same messages (µs)",
    "steady_over_kcat_cpu": "engine / kcat, CPU per message at 1,000 msg/s",
    "steady_fetch_wait_20_ms_cpu_us_per_message_1000_per_s":
        "engine CPU per message at 1,000 msg/s, fetches wait 20 ms (µs)",
    "ref_kcat_steady_fetch_wait_20_ms_cpu_us_per_message_1000_per_s":
        "reference: kcat at 1,000 msg/s, fetches wait 20 ms (µs)",
    "idle_engine_core_percent": "engine at idle, joined (% of one core)",
    "gateway_e2e_p50_ms": "end to end through the gateway p50: producer → GraphQL client (ms)",
    "gateway_e2e_p99_ms": "end to end through the gateway p99 (ms)",
    "gateway_e2e_p99_minus_kafka_only_ms": "through the gateway p99 − Kafka-only p99 (ms)",
    "steady_cpu_us_per_event_1_subscriber": "gateway CPU per event at 1,000 msg/s, one subscriber (µs)",
    "steady_redis_cpu_us_per_message": "reference: redis-server CPU per message at 1,000 msg/s (µs)",
    "steady_batched_20_ms_cpu_us_per_event_1_subscriber":
        "gateway CPU per event at 1,000 msg/s in batches every 20 ms (µs)",
    "steady_batched_20_ms_redis_cpu_us_per_message":
        "reference: redis-server CPU per message, same batches (µs)",
    "idle_gateway_core_percent": "gateway at idle, one subscriber (% of one core)",
    "output_alo_drain_msgs_per_s": "with an output topic, at least once: drain (msg/s)",
    "output_eos_drain_msgs_per_s": "with an output topic, exactly once: drain (msg/s)",
    "eos_over_alo_drain": "exactly once / at least once, drain",
    "output_alo_cpu_us_per_msg": "with an output topic, at least once: CPU per message (µs)",
    "output_eos_cpu_us_per_msg": "with an output topic, exactly once: CPU per message (µs)",
    "eos_transactions_committed": "exactly once: transactions committed in the drain",
    "output_alo_p50_ms": "output topic, at least once: send → read_committed consumer p50 (ms)",
    "output_alo_p99_ms": "output topic, at least once: p99 (ms)",
    "output_eos_p50_ms": "output topic, exactly once: send → read_committed consumer p50 (ms)",
    "output_eos_p99_ms": "output topic, exactly once: p99 (ms)",
    "with_shadow_extra_cpu_us_per_row": "shadow: CPU per row added (µs)",
    "shadow_call_us_per_row": "shadow: its model calls per row (µs)",
    "shadow_cost_beyond_its_calls_us_per_row":
        "shadow: CPU per row added beyond its model calls (µs)",
    "with_shadow_over_serving_only": "shadow compared only / serving only, rows/s",
    "with_shadow_subscribed_over_serving_only":
        "shadow compared and published / serving only, rows/s",
    "one_engine_msgs_per_s": "one engine (msg/s)",
    "two_engines_msgs_per_s": "two engines, one group (msg/s)",
    "two_over_one": "two engines / one engine",
    "one_engine_cpu_us_per_msg": "one engine: CPU per message (µs)",
    "two_engines_cpu_us_per_msg": "two engines: CPU per message (µs)",
    "one_engine_cores": "one engine: cores busy",
    "two_engines_cores": "two engines: cores busy",
    "one_engine_machine_busy_pct": "one engine: whole machine busy (%)",
    "two_engines_machine_busy_pct": "two engines: whole machine busy (%)",
    "rate_msgs_per_s": "rate (events/s)",
    "events": "events measured",
    "p50_ms": "p50 (ms)", "p99_ms": "p99 (ms)", "max_ms": "max (ms)",
    "cluster_publish_msgs_per_s":
        "2 engines, 3-master cluster, SPUBLISH per model (predictions/s)",
    "one_redis_publish_msgs_per_s": "2 engines, one Redis, PUBLISH per model (predictions/s)",
    "cluster_over_one_redis": "cluster / one Redis, predictions published",
    "single_channel_publish_msgs_per_s": "2 engines, one Redis, single channel (predictions/s)",
    "cluster_engine_cpu_us_per_msg": "cluster: engine CPU per prediction (µs)",
    "one_redis_engine_cpu_us_per_msg": "one Redis: engine CPU per prediction (µs)",
    "cluster_redis_cpu_us_per_msg": "cluster: Redis CPU per prediction, all 6 nodes (µs)",
    "one_redis_redis_cpu_us_per_msg": "one Redis: Redis CPU per prediction (µs)",
    "ref_one_node_publish_per_s": "reference: redis-benchmark -P 64 PUBLISH, one node (/s)",
    "ref_cluster_spublish_per_s": "reference: redis-benchmark --cluster -P 64 SPUBLISH (/s)",
    "ref_cluster_over_one_node": "reference: cluster SPUBLISH / one-node PUBLISH",
    "gateway_bytes_per_prediction_cluster":
        "gateway inbound, cluster, client watches 1 model (bytes per published prediction)",
    "gateway_bytes_per_prediction_one_redis_per_model":
        "gateway inbound, one Redis, per-model channels (bytes per published prediction)",
    "gateway_bytes_per_prediction_single":
        "gateway inbound, one Redis, single channel (bytes per published prediction)",
    "gateway_bytes_cluster_over_single": "gateway inbound bytes, cluster / single channel",
    "gateway_cpu_ms_cluster": "gateway CPU over the drain, cluster (ms)",
    "gateway_cpu_ms_single": "gateway CPU over the drain, single channel (ms)",
    "gateway_behind_s_cluster":
        "cluster: gateway read its last prediction, after the last published (s)",
    "gateway_behind_s_single":
        "single channel: gateway read its last prediction, after the last published (s)",
}

# The key figures of the summary: (bench, key); gateway keys are found by
# pattern since its script names them.
KEY_FIGURES = [
    ("engine", "engine_cpu_us_per_msg"),
    ("engine", "ref_kcat_consume_cpu_us_per_msg"),
    ("engine", "engine_drain_msgs_per_s"),
    ("engine", "ref_kcat_consume_msgs_per_s"),
    ("engine", "ref_redis_publish_per_s"),
    ("engine", "engine_peak_rss_mb"),
    ("engine", "drain_ceiling_msgs_per_s"),
    ("engine", "drain_machine_busy_pct"),
    ("engine", "e2e_p99_ms"),
    ("engine", "kafka_only_p99_ms"),
    ("engine", "steady_rss_mb"),
    ("engine", "steady_cpu_us_per_message_1000_per_s"),
    ("engine", "ref_kcat_steady_cpu_us_per_message_1000_per_s"),
    ("engine", "steady_fetch_wait_20_ms_cpu_us_per_message_1000_per_s"),
    ("engine", "ref_kcat_steady_fetch_wait_20_ms_cpu_us_per_message_1000_per_s"),
    ("engine", "idle_engine_core_percent"),
    ("engine", "gateway_e2e_p99_ms"),
    ("engine", "gateway_e2e_p99_minus_kafka_only_ms"),
    ("models", "torch_b256_rows_per_s"),
    ("models", "direct_b256_rows_per_s"),
    ("models", "identity_b256_rows_per_s"),
    ("models", "torch_latency_p99_ms"),
    ("models", "with_shadow_extra_cpu_us_per_row"),
    ("models", "shadow_call_us_per_row"),
    ("models", "shadow_cost_beyond_its_calls_us_per_row"),
    ("scaleout", "one_engine_msgs_per_s"),
    ("scaleout", "two_engines_msgs_per_s"),
    ("up", "p99_ms"),
    ("cluster", "cluster_publish_msgs_per_s"),
    ("cluster", "one_redis_publish_msgs_per_s"),
    ("cluster", "ref_cluster_spublish_per_s"),
    ("cluster", "ref_one_node_publish_per_s"),
    ("cluster", "gateway_bytes_per_prediction_cluster"),
    ("cluster", "gateway_bytes_per_prediction_single"),
]
RATIOS = [
    ("engine", "drain_over_smaller_limit"),
    ("engine", "drain_over_ceiling"),
    ("engine", "ceiling_over_smaller_limit"),
    ("engine", "e2e_over_kafka_only_p99"),
    ("engine", "backlog_over_kcat_cpu"),
    ("engine", "steady_over_kcat_cpu"),
    ("engine", "eos_over_alo_drain"),
    ("models", "engine_over_direct_b256"),
    ("models", "with_shadow_over_serving_only"),
    ("models", "with_shadow_subscribed_over_serving_only"),
    ("scaleout", "two_over_one"),
    ("cluster", "cluster_over_one_redis"),
    ("cluster", "ref_cluster_over_one_node"),
    ("cluster", "gateway_bytes_cluster_over_single"),
]
GATEWAY_PATTERNS = ("cpu_us_per", "bytes_per_connection", "p99", "deliveries_per_s",
                    "core_percent", "steady_redis")

TITLES = {"engine": "Engine", "models": "Models", "scaleout": "Scale-out",
          "up": "mlstream up", "gateway": "Gateway", "cluster": "Redis Cluster",
          "soak": "Soak"}


def flatten(d, prefix=""):
    """Flat {key: number} of a summary; nested dicts join keys with '.',
    lists and non-numbers are left out."""
    out = {}
    for k, v in d.items():
        key = prefix + str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, bool):
            out[key] = v
        elif isinstance(v, (int, float)) or v is None:
            out[key] = v
    return out


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1000):
        return format(int(v), ",")
    a = abs(v)
    if a >= 1000:
        return format(round(v), ",")
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def spread(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not vals:
        return None
    return min(vals), statistics.median(vals), max(vals), len(vals)


def label(key):
    return LABELS.get(key, key.replace("_", " "))


class Run:
    def __init__(self, run_dir):
        self.dir = run_dir
        with open(os.path.join(run_dir, "run.json")) as f:
            self.manifest = json.load(f)
        self.rounds = {}  # bench -> [(entry, result or None)]
        for e in self.manifest.get("results", []):
            res = None
            if e.get("file"):
                try:
                    with open(os.path.join(run_dir, e["file"])) as f:
                        res = json.load(f)
                except (OSError, ValueError) as err:
                    e = dict(e, error="unreadable result: %s" % err)
            self.rounds.setdefault(e["bench"], []).append((e, res))

    def ok(self, bench):
        return [(e, r) for e, r in self.rounds.get(bench, []) if r is not None]

    def values(self, bench, key):
        return [flatten(r.get("summary", {})).get(key) for _, r in self.ok(bench)]


def under_load(entry, res):
    q = (res or {}).get("quiet") or entry.get("quiet_before") or {}
    if "busy_before" in q:
        return q.get("under_load"), "%d%% busy" % round(100 * q["busy_before"])
    return q.get("under_load"), q.get("load_per_core")


def stamp_line(stamp):
    v = stamp.get("versions", {})
    parts = ["%s, %s cores, %.1f GiB, kernel %s" % (
        stamp.get("cpu") or "?", stamp.get("cores"), (stamp.get("memory_bytes") or 0) / 2**30,
        stamp.get("kernel"))]
    libs = ", ".join("%s %s" % (n, v[k]) for k, n in (
        ("librdkafka", "librdkafka"), ("redis", "Redis"), ("kafka", "Kafka"),
        ("torch", "libtorch"), ("hiredis", "hiredis"), ("libwebsockets", "libwebsockets"))
        if v.get(k))
    if libs:
        parts.append(libs)
    if stamp.get("commit"):
        parts.append("commit %s" % stamp["commit"])
    return "; ".join(parts)


def loads(la):
    return "/".join("%.2f" % x for x in la[:3]) if la else "?"


def table(run, bench):
    rounds = run.rounds.get(bench, [])
    failed = run.manifest.get("failed", {}).get(bench)
    lines = []
    if bench not in run.manifest.get("benches", []):
        return "*Not run in this run (`bench/run --only` left it out%s).*" % (
            "; soak needs `--soak`" if bench == "soak" else "")
    if not rounds and failed:
        return "**FAILED**: %s" % failed
    ok = run.ok(bench)
    for e, r in rounds:
        if r is None:
            lines.append("**FAILED** in round %d: %s (log: `%s`)" % (
                e["round"], e.get("error", "?"), e.get("log")))
    if not ok:
        return "\n\n".join(lines) or "*No results.*"
    stamps = [r.get("machine", {}) for _, r in ok]
    lines.append("Machine: %s." % stamp_line(stamps[0]))
    if any(stamp_line(s) != stamp_line(stamps[0]) for s in stamps[1:]):
        lines.append("(Later rounds differ: %s.)" % "; ".join(stamp_line(s) for s in stamps[1:]))
    hdr = ["figure"] + ["round %d" % e["round"] for e, _ in ok]
    multi = len(ok) > 1
    if multi:
        hdr += ["min", "median", "max"]
    rows = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    cells = []
    for e, r in ok:
        busy, lpc = under_load(e, r)
        cells.append("%s%s" % (lpc if isinstance(lpc, str) else fmt(lpc),
                                " **under load**" if busy else " quiet"))
    rows.append("| machine before the round | " + " | ".join(cells) + (" | | | |" if multi else " |"))
    rows.append("| load average before → after (1/5/15 min) | " + " | ".join(
        "%s → %s" % (loads(r["machine"].get("load_avg_before")),
                     loads(r["machine"].get("load_avg_after"))) for _, r in ok)
        + (" | | | |" if multi else " |"))
    rows.append("| wall time (s) | " + " | ".join(fmt(r.get("wall_s")) for _, r in ok)
                + (" | | | |" if multi else " |"))
    keys = []
    for _, r in ok:
        for k in flatten(r.get("summary", {})):
            if k not in keys:
                keys.append(k)
    for k in keys:
        vals = run.values(bench, k)
        row = [label(k)] + [fmt(v) for v in vals]
        if multi:
            s = spread(vals)
            row += [fmt(x) for x in s[:3]] if s else ["–"] * 3
        rows.append("| " + " | ".join(row) + " |")
    lines.append("\n".join(rows))
    return "\n\n".join(lines)


def summary(run):
    rows = ["| benchmark | figure | min | median | max | rounds | under load |",
            "|---|---|---|---|---|---|---|"]
    def add(bench, key, ratio=False):
        if bench not in run.manifest.get("benches", []):
            return
        ok = run.ok(bench)
        s = spread(run.values(bench, key))
        busy = sum(1 for e, r in ok if under_load(e, r)[0])
        if s is None:
            why = "failed" if bench in run.manifest.get("failed", {}) else "not measured"
            rows.append("| %s | %s | %s | | | | |" % (bench, label(key), why))
            return
        name = ("**%s**" % label(key)) if ratio else label(key)
        rows.append("| %s | %s | %s | %s | %s | %d | %d |" % (
            bench, name, fmt(s[0]), fmt(s[1]), fmt(s[2]), s[3], busy))
    for b, k in summary_figures(run):
        add(b, k, ratio=(b, k) in RATIOS)
    failed = run.manifest.get("failed", {})
    out = "\n".join(rows)
    if failed:
        out += "\n\nFailed: " + "; ".join("%s (%s)" % (b, m) for b, m in failed.items()) + "."
    return out


def run_info(run):
    m = run.manifest
    st = m.get("machine_before") or {}
    after = m.get("machine_after") or {}
    lines = [
        "Run of %s, `%s`, %d round%s of each benchmark%s; %.1f minutes in all." % (
            m.get("started"), m.get("command"), m.get("rounds", 0),
            "" if m.get("rounds") == 1 else "s",
            " (**--quick: small sizes, a smoke test, not a measurement**)" if m.get("quick")
            else "", (m.get("wall_s") or 0) / 60),
        "",
        "| | |", "|---|---|",
        "| CPU | %s |" % st.get("cpu"),
        "| cores, memory | %s, %.1f GiB |" % (st.get("cores"),
                                               (st.get("memory_bytes") or 0) / 2**30),
        "| kernel | %s |" % st.get("kernel"),
        "| load average before → after the run | %s → %s |" % (
            loads(st.get("load_avg")), loads(after.get("load_avg"))),
        "| commit | %s |" % st.get("commit"),
    ]
    for k, n in (("librdkafka", "librdkafka"), ("redis", "Redis"), ("kafka", "Kafka"),
                 ("torch", "libtorch"), ("hiredis", "hiredis"),
                 ("libwebsockets", "libwebsockets"), ("mlstream", "mlstream")):
        if st.get("versions", {}).get(k):
            lines.append("| %s | %s |" % (n, st["versions"][k]))
    return "\n".join(lines)


def render(run_dir, template=TEMPLATE):
    run = Run(run_dir)
    with open(template) as f:
        text = f.read()
    m = run.manifest
    cmd = m.get("command", "bench/run")
    text = text.replace("{{run}}", run_info(run))
    text = text.replace("{{reproduce}}", "```sh\nscripts/test --quick   # once: installs and "
                        "builds\n%s\n```" % cmd)
    text = text.replace("{{summary}}", summary(run))
    text = text.replace("{{before_after}}", before_after(run))
    text = text.replace("{{chance}}", chance(run))
    text = text.replace("{{dir}}", os.path.relpath(run_dir, os.path.dirname(HERE)))
    import re
    text = re.sub(r"\{\{table:(\w+)\}\}", lambda mm: table(run, mm.group(1)), text)
    return text


def baseline(run_dir):
    """The summary of a run as the JSON of bench/baseline.json."""
    run = Run(run_dir)
    m = run.manifest
    mb = m.get("machine_before", {})
    figures = []
    for bench, key in summary_figures(run):
        s = spread(run.values(bench, key))
        if s is not None:
            figures.append({"bench": bench, "key": key, "min": s[0], "median": s[1],
                            "max": s[2], "rounds": s[3]})
    return {"run": m.get("started"), "command": m.get("command"),
            "commit": mb.get("commit"), "machine": {k: mb.get(k) for k in
                                                    ("cpu", "cores", "kernel")},
            "figures": figures}


def before_after(run, path=BASELINE):
    """Each figure of the baseline next to this run's, where both have it."""
    try:
        with open(path) as f:
            base = json.load(f)
    except (OSError, ValueError) as err:
        return "(no baseline: %s)" % err
    rows = ["Before: commit %s, run of %s (%s, %s cores). After: this run." % (
                base.get("commit"), base.get("run"), base["machine"].get("cpu"),
                base["machine"].get("cores")), "",
            "| benchmark | figure | before: median (min..max) | after: median (min..max) "
            "| after / before |", "|---|---|---|---|---|"]
    for f in base.get("figures", []):
        s = spread(run.values(f["bench"], f["key"]))
        if s is None:
            continue
        ratio = s[1] / f["median"] if f["median"] else None
        rows.append("| %s | %s | %s (%s..%s) | %s (%s..%s) | %s |" % (
            f["bench"], label(f["key"]), fmt(f["median"]), fmt(f["min"]), fmt(f["max"]),
            fmt(s[1]), fmt(s[0]), fmt(s[2]), fmt(ratio) if ratio is not None else "–"))
    return "\n".join(rows)


def summary_figures(run):
    """[(bench, key)] of the summary table: the key figures, the gateway's
    figures found by name, and the ratios."""
    figures = list(KEY_FIGURES)
    for _, r in run.ok("gateway")[:1]:
        for k, v in flatten(r.get("summary", {})).items():
            if any(p in k for p in GATEWAY_PATTERNS) and not isinstance(v, bool):
                figures.append(("gateway", k))
    return figures + list(RATIOS)


@functools.lru_cache(maxsize=None)  # compare() asks once per figure
def expected_inside(na, nb):
    """What chance alone allows, if every round of both runs were an
    independent draw from one distribution: over the equally likely orders
    of the na + nb rounds, the share in which B's median falls within A's
    min..max, and the share in which each run's falls within the other's.
    A median of an even count counts as inside when both middle rounds are
    (a lower bound). One way: 0.6 for 3 rounds each, 0.83 for 5, 0.93 for
    7. Runs that agree less often than this differ by more than their
    rounds vary."""
    def inside(outer, inner):
        mid = len(inner)
        return outer[0] < inner[(mid - 1) // 2] and inner[mid // 2] < outer[-1]

    one = both = total = 0
    for picks in itertools.combinations(range(na + nb), na):
        rest = [i for i in range(na + nb) if i not in picks]
        b_in_a = inside(picks, rest)
        total += 1
        one += b_in_a
        both += b_in_a and inside(rest, picks)
    return one / total, both / total


def chance(run):
    """One sentence: how often chance alone puts a second run's median
    within the min..max of this run's rounds."""
    n = run.manifest.get("rounds", 0)
    if n < 2:
        return ("With one round a run reports no spread: take at least three "
                "(`bench/run --rounds N`).")
    one, both = expected_inside(n, n)
    return ("This run took %d rounds of each benchmark. Even if every round were an "
            "independent draw from one distribution, a second run of %d rounds would "
            "put its median within this run's min..max for %.0f %% of the figures "
            "(and each run's within the other's for %.0f %%): read min..max as the "
            "noise these rounds saw, not as a bound another run must keep."
            % (n, n, 100 * one, 100 * both))


HOW_TO_READ = """\
"B's median in A's spread" is the question a reader of a report asks:
would a second run land inside the min..max the first one shows? "A's in
B's" asks it the other way. The count at the end is next to what chance
alone gives: even if every round of both runs were an independent draw
from one distribution, a median falls outside the other run's min..max
for a share of the figures that depends only on the rounds taken (0.4 of
them for 3 rounds each, 0.17 for 5). B / A says how far each median
moved; the references (kcat, redis-benchmark, Kafka-only latency), which
no mlstream change touches, move between runs as well."""


def describe_run(name, run_dir, run):
    """One line on a run: where, when, which commit, how many rounds, and
    the rounds that started under load."""
    m = run.manifest
    loaded = sum(1 for rounds in run.rounds.values() for e, r in rounds
                 if under_load(e, r)[0])
    return ("- Run %s: `%s`, %s, commit %s, %s round%s of each benchmark, %s started "
            "under load\n" % (name, run_dir, m.get("started", "?"),
                             m.get("machine_before", {}).get("commit", "?"), m.get("rounds", "?"),
                             "" if m.get("rounds") == 1 else "s",
                             "none" if not loaded else "%d" % loaded))


def compare(dir_a, dir_b):
    """A table of each summary figure in two runs: B's median over A's, and
    whether each run's median is within the other's min..max. Returns
    (text, how many are not, both ways)."""
    a, b = Run(dir_a), Run(dir_b)
    rows = ["| benchmark | figure | run A median (min..max) | run B median (min..max) | "
            "B / A | B's median in A's spread | A's in B's |", "|---|---|---|---|---|---|---|"]
    outside = one_way = n = 0
    by_chance = [0.0, 0.0]
    moved = []  # the larger of B / A and A / B, medians of one sign in both
    for bench, key in summary_figures(a):
        sa, sb = spread(a.values(bench, key)), spread(b.values(bench, key))
        if sa is None or sb is None:
            continue
        b_in_a, a_in_b = sa[0] <= sb[1] <= sa[2], sb[0] <= sa[1] <= sb[2]
        n += 1
        for i, p in enumerate(expected_inside(len(a.ok(bench)), len(b.ok(bench)))):
            by_chance[i] += p
        one_way += b_in_a
        outside += not (b_in_a and a_in_b)
        if sa[1] * sb[1] > 0:
            moved.append(max(sb[1] / sa[1], sa[1] / sb[1]))
        rows.append("| %s | %s | %s (%s..%s) | %s (%s..%s) | %s | %s | %s |" % (
            bench, label(key), fmt(sa[1]), fmt(sa[0]), fmt(sa[2]), fmt(sb[1]), fmt(sb[0]),
            fmt(sb[2]), fmt(sb[1] / sa[1]) if sa[1] else "–",
            "yes" if b_in_a else "**no**", "yes" if a_in_b else "**no**"))
    head = "".join(describe_run(name, d, r) for name, d, r in (("A", dir_a, a), ("B", dir_b, b)))
    head = ("# Two runs of bench/run\n\nWritten by `bench/report.py --compare %s %s`; "
            "do not edit, run it again.\n\n%s\n%s\n\n" % (dir_a, dir_b, head, HOW_TO_READ))
    tail = ("\n%d of %d figures: B's median within A's spread; %d of %d both ways\n"
            "chance alone (every round of both runs an independent draw from one "
            "distribution) would give about %.0f and %.0f (bench/report.py: "
            "expected_inside)\n" % (one_way, n, n - outside, n, by_chance[0], by_chance[1]))
    if moved:
        tail += ("of the %d medians with the same sign in both runs, %d moved by less than "
                 "10 %% and %d by less than 25 %%\n"
                 % (len(moved), sum(m < 1.1 for m in moved), sum(m < 1.25 for m in moved)))
    return head + "\n".join(rows) + "\n" + tail, outside


def has_run(run_dir):
    if os.path.exists(os.path.join(run_dir, "run.json")):
        return True
    print("bench/report.py: %s has no run.json (a directory bench/run wrote?)" % run_dir,
          file=sys.stderr)
    return False


def main():
    args = sys.argv[1:]
    if args and args[0] == "--compare" and len(args) == 3:
        if not (has_run(args[1]) and has_run(args[2])):
            sys.exit(2)
        text, outside = compare(args[1], args[2])
        sys.stdout.write(text)
        sys.exit(1 if outside else 0)
    if args and args[0] == "--baseline" and len(args) == 2:
        if not has_run(args[1]):
            sys.exit(2)
        json.dump(baseline(args[1]), sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.exit(0)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if args and args[0] in ("-h", "--help") else 2)
    if not has_run(args[0]):
        sys.exit(2)
    sys.stdout.write(render(args[0]))


if __name__ == "__main__":
    main()
