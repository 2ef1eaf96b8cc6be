"""Fixtures of reporting's integration tests: a migrated database of its own per test, the
projection's consumer on it, and the internal HTTP API in process."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.entrypoints.api import router
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.service_layer.handlers import make_consumer
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import consumer_for_tests, internal_api_client, migrated_engine

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: the tests
# import reporting_helpers (shared event builders and paging) from this folder
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(MIGRATIONS_DIR, fresh_database_url) as migrated:
        yield migrated


@pytest.fixture
def consumer(engine: AsyncEngine) -> Consumer:
    return consumer_for_tests(make_consumer(), make_session_factory(engine))


@pytest.fixture
def api(engine: AsyncEngine) -> Callable[[], httpx.AsyncClient]:
    """`async with api() as http`: reporting's internal API on the test database."""
    return lambda: internal_api_client(router(), make_session_factory(engine))
