"""`servicekit.sql`: statements sent through asyncpg belong to the session's transaction
(begun for them when SQLAlchemy has sent nothing yet), savepoints included, are counted like
any other statement, and their failures are classified like SQLAlchemy's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit import sql
from servicekit.consumer import is_transient
from servicekit.db import make_engine, make_read_session_factory, make_session_factory, plain_url
from servicekit.testing import counted_statements, queries_sent, sessions_begun

pytestmark = pytest.mark.integration

_TABLE = (
    "CREATE TABLE IF NOT EXISTS sql_probe (id uuid PRIMARY KEY, amount numeric(15, 2) NOT NULL,"
    " doc jsonb NOT NULL DEFAULT '{}')"
)
_INSERT = "INSERT INTO sql_probe (id, amount, doc) VALUES ($1, $2, $3)"


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(fresh_database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(sa.text(_TABLE))
    try:
        yield engine
    finally:
        await engine.dispose()


async def _exists(engine: AsyncEngine, row_id: uuid.UUID) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(sa.text("SELECT 1 FROM sql_probe WHERE id = :i"), {"i": row_id})
    return found is not None


async def test_a_first_statement_begins_the_sessions_transaction(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    rolled_back, committed = uuid.uuid4(), uuid.uuid4()
    async with sessions() as session:
        async with session.begin() as tx:
            # nothing sent through SQLAlchemy before: without the BEGIN it would autocommit
            await sql.execute(session, _INSERT, rolled_back, Decimal("1.10"), "{}")
            await tx.rollback()
        async with session.begin():
            await sql.execute(session, _INSERT, committed, Decimal("2.20"), "{}")
    assert not await _exists(engine, rolled_back)
    assert await _exists(engine, committed)


async def test_statements_of_both_kinds_share_one_transaction(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    row_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        await session.execute(
            sa.text("INSERT INTO sql_probe (id, amount) VALUES (:i, 3.30)"), {"i": row_id}
        )
        # seen before the commit: the same transaction
        row = await sql.fetchrow(session, "SELECT amount, doc FROM sql_probe WHERE id = $1", row_id)
        assert row is not None
        assert row["amount"] == Decimal("3.30")
        assert row["doc"] == {}  # jsonb decoded by the connection's codec
        pid_sa = await session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert await sql.fetchval(session, "SELECT pg_backend_pid()") == pid_sa


async def test_a_rolled_back_savepoint_takes_its_statements_with_it(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    async with sessions() as session, session.begin():
        await sql.execute(session, _INSERT, kept, Decimal("1"), json.dumps({"k": 1}))

        async def both_in_a_savepoint() -> None:
            async with session.begin_nested():
                await sql.execute(session, _INSERT, dropped, Decimal("1"), "{}")
                await sql.execute(session, _INSERT, kept, Decimal("1"), "{}")  # duplicate key

        with pytest.raises(asyncpg.UniqueViolationError):
            await both_in_a_savepoint()
        rows = await sql.fetch(session, "SELECT id, doc FROM sql_probe ORDER BY id")
    assert [(r["id"], r["doc"]) for r in rows] == [(kept, {"k": 1})]
    assert await _exists(engine, kept)
    assert not await _exists(engine, dropped)


async def test_an_autocommit_session_commits_each_statement(engine: AsyncEngine) -> None:
    reads = make_read_session_factory(engine)
    row_id = uuid.uuid4()
    async with reads() as session:
        await sql.execute(session, _INSERT, row_id, Decimal("4"), "{}")
        assert await _exists(engine, row_id)  # another connection sees it at once


async def test_statements_are_counted_like_any_other(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    with counted_statements(engine) as seen:
        async with sessions() as session, session.begin():
            await sql.fetchval(session, "SELECT 41 + 1")
            await session.execute(sa.text("SELECT 1"))
            await sql.fetch(session, "SELECT id FROM sql_probe WHERE amount > $1", Decimal("0"))
    assert seen == ["SELECT 41 + 1", "SELECT 1", "SELECT id FROM sql_probe WHERE amount > $1"]


async def test_driver_errors_are_classified_like_sqlalchemys(engine: AsyncEngine) -> None:
    sessions = make_session_factory(engine)
    row_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        await sql.execute(session, _INSERT, row_id, Decimal("1"), "{}")
    # a constraint violation is the message's fault, not the infrastructure's
    with pytest.raises(asyncpg.UniqueViolationError) as duplicate:
        async with sessions() as session, session.begin():
            await sql.execute(session, _INSERT, row_id, Decimal("1"), "{}")
    assert not is_transient(duplicate.value)
    # a deadlock is transient: two sessions lock two rows in opposite orders
    other = uuid.uuid4()
    async with sessions() as session, session.begin():
        await sql.execute(session, _INSERT, other, Decimal("1"), "{}")
    both_locked = asyncio.Barrier(2)

    async def lock(first: uuid.UUID, second: uuid.UUID) -> None:
        async with sessions() as session, session.begin():
            await sql.execute(session, "SELECT 1 FROM sql_probe WHERE id = $1 FOR UPDATE", first)
            await both_locked.wait()
            await sql.execute(session, "SELECT 1 FROM sql_probe WHERE id = $1 FOR UPDATE", second)

    results = await asyncio.gather(lock(row_id, other), lock(other, row_id), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], asyncpg.DeadlockDetectedError)
    assert is_transient(errors[0])


async def test_lock_row_creates_a_missing_row_and_skips_one_held_elsewhere(
    engine: AsyncEngine,
) -> None:
    sessions = make_session_factory(engine)
    lock = "SELECT id, amount FROM sql_probe WHERE id = $1 FOR UPDATE"
    create = "INSERT INTO sql_probe (id, amount) VALUES ($1, 0) ON CONFLICT DO NOTHING"
    row_id = uuid.uuid4()
    with counted_statements(engine) as first_sight:
        async with sessions() as session, session.begin():
            row = await sql.lock_row(session, lock, (row_id,), create, (row_id,))
            assert row is not None
            assert (row["id"], row["amount"]) == (row_id, Decimal("0.00"))
    assert len(first_sight) == 3  # lock (nothing), create, lock
    with counted_statements(engine) as known:
        async with sessions() as holder, holder.begin():
            assert await sql.lock_row(holder, lock, (row_id,), create, (row_id,)) is not None
            # held: SKIP LOCKED gives nothing at once, and nothing is created
            async with sessions() as other, other.begin():
                skip = f"{lock} SKIP LOCKED"
                assert await sql.lock_row(other, skip, (row_id,)) is None
    assert len(known) == 2  # one statement each
    async with sessions() as session, session.begin():
        assert await sql.lock_row(session, lock, (uuid.uuid4(),)) is None  # never created


# --------------------------------------------------------------------------- sql.Tx


async def test_a_tx_commits_its_own_statements_and_its_sessions_together(
    engine: AsyncEngine,
) -> None:
    """A `Tx` sends BEGIN itself; what its session (made on first use) sends is in the same
    transaction: both commit together, and a rollback takes both."""
    kept = [uuid.uuid4(), uuid.uuid4()]
    dropped = [uuid.uuid4(), uuid.uuid4()]
    for ids, end in ((kept, "commit"), (dropped, "rollback")):
        async with engine.connect() as conn:
            tx = await sql.Tx.begin(conn)
            await sql.execute(tx, _INSERT, ids[0], Decimal("1.00"), "{}")
            await tx.session.execute(
                sa.text("INSERT INTO sql_probe (id, amount) VALUES (:i, 2)"), {"i": ids[1]}
            )
            # not visible outside before the end: one transaction, not two autocommits
            assert not await _exists(engine, ids[0])
            assert not await _exists(engine, ids[1])
            await getattr(tx, end)()
    assert [await _exists(engine, i) for i in kept] == [True, True]
    assert [await _exists(engine, i) for i in dropped] == [False, False]


async def test_a_tx_savepoint_rolls_back_alone(engine: AsyncEngine) -> None:
    before, inside, after = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with engine.connect() as conn:
        tx = await sql.Tx.begin(conn)
        await sql.execute(tx, _INSERT, before, Decimal("1.00"), "{}")
        with contextlib.suppress(RuntimeError):
            async with sql.savepoint(tx):
                await sql.execute(tx, _INSERT, inside, Decimal("2.00"), "{}")
                raise RuntimeError("rolled back alone")
        await sql.execute(tx, _INSERT, after, Decimal("3.00"), "{}")
        await tx.commit()
    assert [await _exists(engine, i) for i in (before, inside, after)] == [True, False, True]


async def test_what_a_tx_asks_for_after_its_commit_runs_once_and_never_after_a_rollback(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sql.AFTER_COMMIT` (the relay's wake-up, the gateway's waiters) sees the transaction's
    `info` once it committed, through the session's commit when it made one; a rollback
    forgets what was asked."""
    seen: list[object] = []
    monkeypatch.setattr(sql, "AFTER_COMMIT", [lambda info: seen.append(info.pop("asked", None))])
    for with_session, end in ((False, "commit"), (True, "commit"), (False, "rollback")):
        async with engine.connect() as conn:
            tx = await sql.Tx.begin(conn)
            sql.info_of(tx)["asked"] = (with_session, end)
            if with_session:
                await tx.session.execute(sa.text("SELECT 1"))
                assert sql.info_of(tx)["asked"] == (True, "commit")  # one dict for both
            await getattr(tx, end)()
    assert seen == [(False, "commit"), (True, "commit")]


