"""How many SQL statements a sale of a known customer costs reporting's projection, per event.

SQLAlchemy statement building and asyncpg round trips are most of reporting's CPU (the
benchmark's profiles, docs/benchmarks/notes.md), so the count is a budget: a change that adds a
statement to the projection shows here first. The batch's fixed cost (the inbox insert and the
consumer's positions; BEGIN and COMMIT are not counted) is included: one message per batch is
the worst case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind, CreditMode, PaymentMethod
from contracts.loyalty.v1 import BonusMovementRecorded
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import counted_statements, record_of

pytestmark = pytest.mark.integration

D = Decimal
ZERO = D("0.00")
CHAIN, STORE, TERMINAL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def line(no: int, amount: str, owed: str) -> credit.SaleLineOutcome:
    return credit.SaleLineOutcome(
        line_no=no,
        sku=None,
        barcode=str(no),
        name=f"Item {no}",
        quantity=D("1"),
        unit_price=D(amount),
        discount=ZERO,
        amount=D(amount),
        owed=D(owed),
    )


def sale(customer: uuid.UUID, n: int, debt: str, bonus: str) -> credit.SaleCompleted:
    """Two lines of 25.00, 20.00 paid in cash and 30.00 on account (line 2 owes 25.00, line 1
    5.00); the customer's debt `debt` after it."""
    sale_id = uuid.uuid4()
    lines = [line(1, "25.00", "5.00"), line(2, "25.00", "25.00")]
    at = T0 + timedelta(days=n)
    return credit.SaleCompleted(
        sale_id=sale_id,
        chain_id=CHAIN,
        store_id=STORE,
        terminal_id=TERMINAL,
        customer_id=customer,
        card_number="C1",
        credit_mode=CreditMode.PER_ITEM,
        sold_at=at,
        total=D("50.00"),
        paid=D("20.00"),
        on_account=D("30.00"),
        advance_applied=ZERO,
        change=ZERO,
        change_to_advance=ZERO,
        change_allocated=[],
        advance_added=ZERO,
        due_date=(at + timedelta(days=30)).date(),
        bonus_accrued=D("0.20"),
        bonus_spent=ZERO,
        payments=[
            credit.SalePaymentOutcome(
                payment_id=uuid.uuid4(),
                method=PaymentMethod.CASH,
                amount=D("20.00"),
                bonus_accrued=D("0.20"),
            )
        ],
        lines=lines,
        customer_balances=credit.CustomerBalances(
            debt=D(debt), advance=ZERO, bonus_balance=D(bonus)
        ),
        lines_changed=[
            credit.LineOwedChange(sale_id=sale_id, line_no=ln.line_no, owed_after=ln.owed)
            for ln in lines
        ],
    )


def accrual(customer: uuid.UUID, of: credit.SaleCompleted, after: str) -> BonusMovementRecorded:
    return BonusMovementRecorded(
        movement_id=uuid.uuid4(),
        chain_id=CHAIN,
        customer_id=customer,
        kind=BonusMovementKind.ACCRUED,
        amount=D("0.20"),
        store_id=STORE,
        payment_id=of.payments[0].payment_id,
        sale_id=of.sale_id,
        operation_id=uuid.uuid4(),
        at=of.sold_at,
        balance_after=D(after),
    )


def counted(engine: AsyncEngine) -> Any:
    return counted_statements(engine)


async def test_a_known_customers_sale_costs_reporting_a_fixed_number_of_statements(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    customer = uuid.uuid4()
    first = sale(customer, 0, "30.00", "0.20")
    await consumer.process_records(
        [record_of(first, key=customer), record_of(accrual(customer, first, "0.20"), key=customer)]
    )  # the first sight creates the customer's balances row

    second = sale(customer, 1, "60.00", "0.40")
    with counted(engine) as sale_alone:
        await consumer.process_records([record_of(second, key=customer)])
    with counted(engine) as bonus_alone:
        await consumer.process_records([record_of(accrual(customer, second, "0.40"), key=customer)])
    third = sale(customer, 2, "90.00", "0.60")
    with counted(engine) as one_batch:
        await consumer.process_records(
            [
                record_of(third, key=customer),
                record_of(accrual(customer, third, "0.60"), key=customer),
            ]
        )

    # each batch: the inbox and the consumer's positions; the sale: the projection lock and
    # one write (sale, lines, owed amounts, balances, movement); the bonus movement: the lock
    # and one write (balance, movement); both in one batch: the projection lock once
    counts = (len(sale_alone), len(bonus_alone), len(one_batch))
    assert counts == (4, 4, 5), (sale_alone, bonus_alone, one_batch)

    async with make_session_factory(engine)() as session:
        body, _ = await reports.statement(session, CHAIN, customer, Period(None, None))
    assert [(e["kind"], e["debt_change"], e["bonus_balance"]) for e in body["entries"]] == [
        ("sale", "30.00", "0.00"),
        ("bonus_accrued", "0.00", "0.20"),
        ("sale", "30.00", "0.20"),
        ("bonus_accrued", "0.00", "0.40"),
        ("sale", "30.00", "0.40"),
        ("bonus_accrued", "0.00", "0.60"),
    ]
