"""A batch's outbox rows carried by a handler's last write (`outbox.carrying_buffered`), and
kept in step with savepoints: what a rolled-back savepoint emitted is never written."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import decode
from contracts.loyalty.v1 import BonusMovementRecorded
from servicekit import sql
from servicekit.db import make_engine
from servicekit.outbox import buffer_outbox, carrying_buffered, enqueue_message, flush_outbox
from servicekit.schema import messaging_tables
from servicekit.testing import counted_statements

pytestmark = pytest.mark.integration

METADATA = sa.MetaData()
messaging_tables(METADATA)
_PROBE = "CREATE TABLE carried_probe (id uuid PRIMARY KEY, n int NOT NULL)"
_WRITE = "INSERT INTO carried_probe (id, n) VALUES ($1, $2)"
_WRITE_WITH = (
    "WITH src AS (SELECT $1::uuid AS id, $2::int AS n) "
    "INSERT INTO carried_probe (id, n) SELECT id, n FROM src"
)


@pytest.fixture
async def engine(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(fresh_database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
        await conn.execute(sa.text(_PROBE))
    try:
        yield engine
    finally:
        await engine.dispose()


async def _emit(tx: sql.Tx, n: int) -> None:
    movement = BonusMovementRecorded.model_validate(
        {
            "chain_id": str(uuid.uuid4()),
            "customer_id": str(uuid.uuid4()),
            "movement_id": str(uuid.uuid4()),
            "kind": "accrued",
            "amount": f"{n}.00",
            "store_id": None,
            "payment_id": None,
            "sale_id": None,
            "operation_id": None,
            "balance_after": f"{n}.00",
            "at": "2026-12-06T10:00:00+00:00",
        }
    )
    await enqueue_message(
        tx, "t.v1", movement, key=f"k{n}", chain_id=None, correlation_id=uuid.uuid4()
    )


async def _outbox_keys(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT key, value FROM outbox ORDER BY id"))).all()
    for _key, value in rows:
        decode(value)  # every row a whole envelope
    return [key for key, _value in rows]


@pytest.mark.parametrize("write", [_WRITE, _WRITE_WITH], ids=["plain", "with"])
async def test_the_last_write_carries_the_buffered_rows_in_their_order(
    engine: AsyncEngine, write: str
) -> None:
    async with engine.connect() as conn:
        tx = await sql.Tx.begin(conn)
        buffer_outbox(tx)
        for n in (1, 2, 3):
            await _emit(tx, n)
        with counted_statements(engine) as seen:
            statement, args = carrying_buffered(tx, write, (uuid.uuid4(), 7))
            await sql.execute(tx, statement, *args)
            assert await flush_outbox(tx) == 0  # nothing left to write
        await tx.commit()
    assert len(seen) == 1, seen
    assert await _outbox_keys(engine) == ["k1", "k2", "k3"]
    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT n FROM carried_probe")) == 7


async def test_nothing_buffered_or_not_buffering_leaves_the_statement_alone(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        tx = await sql.Tx.begin(conn)
        args = (uuid.uuid4(), 1)
        assert carrying_buffered(tx, _WRITE, args) == (_WRITE, args)  # not buffering
        buffer_outbox(tx)
        assert carrying_buffered(tx, _WRITE, args) == (_WRITE, args)  # nothing buffered
        await _emit(tx, 1)
        with pytest.raises(ValueError, match="RECURSIVE"):
            carrying_buffered(tx, "WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r", ())
        await tx.rollback()


async def test_rows_are_not_carried_inside_a_savepoint_and_die_with_it(
    engine: AsyncEngine,
) -> None:
    """A savepoint rolled back takes the rows emitted inside it (they were only in memory), and
    a write inside a savepoint carries nothing: its rollback would take the rows of the steps
    before it, which stand."""
    async with engine.connect() as conn:
        tx = await sql.Tx.begin(conn)
        buffer_outbox(tx)
        await _emit(tx, 1)  # a step before: stands
        with contextlib.suppress(RuntimeError):
            async with sql.savepoint(tx):
                await _emit(tx, 2)
                statement, args = carrying_buffered(tx, _WRITE, (uuid.uuid4(), 2))
                assert statement == _WRITE  # not carried in here
                await sql.execute(tx, statement, *args)
                raise RuntimeError("this step fails and is rolled back alone")
        async with sql.savepoint(tx):  # a step that succeeds in its savepoint: stands
            await _emit(tx, 3)
        await _emit(tx, 4)
        statement, args = carrying_buffered(tx, _WRITE, (uuid.uuid4(), 4))
        await sql.execute(tx, statement, *args)
        await flush_outbox(tx)
        await tx.commit()
    assert await _outbox_keys(engine) == ["k1", "k3", "k4"]
    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT array_agg(n) FROM carried_probe")) == [4]