async def test_an_autocommit_tx_is_one_statement_that_commits_by_itself(
    engine: AsyncEngine, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`transaction_on(conn, autocommit=True)`: no BEGIN, no COMMIT; the one statement is
    visible to others before the block ends; a second statement, a session or a savepoint is
    refused before anything is sent; `AFTER_COMMIT` runs at the end of the block, not after a
    raise; the connection then begins ordinary transactions again."""
    seen: list[object] = []
    monkeypatch.setattr(sql, "AFTER_COMMIT", [lambda info: seen.append(info.pop("asked", None))])
    first, refused, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    other = await asyncpg.connect(plain_url(fresh_database_url))  # not `engine`'s: not counted

    async def visible(row_id: uuid.UUID) -> bool:
        return bool(await other.fetchval("SELECT count(*) FROM sql_probe WHERE id = $1", row_id))

    try:
        async with queries_sent(engine) as sent, engine.connect() as conn:
            async with sql.transaction_on(conn, autocommit=True) as tx:
                sql.info_of(tx)["asked"] = "committed"
                await sql.execute(tx, _INSERT, first, Decimal("1.00"), "{}")
                assert await visible(first)  # committed by itself
                with pytest.raises(sql.OneStatementOnly):
                    await sql.execute(tx, _INSERT, refused, Decimal("2.00"), "{}")
                with pytest.raises(sql.OneStatementOnly):
                    tx.session  # noqa: B018 - the property is what is tested
                with pytest.raises(sql.OneStatementOnly):
                    async with sql.savepoint(tx):
                        pass
            with contextlib.suppress(RuntimeError):
                async with sql.transaction_on(conn, autocommit=True) as tx:
                    sql.info_of(tx)["asked"] = "rolled back"
                    raise RuntimeError("nothing was sent")
            async with sql.transaction_on(conn) as tx:
                await sql.execute(tx, _INSERT, later, Decimal("3.00"), "{}")
                assert not await visible(later)  # in a transaction again
        assert [await visible(i) for i in (first, refused, later)] == [True, False, True]
    finally:
        await other.close()
    assert sent == ["INSERT", "BEGIN", "INSERT", "COMMIT"], sent
    assert seen == ["committed", None]


async def test_autocommit_reads_one_statement_on_a_pool_connection_it_gives_back(
    engine: AsyncEngine,
) -> None:
    """`sql.autocommit(engine)`: a connection of the pool for one statement, no BEGIN, no
    COMMIT, no session; the connection is back in the pool after the block."""
    with sessions_begun() as begun:
        async with queries_sent(engine) as sent, sql.autocommit(engine) as tx:
            assert await sql.fetchval(tx, "SELECT 41 + 1") == 42
            with pytest.raises(sql.OneStatementOnly):
                await sql.fetchval(tx, "SELECT 1")
    assert sent == ["SELECT"], sent
    assert begun == []
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("first", ["a transaction", "a read"])
async def test_one_dropped_connection_has_the_pools_older_ones_replaced(
    engine: AsyncEngine, fresh_database_url: str, first: str
) -> None:
    """PostgreSQL restarted: every pooled connection is gone. The first statement that finds
    its connection gone (this module's statements are not seen by SQLAlchemy's own handling)
    has every connection the pool opened before replaced at its next checkout, as SQLAlchemy
    does for its own statements, so they do not each fail a request in turn."""
    reads = make_read_session_factory(engine)
    opened = [await engine.connect() for _ in range(2)]
    for conn in opened:
        await conn.exec_driver_sql("SELECT 1")
    for conn in opened:
        await conn.close()
    killer = await asyncpg.connect(plain_url(fresh_database_url))
    try:
        # the pool's connections only: an autovacuum worker busy on this new database is a
        # superuser's process, which a non-superuser may not end (seen once in `make test`)
        dropped = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
    finally:
        await killer.close()
    assert dropped == 2

    async def select_one() -> None:
        if first == "a transaction":
            async with sql.transaction(engine) as tx:
                await sql.fetchval(tx, "SELECT 1")
        else:
            async with reads() as session:
                await sql.fetchval(session, "SELECT 1")

    with pytest.raises(
        (asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresConnectionError)
    ):
        await select_one()
    for _ in range(3):
        async with reads() as session:
            assert await sql.fetchval(session, "SELECT 1") == 1
        async with sql.transaction(engine) as tx:
            assert await sql.fetchval(tx, "SELECT 1") == 1
