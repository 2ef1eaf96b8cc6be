"""What a sale costs the notifier: nothing, not even an inbox row or a transaction, unless its
kept change paid an older sale (which may close a reminder task).

The notifier consumes every credit event; a sale that raises and closes no task should cost it
nothing (issue 14). The count is a budget: a statement added to that path shows here first.
BEGIN and COMMIT are not counted; a transaction shows as a checkout of the pool."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import CreditMode, OverdueDiscountPolicy
from contracts.gateway import v1 as gateway
from notifier.testing import T0, chain_settings, sale_overdue, vip_customer
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory
from servicekit.testing import counted_statements, record_of

pytestmark = pytest.mark.integration

D = Decimal
ZERO = D("0.00")


def sale(
    chain: uuid.UUID, customer: uuid.UUID, owed: str, paid_older: list[uuid.UUID]
) -> credit.SaleCompleted:
    """A one-line sale of 40.00 leaving `owed` on account; its kept change paid the dress line
    of each of `paid_older` in full."""
    sale_id = uuid.uuid4()
    return credit.SaleCompleted(
        sale_id=sale_id,
        chain_id=chain,
        store_id=uuid.uuid4(),
        terminal_id=uuid.uuid4(),
        customer_id=customer,
        card_number="C1",
        credit_mode=CreditMode.PER_SALE,
        sold_at=T0 + timedelta(days=40),
        total=D("40.00"),
        paid=D("40.00") - D(owed),
        on_account=D(owed),
        advance_applied=ZERO,
        change=ZERO,
        change_to_advance=ZERO,
        change_allocated=[],
        advance_added=ZERO,
        due_date=date(2026, 3, 15) if D(owed) else None,
        bonus_accrued=ZERO,
        bonus_spent=ZERO,
        payments=[],
        lines=[
            credit.SaleLineOutcome(
                line_no=1,
                sku=None,
                barcode="1",
                name="Coat",
                quantity=D("1"),
                unit_price=D("40.00"),
                discount=ZERO,
                amount=D("40.00"),
                owed=D(owed),
            )
        ],
        customer_balances=credit.CustomerBalances(debt=D(owed), advance=ZERO, bonus_balance=ZERO),
        lines_changed=[credit.LineOwedChange(sale_id=sale_id, line_no=1, owed_after=D(owed))]
        + [credit.LineOwedChange(sale_id=s, line_no=1, owed_after=ZERO) for s in paid_older],
    )


async def test_a_sale_that_pays_no_older_sale_costs_the_notifier_no_statement(
    consumer: Consumer, sf: SessionFactory
) -> None:
    chain, customer, overdue_sale = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def feed(*messages: Message) -> None:
        await consumer.process_records([record_of(m, key=customer) for m in messages])

    await feed(
        gateway.ChainRegistered(
            chain_id=chain,
            name="Kids",
            settings=chain_settings(OverdueDiscountPolicy.KEEP),
            registered_at=T0,
        ),
        vip_customer(chain, customer),
    )
    await feed(sale_overdue(chain, customer, overdue_sale, "30.00"))  # raises a task
    engine = sf.kw["bind"]

    checkouts: list[object] = []

    def checkout(*_: object) -> None:
        checkouts.append(1)

    sa.event.listen(engine.sync_engine.pool, "checkout", checkout)
    try:
        with counted_statements(engine) as on_account:
            await feed(sale(chain, customer, "40.00", []))
        with counted_statements(engine) as paid:
            await feed(sale(chain, customer, "0.00", []))
    finally:
        sa.event.remove(engine.sync_engine.pool, "checkout", checkout)
    assert (on_account, paid, checkouts) == ([], [], [])

    async with sf() as session:
        status = await session.scalar(
            sa.text("SELECT status FROM nt_tasks WHERE customer_id = :c"), {"c": customer}
        )
    assert status == "open"

    # kept change that pays the overdue sale still closes its task
    await feed(sale(chain, customer, "0.00", [overdue_sale]))
    async with sf() as session:
        status = await session.scalar(
            sa.text("SELECT status FROM nt_tasks WHERE customer_id = :c"), {"c": customer}
        )
    assert status == "done"
