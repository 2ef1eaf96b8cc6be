"""The engine's pool after PostgreSQL dropped its connections (a restart, a failover): the
engine does not ping on every checkout, so the first statement on a dropped connection fails,
with an error the consumers treat as transient (the batch is retried), and every other pooled
connection of that time is replaced on its next checkout instead of failing in turn."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from servicekit.consumer import is_transient
from servicekit.db import make_engine

pytestmark = pytest.mark.integration


async def test_after_the_server_dropped_the_pool_one_use_fails_transiently_then_all_work(
    fresh_database_url: str,
) -> None:
    engine = make_engine(fresh_database_url, pool_size=3)
    try:
        # three pooled connections, each used once
        conns = [await engine.connect() for _ in range(3)]
        pids = [await c.scalar(sa.text("SELECT pg_backend_pid()")) for c in conns]
        for c in conns:
            await c.close()
        admin = await asyncpg.connect(fresh_database_url.replace("+asyncpg", ""))
        try:
            for pid in pids:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        failures = 0
        for _ in range(4):
            try:
                async with engine.connect() as c:
                    assert await c.scalar(sa.text("SELECT 1")) == 1
            except DBAPIError as exc:
                assert is_transient(exc), exc
                failures += 1
        # at most the first use fails: the pool is invalidated, the other dropped
        # connections are replaced on checkout
        assert failures <= 1
        async with engine.connect() as c:
            assert await c.scalar(sa.text("SELECT pg_backend_pid()")) not in pids
    finally:
        await engine.dispose()
