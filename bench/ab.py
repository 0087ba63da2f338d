#!/usr/bin/env python3
"""A/B benchmark: the engine of two builds on the same backlog, in
alternating rounds, in one run.

A figure measured today cannot be set against one measured on another day,
or on another machine of the same kind: on a shared 2-core VM the same
binary drains a backlog 20-30 % faster or slower from one hour to the next.
Two builds measured in turns, a round of each at a time, see the same
machine; the ratio of each round's pair is what changed, and its spread
over the rounds says how far to trust it.

  --what engine: the identity model draining --messages one-row messages
     (ML_BATCH_MAX_ROWS 256, the default), as bench/engine_bench.py's
     backlog run: messages/s from the first prediction to the last, and
     the engine's CPU per message;
  --what shadow: the MLP fixture at the default batch limit (256) from a
     model repository, serving alone, with a shadow version, and with a
     shadow version and a subscriber on its channel (bench/model_bench.py's
     shadow runs): rows/s of each and their ratios, per build.
  --what steady: a fresh engine, joined, idle for 30 s (the share of a
     core it takes then), then the identity model at 1,000 msg/s, --messages
     of them from a paced producer (bench/engine_bench.py's steady run): the
     engine's CPU per message, and the share of it taken by its own
     thread, by librdkafka's coordinator thread (commits) and by its main
     thread (timers, offsets), next to kcat's CPU per message on the same
     messages (the reference);
  --what steady-wait: the same rate without the idle period, both the
     engine's and kcat's fetches waiting up to 20 ms for more (bench/
     engine_bench.py's "fetches wait 20 ms" run): the engine's CPU per
     message and its ratio to kcat's in the same window;
  --what latency: --messages one-row messages at 10,000/s through Kafka,
     the engine, Redis and a gateway to one GraphQL subscriber, next to a
     plain Kafka consumer of the same topic (bench/engine_bench.py's
     latency run): the p99 through the gateway minus the Kafka-only p99,
     and the engine's own latency (each build runs its own engine and
     gateway);
  --what gateway: a burst of --messages predictions published as fast as
     Redis takes them to one graphql-transport-ws subscriber (bench/
     gateway_bench.py's one-subscriber burst): the gateway's CPU per
     delivery and deliveries/s.

The base build is --base: a git revision (checked out with `git worktree`
under bench/out/ab/ and its mlstream built there, once) or a build
directory. The head is the build under test ($MLSTREAM_BUILD_DIR, default
build/), whose mlstream is brought up to date first (ninja). Each run has a live subscriber (mls-loadgen sub) that must
receive every prediction; a run whose subscriber fell behind is reported.

Writes --out (default bench/out/ab-WHAT.json) and --markdown (default
bench/AB-WHAT.md): both builds' figures per round, the head/base ratio of
each round, and its median, min and max, stamped with the machine and both
commits.
Usage: bench/ab.py --base REV|BUILD_DIR [--what engine|shadow|steady|steady-wait|latency|gateway]
                   [--rounds N]
                   [--messages N] [--quick] [--out FILE] [--markdown FILE]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import fail  # noqa: E402
import mlshelpers  # noqa: E402
import engine_bench  # noqa: E402
import model_bench  # noqa: E402

STEADY_RATE = 1000  # msg/s
STEADY_IDLE_S = 30  # as engine_bench.py
LATENCY_RATE = 10000  # msg/s


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def base_binary(base):
    """The mlstream of --base: a build directory as it is, or a revision
    built in its own worktree (kept for the next run)."""
    if os.path.isdir(base):
        return benchlib.need_file(os.path.join(os.path.abspath(base), "mlstream"),
                                  "no mlstream in the build directory %s" % base)
    try:
        sha = git("rev-parse", "--verify", base + "^{commit}")
    except subprocess.CalledProcessError:
        fail("--base %s is neither a build directory nor a git revision" % base)
    tree = os.path.join(HERE, "out", "ab", sha[:12])
    binary = os.path.join(tree, "build", "mlstream")
    if os.path.exists(binary):
        return binary
    if not os.path.isdir(tree):
        os.makedirs(os.path.dirname(tree), exist_ok=True)
        git("worktree", "add", "--detach", tree, sha)
    print("ab: building %s in %s" % (sha[:12], tree), file=sys.stderr)
    for cmd in (["cmake", "-S", tree, "-B", os.path.join(tree, "build"), "-G", "Ninja",
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                ["ninja", "-C", os.path.join(tree, "build"), "mlstream"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail("building %s failed: %s" % (sha[:12], r.stdout[-2000:] + r.stderr[-2000:]))
    return binary


def commit_of(binary):
    v = benchlib.mlstream_versions(binary).get("mlstream", "")
    return v.split("git ")[-1].rstrip(")") if "git " in v else v


def run_engine(env, topic, n):
    r = model_bench.engine_run(env, topic, n, 256, "identity", 1)
    return {"msgs_per_s": r["rows_per_s"], "cpu_us_per_msg": r["cpu_us_per_row"],
            "subscribers_received": r["subscribers_received"]}


def run_shadow(env, topic, n, repos):
    alone = model_bench.engine_run(env, topic, n, model_bench.SHADOW_BATCH, "torch", 1,
                                   repos["serving_only"])
    shadow = model_bench.engine_run(env, topic, n, model_bench.SHADOW_BATCH, "torch", 1,
                                    repos["with_shadow"])
    heard = model_bench.engine_run(env, topic, n, model_bench.SHADOW_BATCH, "torch", 1,
                                   repos["with_shadow"], shadow_subscriber=True)
    return {"serving_only_rows_per_s": alone["rows_per_s"],
            "with_shadow_rows_per_s": shadow["rows_per_s"],
            "with_shadow_over_serving_only": shadow["rows_per_s"] / alone["rows_per_s"],
            "with_shadow_subscribed_over_serving_only":
                heard["rows_per_s"] / alone["rows_per_s"],
            "with_shadow_extra_cpu_us_per_row":
                shadow["cpu_us_per_row"] - alone["cpu_us_per_row"],
            "shadow_call_us_per_row": shadow["shadow_call_us_per_row"],
            "shadow_cost_beyond_its_calls_us_per_row":
                shadow["cpu_us_per_row"] - alone["cpu_us_per_row"]
                - shadow["shadow_call_us_per_row"],
            "subscribers_received": alone["subscribers_received"]
                + shadow["subscribers_received"] + heard["subscribers_received"]}


def run_steady(env, n, fetch_wait_ms=None):
    r = engine_bench.run_steady(env, STEADY_RATE, max(1, n // STEADY_RATE),
                                0 if fetch_wait_ms else STEADY_IDLE_S, fetch_wait_ms)
    threads = r["engine_threads_cpu_us_per_msg"]
    return {"cpu_us_per_msg": r["engine_cpu_us_per_msg"],
            "idle_core_percent": r["idle_core_percent"],
            "ref_kcat_cpu_us_per_msg": r["ref_kcat_cpu_us_per_msg"],
            "over_kcat_cpu": r["engine_cpu_us_per_msg"] / r["ref_kcat_cpu_us_per_msg"],
            "engine_thread_cpu_us_per_msg": threads.get("mlstream", 0.0),
            "coordinator_thread_cpu_us_per_msg": threads.get("rdk:broker-1", 0.0),
            "main_thread_cpu_us_per_msg": threads.get("rdk:main", 0.0),
            "subscribers_received": [n]}  # nobody subscribes here


def run_latency(env, n):
    r = engine_bench.run_latency(env, LATENCY_RATE, n, benchlib.need_binary("bench/mls-loadgen"),
                                 benchlib.need_binary("bench/mls-kafkapub"),
                                 engine_bench.LATENCY_LINGER_MS)
    gw, ko = r["through_gateway"], r["kafka_only"]
    return {"gateway_p99_ms": gw["p99_ms"], "kafka_only_p99_ms": ko["p99_ms"],
            "gateway_p99_minus_kafka_only_ms": gw["p99_ms"] - ko["p99_ms"],
            "gateway_p50_minus_kafka_only_ms": gw["p50_ms"] - ko["p50_ms"],
            "engine_latency_mean_ms": r["engine_latency_mean_ms"],
            "cpu_us_per_msg": r["engine_cpu_us_per_msg"],
            "subscribers_received": [gw["count"]]}


def run_gateway(bench, gateway, n):
    channel, gw = gateway
    bench.channel = channel
    b = bench.burst(gw, 1, n)
    return {"deliveries_per_s": b["deliveries_per_s"],
            "cpu_us_per_delivery": b["gateway_cpu_us_per_delivery"],
            "published": b["published"], "dropped_by_gateway": b["dropped"],
            "bare_subscriber_received": b["bare_sub_received"],
            # the C subscriber here is the WebSocket client itself
            "subscribers_received": [b["deliveries"]]}


def gateway_bench(env, builds):
    """gateway_bench's Bench, and a gateway of each build, each reading its
    own channel (so that the one not measured idles)."""
    import argparse as ap
    import gateway_bench as gwb
    args = ap.Namespace(build=benchlib.BUILD_DIR, conns_per_source=10000, max_pending=256)
    bench = gwb.Bench(args, env)
    gateways = {}
    for side, binary in builds.items():
        channel = "%s:%s" % (bench.channel, side)
        gateways[side] = (channel, gwb.Gateway(binary, env, channel, 100))
    return bench, gateways


# the figures compared, and whether more is better
FIGURES = {"engine": [("msgs_per_s", True), ("cpu_us_per_msg", False)],
           "gateway": [("deliveries_per_s", True), ("cpu_us_per_delivery", False)],
           "steady": [("cpu_us_per_msg", False), ("idle_core_percent", False)],
           "steady-wait": [("cpu_us_per_msg", False), ("over_kcat_cpu", False)],
           "latency": [("gateway_p99_ms", False), ("cpu_us_per_msg", False)],
           "shadow": [("with_shadow_over_serving_only", True),
                      ("with_shadow_subscribed_over_serving_only", True),
                      ("serving_only_rows_per_s", True),
                      ("with_shadow_extra_cpu_us_per_row", False)]}
# figures shown for each build on its own, without a ratio (they can be
# near zero or negative)
OWN = {"engine": [], "gateway": [], "shadow": ["shadow_call_us_per_row",
                                "shadow_cost_beyond_its_calls_us_per_row"],
       "steady": ["ref_kcat_cpu_us_per_msg", "engine_thread_cpu_us_per_msg",
                  "coordinator_thread_cpu_us_per_msg", "main_thread_cpu_us_per_msg"],
       "steady-wait": ["ref_kcat_cpu_us_per_msg", "engine_thread_cpu_us_per_msg",
                       "coordinator_thread_cpu_us_per_msg", "main_thread_cpu_us_per_msg"],
       "latency": ["kafka_only_p99_ms", "gateway_p99_minus_kafka_only_ms",
                   "gateway_p50_minus_kafka_only_ms", "engine_latency_mean_ms"]}


def markdown(res):
    m = res["machine"]
    lines = ["# A/B: %s against %s" % (res["head"]["commit"], res["base"]["commit"]), "",
             "Written by `bench/ab.py --what %s --rounds %d --messages %d` on %s; "
             "do not edit." % (res["what"], res["rounds"], res["messages"], res["date"]), "",
             "Machine: %s, %s cores, kernel %s; load average %.2f before, %.2f after. "
             "Each round runs both builds, in turns (the order alternates), on the "
             "same load; the ratio is head / base of that round."
             % (m.get("cpu"), m.get("cores"), m.get("kernel"),
                m["load_avg_before"][0], m["load_avg_after"][0]), "",
             "| figure | base median | head median | head / base: median | min | max |",
             "|---|---|---|---|---|---|"]
    for name, _ in FIGURES[res["what"]]:
        s = res["summary"][name]
        lines.append("| %s | %s | %s | **%.3f** | %.3f | %.3f |" % (
            name.replace("_", " "), fmt(s["base_median"]), fmt(s["head_median"]),
            s["ratio_median"], s["ratio_min"], s["ratio_max"]))
    if OWN[res["what"]]:
        lines += ["", "| figure | base: median (min .. max) | head: median (min .. max) |",
                  "|---|---|---|"]
        for name in OWN[res["what"]]:
            s = res["summary"][name]
            lines.append("| %s | %s | %s |" % (name.replace("_", " "), spread(s["base"]),
                                               spread(s["head"])))
    short = res["summary"]["runs_subscriber_behind"]
    lines += ["", "Runs whose subscriber missed predictions (their figures flatter what "
              "is measured: Redis drops a slow subscriber): %d of %d." % (
                  short, 2 * res["rounds"]), ""]
    return "\n".join(lines)


def spread(v):
    return "%s (%s .. %s)" % (fmt(v["median"]), fmt(v["min"]), fmt(v["max"]))


def fmt(v):
    return "{:,.0f}".format(v) if abs(v) >= 1000 else "%.3g" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision or build directory")
    ap.add_argument("--what", choices=sorted(FIGURES), default="engine")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int,
                    help="backlog (engine: 500,000; shadow: 300,000), messages at 1,000/s "
                    "(steady, steady-wait: 20,000) or 10,000/s (latency: 50,000) or burst (gateway: 60,000, which Redis' default 32 MB "
                    "buffer for a subscriber that falls behind holds whole) size")
    ap.add_argument("--markdown", help="report (default bench/AB-WHAT.md; '' for none)")
    benchlib.add_common_args(ap, "ab-WHAT")
    args = ap.parse_args()
    if args.messages is None:
        args.messages = {"engine": 500000, "shadow": 300000, "steady": 20000,
                         "steady-wait": 20000, "latency": 50000, "gateway": 60000}[args.what]
    args.out = args.out.replace("WHAT", args.what)
    if args.markdown is None:
        args.markdown = os.path.join(HERE, "AB-%s.md" % args.what)
    if args.quick:
        args.rounds, args.messages = 1, min(args.messages, 30000)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    result = benchlib.Result("ab", args)
    head = benchlib.need_binary("mlstream")
    # brought up to date with the tree (and its revision stamp with it), so
    # that the report names the head that was measured
    r = subprocess.run(["ninja", "-C", benchlib.BUILD_DIR, "mlstream"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        fail("building the head (ninja -C %s mlstream) failed: %s"
             % (benchlib.BUILD_DIR, (r.stdout + r.stderr)[-2000:]))
    base = base_binary(args.base)
    benchlib.need_binary("bench/mls-loadgen")
    benchlib.need_command("kcat", "apt-get install kcat")
    if args.what == "shadow" and "torch" not in benchlib.mlstream_versions(head):
        fail("this mlstream was built without the torch plugin")
    builds = {"base": base, "head": head}
    env, started = benchlib.services("all")
    runs = {"base": [], "head": []}
    gateways = {}
    try:
        if args.what == "gateway":
            bench, gateways = gateway_bench(env, builds)
        elif args.what not in ("steady", "steady-wait", "latency"):
            topic = model_bench.produce_backlog(env, args.messages)
        with tempfile.TemporaryDirectory(prefix="mls-ab-repo.") as tmp:
            repos = {}  # the shadow runs' model repositories
            for name, shadow in (("serving_only", False), ("with_shadow", True)):
                if args.what == "shadow":
                    repos[name] = os.path.join(tmp, name)
                    model_bench.make_repository(repos[name], shadow)
            for r in range(args.rounds):
                for side in (("base", "head") if r % 2 == 0 else ("head", "base")):
                    mlshelpers.MLSTREAM = builds[side]
                    if args.what == "engine":
                        runs[side].append(run_engine(env, topic, args.messages))
                    elif args.what == "shadow":
                        runs[side].append(run_shadow(env, topic, args.messages, repos))
                    elif args.what == "steady":
                        runs[side].append(run_steady(env, args.messages))
                    elif args.what == "steady-wait":
                        runs[side].append(run_steady(env, args.messages,
                                                     engine_bench.STEADY_FETCH_WAIT_MS))
                    elif args.what == "latency":
                        runs[side].append(run_latency(env, args.messages))
                    else:
                        runs[side].append(run_gateway(bench, gateways[side], args.messages))
                    print("ab: round %d %s %s" % (r + 1, side, {
                        k: round(v, 3) for k, v in runs[side][-1].items()
                        if isinstance(v, float)}), file=sys.stderr)
    finally:
        for _, gw in gateways.values():
            gw.stop()
        mlshelpers.MLSTREAM = head
        if started:
            mlshelpers.stop_services(env, "all")
    summary = {}
    for name, _ in FIGURES[args.what]:
        ratios = [h[name] / b[name] for b, h in zip(runs["base"], runs["head"])]
        summary[name] = {
            "base_median": statistics.median(x[name] for x in runs["base"]),
            "head_median": statistics.median(x[name] for x in runs["head"]),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}
    for name in OWN[args.what]:
        summary[name] = {side: {"median": statistics.median(x[name] for x in runs[side]),
                                "min": min(x[name] for x in runs[side]),
                                "max": max(x[name] for x in runs[side])}
                         for side in runs}
    # shadow: serving only, with a shadow, and with a shadow subscriber
    # (whose run has two subscribers)
    expected = args.messages * (4 if args.what == "shadow" else 1)
    summary["runs_subscriber_behind"] = sum(
        1 for side in runs.values() for x in side if sum(x["subscribers_received"]) < expected)
    res = result.write(summary, head, env, what=args.what, rounds=args.rounds,
                       messages=args.messages,
                       base={"binary": base, "commit": commit_of(base)},
                       head={"binary": head, "commit": commit_of(head)}, runs=runs)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(res))
        print("ab: wrote %s" % os.path.relpath(args.markdown), file=sys.stderr)
    for name, _ in FIGURES[args.what]:
        s = summary[name]
        print("%-36s head/base %.3f (%.3f .. %.3f)" % (name, s["ratio_median"],
                                                       s["ratio_min"], s["ratio_max"]))


if __name__ == "__main__":
    benchlib.run_main(main)
