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

import pytest
from reporting_helpers import bonus_movement, coat, sale_completed
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind
from contracts.loyalty.v1 import BonusMovementRecorded
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import counted_statements, record_of, sessions_begun

pytestmark = pytest.mark.integration

D = Decimal
ZERO = D("0.00")
CHAIN, STORE, TERMINAL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def sale(customer: uuid.UUID, n: int, debt: str) -> credit.SaleCompleted:
    """Two lines of 25.00 all on account; the customer's debt `debt` after it."""
    lines = [coat("25.00"), coat("25.00").model_copy(update={"line_no": 2})]
    return sale_completed(
        chain_id=CHAIN,
        customer_id=customer,
        sale_id=uuid.uuid4(),
        when=T0 + timedelta(days=n),
        lines=lines,
        store_id=STORE,
        terminal_id=TERMINAL,
        balances=credit.CustomerBalances(debt=D(debt), advance=ZERO, bonus_balance=ZERO),
    )


def accrual(customer: uuid.UUID, of: credit.SaleCompleted, after: str) -> BonusMovementRecorded:
    return bonus_movement(
        CHAIN,
        STORE,
        customer,
        BonusMovementKind.ACCRUED,
        "0.20",
        of.sold_at,
        after,
        sale_id=of.sale_id,
        operation_id=uuid.uuid4(),
    )


async def test_a_known_customers_sale_costs_reporting_a_fixed_number_of_statements(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    customer = uuid.uuid4()
    first = sale(customer, 0, "50.00")
    await consumer.process_records(
        [record_of(first, key=customer), record_of(accrual(customer, first, "0.20"), key=customer)]
    )  # the first sight creates the customer's balances row

    second = sale(customer, 1, "100.00")
    with counted_statements(engine) as sale_alone:
        await consumer.process_records([record_of(second, key=customer)])
    with counted_statements(engine) as bonus_alone:
        await consumer.process_records([record_of(accrual(customer, second, "0.40"), key=customer)])
    third = sale(customer, 2, "150.00")
    with counted_statements(engine) as one_batch:
        await consumer.process_records(
            [
                record_of(third, key=customer),
                record_of(accrual(customer, third, "0.60"), key=customer),
            ]
        )

    # five customers' sales and accruals in one batch
    others = [uuid.uuid4() for _ in range(5)]
    sales = [sale(c, 0, "50.00") for c in others]
    with counted_statements(engine) as many, sessions_begun() as sessions:
        await consumer.process_records(
            [record_of(s, key=c) for s, c in zip(sales, others, strict=True)]
            + [record_of(accrual(c, s, "0.20"), key=c) for s, c in zip(sales, others, strict=True)]
        )

    # each batch: the inbox, the projection lock, one write of all its sales, lines, owed
    # amounts, balances and movements (adapters.projection_batch), the consumer's positions;
    # with the per-event writes a batch of n money and bonus events cost 3 + n statements
    counts = (len(sale_alone), len(bonus_alone), len(one_batch), len(many))
    assert counts == (4, 4, 4, 4), (sale_alone, bonus_alone, one_batch, many)
    # the batch ran in the consumer's `servicekit.sql.Tx`, its handlers and write on `ctx.db`:
    # no SQLAlchemy session
    assert sessions == []

    async with make_session_factory(engine)() as session:
        for c in others:
            body, _ = await reports.statement(session, CHAIN, c, Period(None, None))
            assert [(e["kind"], e["debt_change"], e["bonus_balance"]) for e in body["entries"]] == [
                ("sale", "50.00", "0.00"),
                ("bonus_accrued", "0.00", "0.20"),
            ]
        body, _ = await reports.statement(session, CHAIN, customer, Period(None, None))
    assert [(e["kind"], e["debt_change"], e["bonus_balance"]) for e in body["entries"]] == [
        ("sale", "50.00", "0.00"),
        ("bonus_accrued", "0.00", "0.20"),
        ("sale", "50.00", "0.20"),
        ("bonus_accrued", "0.00", "0.40"),
        ("sale", "50.00", "0.40"),
        ("bonus_accrued", "0.00", "0.60"),
    ]
