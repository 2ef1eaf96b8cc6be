"""The card lookup's read of one customer (`reports.customer_balances`, the internal
`GET .../customers/{id}/balances` the gateway calls for every card shown at a till) answers
exactly what `reports.balances_of` answers for that customer, in one statement instead of four
or five: a chain registered or not, a customer of this chain, of another one (by master data or
by their balances row alone) or unknown, and "overdue" decided on the chain's local date."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.adapters import tables as t
from reporting.service_layer import reports
from reporting.service_layer.reports import NotFound
from servicekit.db import make_session_factory
from servicekit.testing import counted_statements

pytestmark = pytest.mark.integration

#: 12:00 UTC on 1 March is already 2 March in Kiritimati (UTC+14), still 1 March in UTC
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
KIRITIMATI, UNREGISTERED = uuid.uuid4(), uuid.uuid4()
OTHER = uuid.uuid4()


async def _story(engine: AsyncEngine) -> dict[str, uuid.UUID]:
    """Customers of every kind the lookup meets, in the chain Kiritimati (minor units 3) and in
    a chain whose registration has not arrived."""
    c = {name: uuid.uuid4() for name in ("due_today_utc", "paid", "plain", "balances_only")}
    c |= {
        "other_chain": uuid.uuid4(),
        "other_by_balances": uuid.uuid4(),
        "unregistered": uuid.uuid4(),
    }
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(t.chains).values(
                chain_id=KIRITIMATI,
                name="K",
                timezone="Pacific/Kiritimati",
                currency="AUD",
                minor_units=3,
                credit_mode="per_item",
            )
        )
        for name, chain in [
            ("due_today_utc", KIRITIMATI),
            ("paid", KIRITIMATI),
            ("plain", KIRITIMATI),
            ("other_chain", OTHER),
            ("unregistered", UNREGISTERED),
        ]:
            await conn.execute(
                sa.insert(t.customers).values(
                    customer_id=c[name], chain_id=chain, name=name, vip=True, name_key=name
                )
            )
        for name, chain, debt in [
            ("due_today_utc", KIRITIMATI, "12.5"),
            ("paid", KIRITIMATI, "0"),
            ("balances_only", KIRITIMATI, "1.25"),
            ("other_by_balances", OTHER, "3"),
            ("unregistered", UNREGISTERED, "4.5"),
        ]:
            await conn.execute(
                sa.insert(t.balances).values(
                    customer_id=c[name],
                    chain_id=chain,
                    debt=Decimal(debt),
                    advance=Decimal("0.5"),
                    bonus_balance=Decimal("7"),
                )
            )
        # due 1 March: overdue on Kiritimati's 2 March, not on UTC's 1 March
        for name, chain, owed in [
            ("due_today_utc", KIRITIMATI, "12.5"),
            ("paid", KIRITIMATI, "0"),
            ("unregistered", UNREGISTERED, "4.5"),
        ]:
            sale = uuid.uuid4()
            await conn.execute(
                sa.insert(t.sales).values(
                    sale_id=sale,
                    chain_id=chain,
                    customer_id=c[name],
                    store_id=uuid.uuid4(),
                    sold_at=datetime(2026, 2, 1, tzinfo=UTC),
                    due_date=date(2026, 3, 1),
                    total=Decimal("12.5"),
                )
            )
            await conn.execute(
                sa.insert(t.sale_lines).values(
                    sale_id=sale,
                    line_no=1,
                    chain_id=chain,
                    customer_id=c[name],
                    name="coat",
                    quantity=Decimal(1),
                    amount=Decimal("12.5"),
                    owed=Decimal(owed),
                )
            )
    return c


async def _both(engine: AsyncEngine, chain: uuid.UUID, customer: uuid.UUID) -> tuple[Any, Any]:
    """(`balances_of`'s answer, `customer_balances`') for one customer: the answer or
    NotFound."""
    answers: list[Any] = []
    for read in (
        lambda s: reports.balances_of(s, chain, [customer], now=NOW),
        lambda s: reports.customer_balances(s, chain, customer, now=NOW),
    ):
        async with make_session_factory(engine)() as session:
            try:
                found = await read(session)
            except NotFound:
                found = NotFound
        answers.append(found[customer] if isinstance(found, dict) and customer in found else found)
    return answers[0], answers[1]


async def test_the_card_read_answers_what_balances_of_answers(engine: AsyncEngine) -> None:
    c = await _story(engine)
    expected = {
        ("due_today_utc", KIRITIMATI): {
            "debt": "12.500",
            "advance": "0.500",
            "bonus_balance": "7.000",
            "overdue": True,
        },
        ("paid", KIRITIMATI): {
            "debt": "0.000",
            "advance": "0.500",
            "bonus_balance": "7.000",
            "overdue": False,
        },
        ("balances_only", KIRITIMATI): {
            "debt": "1.250",
            "advance": "0.500",
            "bonus_balance": "7.000",
            "overdue": False,
        },
        ("plain", KIRITIMATI): {
            "debt": "0.000",
            "advance": "0.000",
            "bonus_balance": "0.000",
            "overdue": False,
        },
        ("other_chain", KIRITIMATI): NotFound,
        ("other_by_balances", KIRITIMATI): NotFound,
        # a chain not registered yet: UTC and two minor units, so 1 March is not past
        ("unregistered", UNREGISTERED): {
            "debt": "4.50",
            "advance": "0.50",
            "bonus_balance": "7.00",
            "overdue": False,
        },
        ("due_today_utc", UNREGISTERED): NotFound,
    }
    for (name, chain), answer in expected.items():
        old, new = await _both(engine, chain, c[name])
        assert old == answer, (name, "balances_of")
        assert new == answer, (name, "customer_balances")
    unknown = uuid.uuid4()
    assert await _both(engine, KIRITIMATI, unknown) == (expected[("plain", KIRITIMATI)],) * 2


async def test_a_card_lookup_is_one_statement(
    engine: AsyncEngine, api: Callable[[], httpx.AsyncClient]
) -> None:
    c = await _story(engine)
    base = f"/internal/v1/chains/{KIRITIMATI}/customers"
    async with api() as http:
        with counted_statements(engine) as sent:
            found = await http.get(f"{base}/{c['due_today_utc']}/balances")
            other = await http.get(f"{base}/{c['other_chain']}/balances")
    assert found.json() == {
        "debt": "12.500",
        "advance": "0.500",
        "bonus_balance": "7.000",
        "overdue": True,
    }
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
    assert len(sent) == 2, sent
