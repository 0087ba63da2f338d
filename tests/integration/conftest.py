"""Fixtures for integration tests against a real Kafka broker and Redis.

If KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are not in the environment, the
session starts both with scripts/services and stops them at the end.
"""
import os
import subprocess
import uuid

import pytest

from mlshelpers import ROOT, Engine, topic_create

SERVICES = os.path.join(ROOT, "scripts", "services")


@pytest.fixture(scope="session")
def services():
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("REDIS_URL"):
        yield dict(os.environ)
        return
    state = os.path.join("/tmp", "mlstream-it-%s" % uuid.uuid4().hex[:8])
    env = dict(os.environ, MLSTREAM_SERVICES_DIR=state)
    out = subprocess.run([SERVICES, "start", "all", "--owner", str(os.getpid())],
                         env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v.strip("'\"")
    os.environ.update({k: env[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")})
    try:
        yield env
    finally:
        subprocess.run([SERVICES, "stop", "all"], env=env, check=False)


@pytest.fixture
def topic(services):
    """A fresh 4-partition input topic and the names of its side topics."""
    name = "it.%s" % uuid.uuid4().hex[:10]
    topic_create(services, name, 4)
    return name


@pytest.fixture
def engines(services):
    started = []

    def start(**kw):
        e = Engine(services, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.kill()
