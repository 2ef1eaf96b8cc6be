"""Fixtures of the deployment tests (helpers are in deployfiles.py, beside this file)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: the test
# modules import their shared helpers from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployfiles import BACKENDS, SERVICES, Service, service_ids  # noqa: E402


@pytest.fixture(params=SERVICES, ids=service_ids)
def service(request: pytest.FixtureRequest) -> Service:
    """Every service image: the five of the system and the back office."""
    result: Service = request.param
    return result


@pytest.fixture(params=BACKENDS, ids=service_ids)
def backend(request: pytest.FixtureRequest) -> Service:
    """The five services with Kafka and a database (migrations, consumers, autoscalers)."""
    result: Service = request.param
    return result
