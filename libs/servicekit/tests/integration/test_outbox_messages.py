"""`enqueue_message`: the one way a service wraps a message in its envelope and writes it to
the outbox, in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import decode
from servicekit.db import make_engine, make_session_factory
from servicekit.outbox import enqueue_message
from servicekit.schema import OUTBOX, messaging_tables
from servicekit.testing import carrier_letter

pytestmark = pytest.mark.integration

METADATA = sa.MetaData()
messaging_tables(METADATA)


@pytest.fixture
async def session_factory(fresh_database_url: str) -> AsyncIterator[Any]:
    engine = make_engine(fresh_database_url, pool_size=2)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    yield make_session_factory(engine)
    await engine.dispose()


async def test_the_message_is_written_wrapped_with_the_given_ids(session_factory: Any) -> None:
    chain, correlation, cause = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session, session.begin():
        env = await enqueue_message(
            session,
            "some.topic",
            carrier_letter(),
            key="customer-1",
            chain_id=chain,
            correlation_id=correlation,
            causation_id=cause,
        )
    async with session_factory() as session:
        [row] = (await session.execute(sa.select(OUTBOX))).all()
    stored = decode(row.value)
    assert (row.topic, row.key, row.message_id) == ("some.topic", "customer-1", env.message_id)
    assert (stored.chain_id, stored.correlation_id, stored.causation_id) == (
        chain,
        correlation,
        cause,
    )
    assert stored.type == DeadLetter.TYPE and stored.payload["reason"] == "carrier"


async def test_a_stable_message_id_replaces_the_fresh_one(session_factory: Any) -> None:
    stable = uuid.uuid4()
    async with session_factory() as session, session.begin():
        env = await enqueue_message(
            session,
            "some.topic",
            carrier_letter(),
            key="k",
            chain_id=None,
            correlation_id=stable,
            message_id=stable,
        )
    async with session_factory() as session:
        ids = (await session.execute(sa.select(OUTBOX.c.message_id))).scalars().all()
    assert env.message_id == stable and ids == [stable]


async def test_nothing_is_written_when_the_callers_transaction_rolls_back(
    session_factory: Any,
) -> None:
    async def enqueue_then_fail() -> None:
        async with session_factory() as session, session.begin():
            await enqueue_message(
                session,
                "some.topic",
                carrier_letter(),
                key="k",
                chain_id=None,
                correlation_id=uuid.uuid4(),
            )
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await enqueue_then_fail()
    async with session_factory() as session:
        assert (await session.execute(sa.select(sa.func.count()).select_from(OUTBOX))).scalar() == 0
