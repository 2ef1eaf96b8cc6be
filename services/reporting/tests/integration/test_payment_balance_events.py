"""Payment-Balance from every kind of credit event: the closing balance always equals the
customer's advance - debt as credit reports it, and the statement's running balances agree."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from reporting_helpers import coat, coat_returned, sale_completed
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import MoneyMethod, PaymentMethod
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import record_of

pytestmark = pytest.mark.integration

D = Decimal
CHAIN, STORE, TERMINAL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def bal(debt: str, advance: str) -> credit.CustomerBalances:
    return credit.CustomerBalances(debt=D(debt), advance=D(advance), bonus_balance=D("0.00"))


def sale(
    customer: uuid.UUID,
    sale_id: uuid.UUID,
    at: datetime,
    *,
    total: str,
    payments: list[tuple[PaymentMethod, str]],
    on_account: str,
    advance_applied: str,
    change: str,
    change_to_advance: str,
    advance_added: str,
    balances: credit.CustomerBalances,
    owed: str,
) -> credit.SaleCompleted:
    return sale_completed(
        chain_id=CHAIN,
        customer_id=customer,
        sale_id=sale_id,
        when=at,
        lines=[coat(total, owed=owed, quantity="2")],
        store_id=STORE,
        terminal_id=TERMINAL,
        balances=balances,
        payments=payments,
        on_account=on_account,
        advance_applied=advance_applied,
        change=change,
        change_to_advance=change_to_advance,
        advance_added=advance_added,
        due=bool(D(owed)),
    )


async def test_closing_equals_advance_minus_debt_through_sales_returns_advances_and_refunds(
    engine: AsyncEngine, consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    customer, s1, s2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    messages: list[Message] = [
        # 1. 100.00 on account
        sale(
            customer,
            s1,
            T0,
            total="100.00",
            payments=[],
            on_account="100.00",
            advance_applied="0.00",
            change="0.00",
            change_to_advance="0.00",
            advance_added="0.00",
            balances=bal("100.00", "0.00"),
            owed="100.00",
        ),
        # 2. one coat of two comes back: 50.00 of debt cancelled
        coat_returned(
            chain_id=CHAIN,
            customer_id=customer,
            sale_id=s1,
            value="50.00",
            at=T0 + timedelta(days=1),
            owed_after="50.00",
            balances=bal("50.00", "0.00"),
            store_id=STORE,
            terminal_id=TERMINAL,
        ),
        # 3. an advance of 80.00: 50.00 pays the debt, 30.00 stays as advance
        credit.AdvanceRecorded(
            payment_id=uuid.uuid4(),
            chain_id=CHAIN,
            customer_id=customer,
            store_id=STORE,
            terminal_id=TERMINAL,
            method=MoneyMethod.CARD,
            amount=D("80.00"),
            applied_to_debt=D("50.00"),
            allocated=[credit.Allocation(sale_id=s1, line_no=1, amount=D("50.00"))],
            advance_added=D("30.00"),
            bonus_accrued=D("5.00"),
            occurred_at=T0 + timedelta(days=2),
            customer_balances=bal("0.00", "30.00"),
            lines_changed=[credit.LineOwedChange(sale_id=s1, line_no=1, owed_after=D("0.00"))],
        ),
        # 4. 10.00 of the advance is paid back
        credit.RefundRecorded(
            refund_id=uuid.uuid4(),
            chain_id=CHAIN,
            customer_id=customer,
            store_id=STORE,
            terminal_id=TERMINAL,
            method=MoneyMethod.CASH,
            amount=D("10.00"),
            occurred_at=T0 + timedelta(days=3),
            customer_balances=bal("0.00", "20.00"),
        ),
        # 5. a 60.00 sale: 15.00 from the advance, 50.00 cash tendered (5.00 change kept),
        sale(
            customer,
            s2,
            T0 + timedelta(days=4),
            total="60.00",
            payments=[(PaymentMethod.ADVANCE, "15.00"), (PaymentMethod.CASH, "50.00")],
            on_account="0.00",
            advance_applied="0.00",
            change="5.00",
            change_to_advance="5.00",
            advance_added="5.00",
            balances=bal("0.00", "10.00"),
            owed="0.00",
        ),
    ]
    await consumer.process_records([record_of(m, key=customer) for m in messages])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    sf = make_session_factory(engine)
    async with sf() as session:
        rows, _, _ = await reports.payment_balance(session, CHAIN, reports.Filters())
        [row] = rows
        assert (row.goods, row.payments, row.closing) == (
            D("110.00"),
            D("120.00"),
            D("10.00"),  # advance 10.00 - debt 0.00
        )
        # split at day 2 (local dates of UTC here): the next opening is the previous closing
        first, _, _ = await reports.payment_balance(
            session, CHAIN, reports.Filters(period=Period(None, date(2026, 3, 2)))
        )
        second, _, _ = await reports.payment_balance(
            session, CHAIN, reports.Filters(period=Period(date(2026, 3, 3), None))
        )
        assert first[0].closing == second[0].opening == D("-50.00")
        body, _ = await reports.statement(session, CHAIN, customer, Period(None, None))
        assert body["closing"] == {"debt": "0.00", "advance": "10.00", "bonus_balance": "0.00"}
