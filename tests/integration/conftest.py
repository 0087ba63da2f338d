"""Fixtures for integration tests against a real Kafka broker and Redis.

If KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are not in the environment, the
session starts both with scripts/services and stops them at the end.
"""
import uuid

import pytest

from mlshelpers import Engine, ensure_services, stop_services, topic_create

@pytest.fixture(scope="session")
def services():
    env, started = ensure_services("all")
    try:
        yield env
    finally:
        if started:
            stop_services(env, "all")


@pytest.fixture
def topic(services):
    """A fresh 4-partition input topic and the names of its side topics."""
    name = "it.%s" % uuid.uuid4().hex[:10]
    topic_create(services, name, 4)
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, for fixtures to see."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def engines(services, request):
    """Starts engines (mlshelpers.Engine) and kills them after the test; when
    the test failed, the last lines each engine logged go to the report."""
    started = []

    def start(**kw):
        e = Engine(services, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for e in started:
            tail = "\n".join(e.output().splitlines()[-25:])
            print("--- engine on :%d, exit %s, last lines:\n%s" % (e.port, e.proc.returncode, tail))
