"""The engine's pool after PostgreSQL dropped its connections (a restart, a failover): the
engine does not ping on every checkout, so the first statement on a dropped connection fails,
with an error the consumers treat as transient (the batch is retried), and every other pooled
connection of that time is replaced on its next checkout instead of failing in turn."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from servicekit.consumer import is_transient
from servicekit.db import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
    plain_url,
)

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
                # counts the failures over a loop of uses: not one pytest.raises
                assert is_transient(exc), exc  # noqa: PT017
                failures += 1
        # at most the first use fails: the pool is invalidated, the other dropped
        # connections are replaced on checkout
        assert failures <= 1
        async with engine.connect() as c:
            assert await c.scalar(sa.text("SELECT pg_backend_pid()")) not in pids
    finally:
        await engine.dispose()


async def _in_transaction(session: Any) -> bool:
    await session.execute(sa.text("SELECT 1"))
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return bool(raw.driver_connection.is_in_transaction())


async def test_a_read_session_sends_no_begin_and_its_connection_goes_back_clean(
    fresh_database_url: str,
) -> None:
    engine = make_engine(fresh_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session:
            assert await _in_transaction(session)  # BEGIN first, ROLLBACK at the end
        async with make_read_session_factory(engine)() as session:
            assert not await _in_transaction(session)  # autocommit: neither
        async with make_session_factory(engine)() as session, session.begin():
            # the same pooled connection, back in transactions: a write is rolled back
            assert await _in_transaction(session)
            await session.execute(sa.text("CREATE TEMP TABLE t (x int)"))
            await session.rollback()
        async with make_session_factory(engine)() as session:
            missing = await session.scalar(sa.text("SELECT to_regclass('pg_temp.t')"))
            assert missing is None
    finally:
        await engine.dispose()


async def test_the_engine_and_a_bare_asyncpg_connection_take_the_same_way_to_the_server(
    fresh_database_url: str,
) -> None:
    """Through the unix socket when the URL names one (devstack's does: no client address),
    over TCP otherwise; a bare asyncpg connection (the gateway's listener) as the engine."""
    over_socket = "host=/" in fresh_database_url
    engine = make_engine(fresh_database_url, pool_size=1)
    try:
        async with engine.connect() as c:
            engines = await c.scalar(sa.text("SELECT inet_client_addr()"))
    finally:
        await engine.dispose()
    bare = await asyncpg.connect(plain_url(fresh_database_url))
    try:
        bares = await bare.fetchval("SELECT inet_client_addr()")
    finally:
        await bare.close()
    assert (engines is None, bares is None) == (over_socket, over_socket)
