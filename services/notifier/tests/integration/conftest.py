"""Fixtures of the notifier's integration tests: a migrated database of its own per test, the
notifier's consumer on it, and its internal HTTP API in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.entrypoints.api import router
from notifier.entrypoints.app import MIGRATIONS_DIR
from notifier.service_layer.handlers import make_consumer
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory, make_session_factory
from servicekit.testing import consumer_for_tests, internal_api_client, migrated_engine


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(MIGRATIONS_DIR, fresh_database_url, pool_size=3) as migrated:
        yield migrated


@pytest.fixture
def sf(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def consumer(sf: SessionFactory) -> Consumer:
    return consumer_for_tests(make_consumer(), sf)


@pytest.fixture
def api(sf: SessionFactory) -> Callable[[], httpx.AsyncClient]:
    """`async with api() as http`: the notifier's internal API on the test database."""
    return lambda: internal_api_client(router(), sf)
