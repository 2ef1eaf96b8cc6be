"""The credit worked example of domain.md, fed through the real consumer into PostgreSQL:
the read models must show the right unpaid goods, aging, statement and Payment-Balance."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from zoneinfo import ZoneInfo

import httpx
import pytest
import reporting_helpers as events
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import (
    BonusMovementKind,
    CreditMode,
    DebtPaymentKind,
    OverdueDiscountPolicy,
)
from contracts.gateway import v1 as gateway
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import record_of

TZ = "Europe/Bucharest"
D = Decimal
CHAIN = uuid.uuid4()
#: the `api` fixture (conftest.py): `async with api() as http`
Api = Callable[[], httpx.AsyncClient]
STORE = uuid.uuid4()
TERMINAL = uuid.uuid4()

pytestmark = pytest.mark.integration


def day(n: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=ZoneInfo(TZ)) + timedelta(days=n)


def settings(mode: CreditMode) -> gateway.ChainSettingsSnapshot:
    return gateway.ChainSettingsSnapshot(
        credit_mode=mode,
        max_payment_delay_days=30,
        overdue_discount=OverdueDiscountPolicy.REVOKE,
        block_credit_when_overdue=False,
        reminder_repeat_days=7,
        bonus_rate_percent=D("10.00"),
        bonus_expiry_days=None,
        timezone=TZ,
        currency="EUR",
        minor_units=2,
    )


def bal(debt: str, advance: str = "0.00", bonus: str = "0.00") -> credit.CustomerBalances:
    return credit.CustomerBalances(debt=D(debt), advance=D(advance), bonus_balance=D(bonus))


def line(no: int, name: str, barcode: str, price: str, discount: str, owed: str):  # noqa: ANN201
    amount = D(price) - D(discount)
    return credit.SaleLineOutcome(
        line_no=no,
        sku=None,
        barcode=barcode,
        name=name,
        quantity=D("1"),
        unit_price=D(price),
        discount=D(discount),
        amount=amount,
        owed=D(owed),
    )


def on_account_sale(
    customer: uuid.UUID,
    sale_id: uuid.UUID,
    when: datetime,
    lines: list[credit.SaleLineOutcome],
    balances: credit.CustomerBalances,
    mode: CreditMode,
) -> credit.SaleCompleted:
    return events.sale_completed(
        chain_id=CHAIN,
        customer_id=customer,
        sale_id=sale_id,
        when=when,
        lines=lines,
        store_id=STORE,
        terminal_id=TERMINAL,
        balances=balances,
        mode=mode,
        card_number="C1",
    )


#: a cash payment of debt at the chain's till: `debt_payment` without the chain, store and till
payment = partial(events.debt_payment, CHAIN, STORE, TERMINAL)


def accrual(customer: uuid.UUID, when: datetime, amount: str, balance: str) -> Message:
    return events.bonus_movement(
        CHAIN, STORE, customer, BonusMovementKind.ACCRUED, amount, when, balance
    )


async def feed(consumer: Consumer, customer: uuid.UUID, *messages: Message) -> None:
    await consumer.process_records([record_of(m, key=customer) for m in messages])


async def register(consumer: Consumer, customer: uuid.UUID, mode: CreditMode) -> None:
    await feed(
        consumer,
        customer,
        gateway.ChainRegistered(
            chain_id=CHAIN, name="Kids", settings=settings(mode), registered_at=day(-10)
        ),
        gateway.CustomerRegistered(
            chain_id=CHAIN,
            customer=gateway.CustomerSnapshot(
                customer_id=customer,
                name="Ana Pop",
                phone="+40700000000",
                vip=True,
                bonus_accrual=True,
                credit_limit=None,
                max_payment_delay_days=None,
                card_number="C1",
            ),
            registered_at=day(-10),
        ),
    )


async def test_per_sale_worked_example_gives_the_right_reports(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    customer, sale_a, sale_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mode = CreditMode.PER_SALE
    await register(consumer, customer, mode)
    sale_a_lines = [line(1, "Dress", "4820000000017", "110.00", "10.00", "100.00")]
    await feed(
        consumer,
        customer,
        on_account_sale(customer, sale_a, day(0), sale_a_lines, bal("100.00"), mode),
        on_account_sale(
            customer,
            sale_b,
            day(5),
            [line(1, "Socks", "4820000000031", "50.00", "0.00", "50.00")],
            bal("150.00"),
            mode,
        ),
    )
    await feed(
        consumer,
        customer,
        accrual(customer, day(10), "7.00", "7.00"),
        payment(
            customer,
            day(10),
            "70.00",
            DebtPaymentKind.TAKE_MONEY,
            [(sale_a, None, "70.00")],
            [(sale_a, 1, "30.00")],
            bal("80.00", bonus="7.00"),
        ),
    )
    # day 31: A is overdue and, with overdue_discount=revoke, its discount is revoked
    await feed(
        consumer,
        customer,
        credit.SaleOverdue(
            sale_id=sale_a,
            chain_id=CHAIN,
            customer_id=customer,
            credit_mode=mode,
            sold_at=day(0),
            due_date=day(30).date(),
            amount_owed=D("30.00"),
            days_overdue=1,
            discount=D("10.00"),
            discount_revoked=False,
            lines=[
                credit.OverdueLine(
                    line_no=1,
                    barcode="4820000000017",
                    name="Dress",
                    quantity=D("1"),
                    amount_owed=D("30.00"),
                )
            ],
            detected_at=day(31, 0),
        ),
        credit.DiscountRevoked(
            sale_id=sale_a,
            chain_id=CHAIN,
            customer_id=customer,
            amount=D("10.00"),
            lines=[credit.RevokedDiscountLine(line_no=1, amount=D("10.00"))],
            trigger="automatic",
            revoked_at=day(31, 1),
            customer_balances=bal("90.00", bonus="7.00"),
            lines_changed=[credit.LineOwedChange(sale_id=sale_a, line_no=1, owed_after=D("40.00"))],
        ),
    )
    now = day(31)
    sf = make_session_factory(engine)
    async with sf() as session:
        goods = await reports.unpaid_goods(session, CHAIN, reports.Filters(), now=now)
        assert [(g["item"], g["amount_owed"], g["days_overdue"], g["due_date"]) for g in goods] == [
            ("Dress [4820000000017]", "40.00", 1, "2026-01-31"),
            ("Socks [4820000000031]", "50.00", 0, "2026-02-05"),
        ]
        rows, totals = await reports.aging(session, CHAIN, reports.Filters(), now=now)
        assert rows == [
            {
                "customer_id": str(customer),
                "name": "Ana Pop",
                "current": "50.00",
                "d1_30": "40.00",
                "d31_60": "0.00",
                "d61_90": "0.00",
                "d90_plus": "0.00",
                "total": "90.00",
            }
        ]
        assert totals["total"] == "90.00"
        found = await reports.balances_of(session, CHAIN, [customer], now=now)
        assert found[customer] == {
            "debt": "90.00",
            "advance": "0.00",
            "bonus_balance": "7.00",
            "overdue": True,
        }
        card = await reports.open_sales(session, CHAIN, customer, None, now=now)
        assert [(s["amount_owed"], s["overdue"], s["lines"]) for s in card["open_sales"]] == [
            ("40.00", True, []),
            ("50.00", False, []),
        ]

    # day 32: pay debt in cash -> 90.00 paid, debt 0.00, bonus +9.00
    await feed(
        consumer,
        customer,
        accrual(customer, day(32), "9.00", "16.00"),
        payment(
            customer,
            day(32),
            "90.00",
            DebtPaymentKind.PAY_DEBT,
            [(sale_a, None, "40.00"), (sale_b, None, "50.00")],
            [(sale_a, 1, "0.00"), (sale_b, 1, "0.00")],
            bal("0.00", bonus="16.00"),
        ),
    )
    async with sf() as session:
        assert await reports.unpaid_goods(session, CHAIN, reports.Filters(), now=day(32)) == []
        body, entries = await reports.statement(session, CHAIN, customer, Period(None, None))
        assert [(e["kind"], e["debt_change"], e["debt"], e["bonus_balance"]) for e in entries] == [
            ("sale", "100.00", "100.00", "0.00"),
            ("sale", "50.00", "150.00", "0.00"),
            ("payment", "-70.00", "80.00", "0.00"),
            ("bonus_accrued", "0.00", "80.00", "7.00"),
            ("discount_revoked", "10.00", "90.00", "7.00"),
            ("payment", "-90.00", "0.00", "7.00"),
            ("bonus_accrued", "0.00", "0.00", "16.00"),
        ]
        assert body["closing"] == {"debt": "0.00", "advance": "0.00", "bonus_balance": "16.00"}
        period = Period(date(2026, 1, 12), date(2026, 2, 28))  # day 11 on
        rows_pb, _totals_pb, _ = await reports.payment_balance(
            session, CHAIN, reports.Filters(period=period)
        )
        assert [(r.opening, r.goods, r.payments, r.closing) for r in rows_pb] == [
            (D("-80.00"), D("10.00"), D("90.00"), D("0.00"))
        ]
        stats = await reports.bonus_statistics(session, CHAIN, reports.Filters())
        assert (stats["accrued"], stats["outstanding"]) == ("16.00", "16.00")


async def test_per_item_example_shows_the_shoes_still_owed_in_json_and_csv(
    consumer: Consumer, api: Api
) -> None:
    customer, sale_a = uuid.uuid4(), uuid.uuid4()
    mode = CreditMode.PER_ITEM
    await register(consumer, customer, mode)
    lines = [
        line(1, "Dress", "4820000000017", "60.00", "0.00", "60.00"),
        line(2, "Shoes", "4820000000024", "50.00", "10.00", "40.00"),
    ]
    await feed(
        consumer,
        customer,
        on_account_sale(customer, sale_a, day(0), lines, bal("100.00"), mode),
        payment(
            customer,
            day(10),
            "70.00",
            DebtPaymentKind.TAKE_MONEY,
            [(sale_a, 1, "60.00"), (sale_a, 2, "10.00")],
            [(sale_a, 1, "0.00"), (sale_a, 2, "30.00")],
            bal("30.00"),
        ),
    )
    async with api() as http:
        base = f"/internal/v1/chains/{CHAIN}"
        resp = await http.get(f"{base}/reports/unpaid-goods")
        assert resp.status_code == 200
        [row] = resp.json()["rows"]
        assert (row["item"], row["barcode"], row["quantity"], row["amount_owed"]) == (
            "Shoes [4820000000024]",
            "4820000000024",
            "1",
            "30.00",
        )
        csv_resp = await http.get(f"{base}/reports/unpaid-goods", headers={"Accept": "text/csv"})
        assert csv_resp.headers["content-type"].startswith("text/csv")
        header, data = csv_resp.text.strip().split("\r\n")
        assert header.split(",") == list(reports.CSV_HEADERS["unpaid-goods"])
        assert "Shoes [4820000000024]" in data
        card = (await http.get(f"{base}/customers/{customer}/open-sales?mode=per_item")).json()
        assert card["open_sales"][0]["lines"] == [
            {"line_no": 2, "name": "Shoes", "barcode": "4820000000024", "amount_owed": "30.00"}
        ]
        other_chain = f"/internal/v1/chains/{uuid.uuid4()}/customers/{customer}/balances"
        assert (await http.get(other_chain)).json()["code"] == "not_found"
        unknown = await http.get(f"{base}/customers/{uuid.uuid4()}/balances")
        assert unknown.json() == {
            "debt": "0.00",
            "advance": "0.00",
            "bonus_balance": "0.00",
            "overdue": False,
        }


#: not base64; base64 of no JSON; a JSON list; a position with a NUL (PostgreSQL refuses it)
FORGED_CURSORS = ("not base64 !", "bm90LWpzb24", "WzEsMl0", "eyJvIjoiYVx1MDAwMCJ9", "eyJvIjotMX0")


async def test_a_forged_cursor_is_a_422_on_every_paged_report_never_a_500(
    consumer: Consumer, api: Api
) -> None:
    customer = uuid.uuid4()
    await register(consumer, customer, CreditMode.PER_SALE)
    base = f"/internal/v1/chains/{CHAIN}"
    paths = [
        f"{base}/reports/payment-balance",
        f"{base}/reports/unpaid-goods",
        f"{base}/reports/aging",
        f"{base}/reports/bonus-statistics",
        f"{base}/customers/{customer}/statement",
    ]
    async with api() as http:
        for path in paths:
            for limit in ({}, {"limit": "2"}):
                for forged in FORGED_CURSORS:
                    resp = await http.get(path, params={"cursor": forged, **limit})
                    assert resp.status_code == 422, (path, limit, forged, resp.text)
                    assert resp.json()["code"] == "validation_error"


async def test_a_redelivered_message_is_applied_once(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    customer, sale_a = uuid.uuid4(), uuid.uuid4()
    await register(consumer, customer, CreditMode.BALANCE)
    sale = on_account_sale(
        customer,
        sale_a,
        day(0),
        [line(1, "Dress", "1", "60.00", "0.00", "60.00")],
        bal("60.00"),
        CreditMode.BALANCE,
    )
    rec = record_of(sale, key=customer)
    await consumer.process_records([rec])
    await consumer.process_records([rec])
    async with make_session_factory(engine)() as session:
        rows, _, _ = await reports.payment_balance(session, CHAIN, reports.Filters())
        assert [(r.goods, r.closing) for r in rows] == [(D("60.00"), D("-60.00"))]
