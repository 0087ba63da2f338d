"""The adversarial suite shares the integration tests' fixtures (a real Kafka
broker and Redis, engines, topics) and helpers."""
import importlib.util
import os
import sys

_integration = os.path.join(os.path.dirname(__file__), "..", "integration")
sys.path.insert(0, _integration)
_spec = importlib.util.spec_from_file_location(
    "integration_conftest", os.path.join(_integration, "conftest.py"))
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

services = _fixtures.services
topic = _fixtures.topic
engines = _fixtures.engines
pytest_runtest_makereport = _fixtures.pytest_runtest_makereport
