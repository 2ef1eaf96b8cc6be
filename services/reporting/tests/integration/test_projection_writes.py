"""The one-statement writes of the projection under the races they must survive: a credit
event and a bonus movement of one customer applied at once by two transactions (their topics
may be consumed by two instances), with and without the customer's balances row."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from reporting.adapters import projection_batch
from reporting.adapters import tables as t
from reporting.adapters.projection_writes import (
    CreditMovement,
    write_bonus_event,
    write_credit_event,
)
from servicekit.db import make_session_factory

pytestmark = pytest.mark.integration

D = Decimal
CHAIN, STORE = uuid.uuid4(), uuid.uuid4()
AT = datetime(2026, 3, 1, 10, tzinfo=UTC)


def bonus_values(customer: uuid.UUID, amount: str) -> dict[str, Any]:
    """`write_bonus_event`'s parameters for `amount` accrued to `customer`."""
    return {
        "message_id": uuid.uuid4(),
        "chain_id": CHAIN,
        "customer_id": customer,
        "store_id": STORE,
        "at": AT,
        "kind": "bonus_accrued",
        "sale_id": None,
        "payment_id": None,
        "description": "Bonus accrued",
        "bonus_change": D(amount),
        "bonus_kind": "accrued",
        "bonus_amount": D(amount),
        "bonus_movement_id": uuid.uuid4(),
    }


async def bonus(session: AsyncSession, customer: uuid.UUID, amount: str) -> None:
    await write_bonus_event(session, **bonus_values(customer, amount))


async def payment(session: AsyncSession, customer: uuid.UUID, debt: str) -> None:
    """credit's balances after a payment: debt `debt`, no advance."""
    await write_credit_event(
        session,
        chain_id=CHAIN,
        customer_id=customer,
        debt=D(debt),
        advance=D(0),
        movement=CreditMovement(
            message_id=uuid.uuid4(), store_id=STORE, at=AT, kind="payment", description="x"
        ),
        owed=[],
    )


@pytest.mark.parametrize("known", [False, True], ids=["first sight", "known customer"])
async def test_a_credit_event_waiting_on_a_bonus_movement_keeps_both(
    engine: AsyncEngine, known: bool
) -> None:
    sf = make_session_factory(engine)
    customer = uuid.uuid4()
    if known:
        async with sf() as session, session.begin():
            await payment(session, customer, "40.00")  # debt 40.00, bonus 0
    async with sf() as first, sf() as second:
        async with first.begin():
            await bonus(first, customer, "3.00")  # holds the customer's row until it commits
            waiting = asyncio.create_task(_in_transaction(second, customer))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # the credit event waits for the row
        await waiting
    async with sf() as session:
        row = (
            await session.execute(sa.select(t.balances).where(t.balances.c.customer_id == customer))
        ).one()
        changes = (
            await session.execute(
                sa.select(t.movements.c.kind, t.movements.c.debt_change, t.movements.c.bonus_change)
                .where(t.movements.c.customer_id == customer)
                .order_by(t.movements.c.kind, t.movements.c.debt_change)
            )
        ).all()
    assert (row.debt, row.advance, row.bonus_balance) == (D("25.00"), D(0), D("3.00"))
    # the debt changes add up to credit's debt, the bonus balance keeps the movement
    payments = [("payment", D("-15.00"), D(0)), ("payment", D("40.00"), D(0))]
    first_sight = [("payment", D("25.00"), D(0))]
    assert changes == [("bonus_accrued", D(0), D("3.00")), *(payments if known else first_sight)]


async def _in_transaction(session: AsyncSession, customer: uuid.UUID) -> None:
    async with session.begin():
        await payment(session, customer, "25.00")


async def _batch(session: AsyncSession, credit_to: uuid.UUID, bonus_to: uuid.UUID) -> None:
    """A batch's writes (`projection_batch`): a payment of one customer, a bonus movement of
    another."""
    async with session.begin():
        await projection_batch.defer_credit_event(
            session,
            done=lambda written: None,
            chain_id=CHAIN,
            customer_id=credit_to,
            debt=D("10.00"),
            advance=D(0),
            movement=CreditMovement(
                message_id=uuid.uuid4(), store_id=STORE, at=AT, kind="payment", description="x"
            ),
            owed=[],
        )
        await projection_batch.defer_bonus_event(session, **bonus_values(bonus_to, "1.00"))
        await projection_batch.flush(session)


async def test_two_batches_of_crossed_customers_wait_for_each_other_without_a_deadlock(
    engine: AsyncEngine,
) -> None:
    """Instance A's batch pays for customer 1 and gives customer 2 a bonus, instance B's the
    other way round (their topics' partitions sit on different instances). Both lock every
    customer of their batch first, in one order, so the second waits for the first: had a batch
    locked its credit customers first and its bonus customers later, A would hold 1 and wait for
    2 while B held 2 and waited for 1."""
    sf = make_session_factory(engine)
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])
    async with sf() as session, session.begin():
        await payment(session, first, "0.00")
        await payment(session, second, "0.00")
    async with sf() as holder, sf() as a, sf() as b:
        async with holder.begin():
            # customer 1's row held elsewhere: A and B both queue on it before going on
            await holder.execute(
                sa.select(t.balances.c.debt)
                .where(t.balances.c.customer_id == first)
                .with_for_update()
            )
            batch_a = asyncio.create_task(_batch(a, credit_to=first, bonus_to=second))
            await asyncio.sleep(0.3)
            batch_b = asyncio.create_task(_batch(b, credit_to=second, bonus_to=first))
            await asyncio.sleep(0.3)
            assert not batch_a.done() and not batch_b.done()
        await asyncio.wait_for(asyncio.gather(batch_a, batch_b), timeout=10)
    async with sf() as session:
        rows = (
            await session.execute(
                sa.select(t.balances.c.debt, t.balances.c.bonus_balance).where(
                    t.balances.c.customer_id.in_([first, second])
                )
            )
        ).all()
    assert sorted(rows) == [(D("10.00"), D("1.00")), (D("10.00"), D("1.00"))]
