"""The engine's pool after PostgreSQL dropped its connections (a restart, a failover): the
engine does not ping on every checkout, so the first statement on a dropped connection fails,
with an error the consumers treat as transient (the batch is retried), and every other pooled
connection of that time is replaced on its next checkout instead of failing in turn."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from servicekit.consumer import is_transient
from servicekit.db import (
    lock_row,
    make_engine,
    make_read_session_factory,
    make_session_factory,
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


async def test_lock_row_is_one_statement_for_a_known_row_creates_a_missing_one_and_skips(
    fresh_database_url: str,
) -> None:
    engine = make_engine(fresh_database_url, pool_size=2)
    table = sa.table("accounts", sa.column("id", sa.Integer), sa.column("n", sa.Integer))

    def select(key: int, *, skip: bool = False) -> Any:
        return (
            sa.select(table.c.id, table.c.n)
            .where(table.c.id == key)
            .with_for_update(skip_locked=skip)
        )

    def insert(key: int) -> Any:
        return sa.text(
            "INSERT INTO accounts (id, n) VALUES (:id, 0) ON CONFLICT DO NOTHING"
        ).bindparams(id=key)

    statements: list[str] = []
    sa.event.listen(
        engine.sync_engine, "before_cursor_execute", lambda _c, _k, sql, *_a: statements.append(sql)
    )
    factory = make_session_factory(engine)
    try:
        async with factory() as session, session.begin():
            await session.execute(sa.text("CREATE TABLE accounts (id int PRIMARY KEY, n int)"))
        statements.clear()
        async with factory() as session, session.begin():
            created = await lock_row(session, select(1), insert(1))  # first sight
            assert created is not None and created.n == 0 and len(statements) == 3
        statements.clear()
        async with factory() as session, session.begin():
            assert (await lock_row(session, select(1), insert(1))) is not None
            assert len(statements) == 1  # known: the SELECT ... FOR UPDATE alone
            assert await lock_row(session, select(2)) is None  # nothing to create it with
            async with factory() as other, other.begin():
                # held by the first session: SKIP LOCKED gives None at once, creates nothing
                assert (
                    await asyncio.wait_for(lock_row(other, select(1, skip=True), insert(1)), 10)
                    is None
                )
    finally:
        await engine.dispose()
