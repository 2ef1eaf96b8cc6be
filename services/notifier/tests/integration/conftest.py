"""Fixtures of the notifier's integration tests: a migrated database of its own per test, the
notifier's consumer on it, and its internal HTTP API in process (and its open tasks read
through it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

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
    return lambda: internal_api_client(router, sf)


#: the `open_tasks` fixture: `await open_tasks(chain_id)`
OpenTasks = Callable[[UUID], Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def open_tasks(api: Callable[[], httpx.AsyncClient]) -> OpenTasks:
    """`await open_tasks(chain_id)`: the chain's open tasks as the internal API lists them (its
    first page)."""

    async def read(chain_id: UUID) -> list[dict[str, Any]]:
        async with api() as http:
            got = await http.get(f"/internal/v1/chains/{chain_id}/tasks", params={"status": "open"})
        return list(got.json()["items"])

    return read
