"""Two ends of issue 13 in the read models: the bonus movements of an operation loyalty voided
leave every report and the balance, and a sale id two chains chose is two sales."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from reporting_helpers import bonus_movement, coat, coat_returned, sale_completed
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind, BonusOperationKind
from contracts.loyalty.v1 import BonusesVoided, BonusMovementRecorded
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import record_of

pytestmark = pytest.mark.integration

D = Decimal
STORE, TERMINAL = uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def movement(
    chain: uuid.UUID,
    customer: uuid.UUID,
    operation: uuid.UUID,
    kind: BonusMovementKind,
    amount: str,
    after: str,
) -> BonusMovementRecorded:
    return bonus_movement(
        chain, STORE, customer, kind, amount, T0, after, sale_id=operation, operation_id=operation
    )


def on_account(
    chain: uuid.UUID, customer: uuid.UUID, sale_id: uuid.UUID, amount: str
) -> credit.SaleCompleted:
    return sale_completed(
        chain_id=chain,
        customer_id=customer,
        sale_id=sale_id,
        when=T0,
        lines=[coat(amount)],
        store_id=STORE,
        terminal_id=TERMINAL,
    )


async def test_the_movements_of_a_voided_operation_leave_the_statement_the_statistics_and_balance(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    chain, customer, kept, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    earned = movement(chain, customer, kept, BonusMovementKind.ACCRUED, "30.00", "30.00")
    spent = movement(chain, customer, failed, BonusMovementKind.SPENT, "12.00", "18.00")
    accrued = movement(chain, customer, failed, BonusMovementKind.ACCRUED, "5.00", "23.00")
    voided = BonusesVoided(
        operation_id=failed,
        operation_kind=BonusOperationKind.SALE,
        chain_id=chain,
        customer_id=customer,
        movement_ids=[spent.movement_id, accrued.movement_id],
        balance_after=D("30.00"),
        voided_at=T0,
    )
    await consumer.process_records(
        [record_of(m, key=customer) for m in (earned, spent, accrued, voided)]
    )

    async with make_session_factory(engine)() as session:
        body, _ = await reports.statement(session, chain, customer, Period(None, None))
        stats = await reports.bonus_statistics(session, chain, reports.Filters())
        shown = (await reports.balances_of(session, chain, [customer], strict=False))[customer]
    assert [(e["kind"], e["bonus_change"]) for e in body["entries"]] == [("bonus_accrued", "30.00")]
    assert body["closing"]["bonus_balance"] == "30.00"
    assert (stats["accrued"], stats["spent"], stats["outstanding"]) == ("30.00", "0.00", "30.00")
    assert shown["bonus_balance"] == "30.00"


async def test_the_same_sale_id_in_two_chains_is_two_sales_in_each_chains_reports(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    sale_id = uuid.uuid4()
    chain_a, chain_b, ana, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    back = coat_returned(
        chain_id=chain_b,
        customer_id=bob,
        sale_id=sale_id,
        value="30.00",
        at=T0 + timedelta(hours=1),
        owed_after="0.00",
        balances=credit.CustomerBalances(
            debt=D("0.00"), advance=D("0.00"), bonus_balance=D("0.00")
        ),
        store_id=STORE,
        terminal_id=TERMINAL,
    )
    await consumer.process_records(
        [
            record_of(on_account(chain_a, ana, sale_id, "12.00"), key=ana),
            record_of(on_account(chain_b, bob, sale_id, "30.00"), key=bob),
            record_of(back, key=bob),
        ]
    )

    async with make_session_factory(engine)() as session:
        unpaid_a = await reports.unpaid_goods(session, chain_a, reports.Filters())
        unpaid_b = await reports.unpaid_goods(session, chain_b, reports.Filters())
        open_a = await reports.open_sales(session, chain_a, ana, "per_item")
    assert [(r["sale_id"], r["amount_owed"]) for r in unpaid_a] == [(str(sale_id), "12.00")]
    assert unpaid_b == []  # chain B's return cancelled chain B's debt only
    assert [(s["sale_id"], s["amount_owed"]) for s in open_a["open_sales"]] == [
        (str(sale_id), "12.00")
    ]
