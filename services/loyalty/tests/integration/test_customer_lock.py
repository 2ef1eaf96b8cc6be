"""The customer's row lock (`repository.lock_customer`): one statement for a known customer,
the row created on first sight (also by two transactions at once), and SKIP LOCKED gives up at
once on a customer another transaction holds."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.adapters import repository as repo
from servicekit.db import SessionFactory
from servicekit.testing import counted_statements

ZERO = Decimal(0)


async def test_a_customer_is_created_on_first_sight_then_locked_in_one_statement(
    engine: AsyncEngine, session_factory: SessionFactory
) -> None:
    chain, customer = uuid4(), uuid4()
    with counted_statements(engine) as seen:
        async with session_factory() as session, session.begin():
            assert await repo.lock_customer(session, chain, customer) == (ZERO, ZERO)
    assert len(seen) == 3  # not there, created, locked
    with counted_statements(engine) as seen:
        async with session_factory() as session, session.begin():
            assert await repo.lock_customer(session, chain, customer) == (ZERO, ZERO)
    assert len(seen) == 1


async def test_skip_locked_gives_up_at_once_on_a_customer_someone_holds(
    session_factory: SessionFactory,
) -> None:
    chain, customer = uuid4(), uuid4()
    async with session_factory() as session, session.begin():
        await repo.lock_customer(session, chain, customer)  # a known customer
    async with session_factory() as holder, holder.begin():
        assert await repo.lock_customer(holder, chain, customer) is not None
        async with session_factory() as other, other.begin():
            skipped = repo.lock_customer(other, chain, customer, skip_locked=True)
            assert await asyncio.wait_for(skipped, 10) is None
    # released with the holder's transaction
    async with session_factory() as other, other.begin():
        assert await repo.lock_customer(other, chain, customer, skip_locked=True) is not None


async def test_two_first_sights_at_once_both_get_the_lock_in_turn(
    session_factory: SessionFactory,
) -> None:
    chain, customer = uuid4(), uuid4()
    order: list[str] = []
    first_holds = asyncio.Event()

    async def first() -> None:
        async with session_factory() as session, session.begin():
            await repo.lock_customer(session, chain, customer)
            first_holds.set()
            await asyncio.sleep(0.2)
            order.append("first done")

    async def second() -> None:
        await first_holds.wait()
        async with session_factory() as session, session.begin():
            # the row is not committed yet: its insert waits for the first's, then locks it
            assert await repo.lock_customer(session, chain, customer) == (ZERO, ZERO)
            order.append("second locked")

    await asyncio.wait_for(asyncio.gather(first(), second()), 10)
    assert order == ["first done", "second locked"]
