"""The README's "Try it" examples, run as printed against `mlstream up --demo`.

The README marks its examples with HTML comments before fenced blocks:

  <!-- try: run -->         a shell command, run to completion;
  <!-- try: background -->  a shell command started and left running (a
                            subscription); the next command runs once the
                            gateway counts one more live subscription;
  <!-- try: output -->      what the command before prints: the background
                            one if one is running (it must then exit by
                            itself), else the last one run.

Output lines are JSON and must match the README's in structure: the same
keys, list lengths and value types, the same strings, booleans and nulls.
Numbers only need to be numbers (latencies vary from run to run).

The commands are run with bash from the repository root, as a user would
run them, with one change: `up` runs on free ports here, so the README's
127.0.0.1:4000 (gateway) and 127.0.0.1:9092 (embedded broker) are replaced
by the ports of this run.
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MLSTREAM = os.environ.get("MLSTREAM_BIN", str(ROOT / "build" / "mlstream"))
DEMO_MODELS = ["fraud-scorer-v2", "telemetry-anomaly-v1", "threat-detector-v1"]

BLOCK = re.compile(r"<!-- try: (run|background|output) -->\s*\n```[a-z]*\n(.*?)\n```", re.S)


def examples():
    """The marked blocks of the README, in order: [(kind, text)]."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, body=None):
    req = urllib.request.Request(url, data=body and json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except OSError:
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def same_shape(want, got, path="$"):
    """Asserts that got matches the README's want (see the module doc)."""
    if isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, f"{path}: README says {want!r}, got {got!r}"
    elif isinstance(want, (int, float)):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), \
            f"{path}: README shows a number, got {got!r}"
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), \
            f"{path}: README shows {want!r}, got {got!r}"
        for i, (w, g) in enumerate(zip(want, got)):
            same_shape(w, g, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), \
            f"{path}: README shows keys {list(want)}, got {got!r}"
        for k in want:
            same_shape(want[k], got[k], f"{path}.{k}")
    else:
        raise AssertionError(f"{path}: unexpected {want!r} in the README")


def same_output(expected, actual):
    want = [line for line in expected.splitlines() if line.strip()]
    got = [line for line in actual.splitlines() if line.strip()]
    assert len(got) == len(want), f"README shows {len(want)} line(s), got:\n{actual}"
    for i, (w, g) in enumerate(zip(want, got)):
        try:
            g = json.loads(g)
        except ValueError:
            raise AssertionError(f"line {i + 1} is not JSON: {g!r}") from None
        same_shape(json.loads(w), g, f"line {i + 1}")


@pytest.fixture
def up():
    """`mlstream up --demo` on free ports; yields its gateway and broker."""
    kafka, gateway = free_port(), free_port()
    env = {**os.environ, "ML_EMBEDDED_KAFKA_PORT": str(kafka),
           "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(gateway)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the embedded broker and bus,
    env.pop("REDIS_URL", None)                # as a new user has them
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([MLSTREAM, "up", "--demo"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{gateway}"
    try:
        def healthy():
            assert proc.poll() is None, "mlstream up exited at start-up"
            return http(base + "/healthz")
        wait_for(healthy, 30, "mlstream up /healthz")
        yield {"base": base, "gateway": gateway, "kafka": kafka}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        out = log.read()
        log.close()
        assert proc.returncode == 0, f"mlstream up exited {proc.returncode}:\n{out}"


def localize(cmd, up):
    return (cmd.replace("127.0.0.1:4000", f"127.0.0.1:{up['gateway']}")
               .replace("127.0.0.1:9092", f"127.0.0.1:{up['kafka']}"))


def subscriptions(up):
    for line in http(up["base"] + "/metrics").splitlines():
        if line.startswith("ml_stream_gateway_subscriptions "):
            return float(line.split()[1])
    return 0.0


def test_readme_marks_its_examples():
    """The README has the examples this test runs, each output after a command."""
    blocks = examples()
    kinds = [k for k, _ in blocks]
    assert kinds.count("run") >= 2 and "background" in kinds and "output" in kinds, kinds
    assert kinds[0] != "output"
    text = " ".join(t for _, t in blocks)
    assert "mlStreamingModels" in text and "mlInferenceStream" in text
    # README commands use the addresses `up` prints by default
    for kind, t in blocks:
        if kind != "output":
            assert ":4000" in t or ":9092" in t, t


def test_readme_examples_run_as_printed(up):
    # The demo's first predictions for each model, so that the first example
    # (which models are there?) has its whole answer.
    wait_for(lambda: json.loads(http(up["base"] + "/graphql", {"query": "{ mlStreamingModels }"}))
             ["data"]["mlStreamingModels"] == DEMO_MODELS, 20, "the three demo models")
    last = None          # stdout of the last command run
    background = None    # the running background command
    sent_event = None    # the event the README sends with kcat
    outputs = []
    try:
        for kind, text in examples():
            if kind == "run":
                r = subprocess.run(["bash", "-c", localize(text, up)], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, f"{text}\nexit {r.returncode}:\n{r.stdout}{r.stderr}"
                last = r.stdout
                m = re.search(r"echo '(\{.*\})' \|\s*kcat", text)
                if m:
                    sent_event = json.loads(m.group(1))
            elif kind == "background":
                before = subscriptions(up)
                background = subprocess.Popen(["bash", "-c", localize(text, up)], cwd=ROOT,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)
                wait_for(lambda: background.poll() is not None or subscriptions(up) > before,
                         20, "the subscription to go live")
                assert background.poll() is None, \
                    f"{text}\nexited {background.returncode}:\n{background.communicate()}"
            else:
                if background is not None:
                    try:
                        out, err = background.communicate(timeout=30)
                    except subprocess.TimeoutExpired:
                        background.kill()
                        out, err = background.communicate()
                        raise AssertionError(f"the background example did not exit:\n{out}{err}")
                    assert background.returncode == 0, f"exit {background.returncode}:\n{out}{err}"
                    background = None
                    actual = out
                else:
                    assert last is not None, "an output block before any command"
                    actual = last
                same_output(text, actual)
                outputs.append(actual)
    finally:
        if background is not None and background.poll() is None:
            background.kill()
            background.communicate()

    # What the examples show, beyond their shape: the demo's models, a live
    # status with latencies, and the kcat event coming back from the identity
    # model with its predictions equal to its features.
    assert len(outputs) == 3, outputs
    status = json.loads(outputs[1])["data"]["mlStreamingStatus"]
    assert status["connected"] is True and status["windowSize"] > 0
    assert 0 <= status["averageLatencyMs"] <= status["p95LatencyMs"]
    event = json.loads(outputs[2])
    assert sent_event is not None, "the README sends no event with kcat"
    assert event["modelId"] == sent_event["model_id"]
    assert event["inputId"] == sent_event["input_id"]
    assert event["predictions"] == sent_event["features"]
    assert event["metadata"] == sent_event["metadata"]
