"""Unpaid goods, Aging and Bonus statistics paged in SQL (`limit`, what the back office asks
for) give exactly the rows, order and totals of the whole reports, page after page.

The whole reports are the reference: they are what the CSV download and the worked examples
check. Names repeat (the customer id breaks ties), three customers have no customer row yet
(their name is empty), lines fall into every aging bucket, and bonus movements lie before,
inside and after the period in two stores.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from reporting_helpers import all_pages, insert_chains, insert_customers, movement_row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from reporting.adapters import tables as t
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.db import make_session_factory
from servicekit.paging import BadCursor

pytestmark = pytest.mark.integration

CHAIN, OTHER = uuid.uuid4(), uuid.uuid4()
STORES = [uuid.uuid4(), uuid.uuid4()]
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
NAMES = ["Ana", "ana", "Zoe", "Ștefan", "Ana", "<script>x</script>", "Émile"]


async def _load(session: AsyncSession) -> None:
    rnd = random.Random(11)
    customers = [uuid.uuid4() for _ in range(23)]
    registered = customers[:-3]
    await insert_chains(session, CHAIN)
    await session.execute(
        sa.insert(t.stores),
        [
            {"store_id": s, "chain_id": CHAIN, "code": f"S{i}", "name": f"Store {i}"}
            for i, s in enumerate(STORES)
        ],
    )
    await insert_customers(
        session, CHAIN, [(c, NAMES[i % len(NAMES)], i % 3 != 0) for i, c in enumerate(registered)]
    )
    sales, lines, movements = [], [], []
    for n in range(90):
        cid = rnd.choice(customers)
        sale_id = uuid.uuid4()
        sold_at = NOW - timedelta(days=rnd.randrange(0, 160), hours=rnd.randrange(24))
        sales.append(
            {
                "sale_id": sale_id,
                "chain_id": CHAIN,
                "customer_id": cid,
                "store_id": rnd.choice(STORES),
                "sold_at": sold_at,
                "due_date": None if n % 17 == 0 else sold_at.date() + timedelta(days=30),
                "total": Decimal("100"),
            }
        )
        for line_no in range(1, rnd.randrange(2, 4)):
            owed = Decimal(rnd.choice([0, rnd.randrange(1, 9000)])) / 100
            lines.append(
                {
                    "sale_id": sale_id,
                    "line_no": line_no,
                    "chain_id": CHAIN,
                    "customer_id": cid,
                    "sku": "SKU",
                    "barcode": f"48200{line_no}",
                    "name": f"Item {line_no}",
                    "quantity": Decimal("1"),
                    "amount": Decimal("90"),
                    "owed": owed,
                }
            )
    for _ in range(300):
        kind = rnd.choice(["accrued", "spent", "cancelled", "reversed", "restored", "expired"])
        amount = Decimal(rnd.randrange(1, 3000)) / 100
        sign = 1 if kind in ("accrued", "restored") else -1
        movements.append(
            movement_row(
                chain_id=CHAIN,
                customer_id=rnd.choice(customers),
                store_id=rnd.choice(STORES),
                at=T0 + timedelta(hours=rnd.randrange(0, 24 * 150)),
                kind=f"bonus_{kind}",
                description=kind,
                bonus_kind=kind,
                bonus_amount=amount,
                bonus_change=sign * amount,
            )
        )
    # another chain's rows are in none of this chain's reports
    other_sale = uuid.uuid4()
    sales.append(
        {
            "sale_id": other_sale,
            "chain_id": OTHER,
            "customer_id": uuid.uuid4(),
            "store_id": STORES[0],
            "sold_at": T0,
            "due_date": date(2026, 1, 2),
            "total": Decimal("5"),
        }
    )
    lines.append(
        {
            "sale_id": other_sale,
            "line_no": 1,
            "chain_id": OTHER,
            "customer_id": sales[-1]["customer_id"],
            "sku": "X",
            "barcode": None,
            "name": "X",
            "quantity": Decimal("1"),
            "amount": Decimal("5"),
            "owed": Decimal("5"),
        }
    )
    await session.execute(sa.insert(t.sales), sales)
    await session.execute(sa.insert(t.sale_lines), lines)
    await session.execute(sa.insert(t.movements), movements)


async def _pages(fetch: Any) -> tuple[list[Any], list[Any]]:
    """Every page, none of them longer than the 4 rows asked for."""
    rows, pages = await all_pages(fetch, most=200)
    assert all(len(page.rows) <= 4 for page in pages)
    return rows, pages


async def test_every_page_of_the_three_reports_matches_the_whole_report(
    engine: AsyncEngine,
) -> None:
    sf = make_session_factory(engine)
    async with sf() as session, session.begin():
        await _load(session)
    periods = [
        Period(None, None),
        Period(date(2026, 2, 1), date(2026, 3, 31)),
        Period(None, date(2026, 2, 15)),
    ]
    async with sf() as session:
        for store in (None, STORES[1]):
            for vip_only in (False, True):
                filters = reports.Filters(Period(None, None), store, vip_only)
                whole = await reports.unpaid_goods(session, CHAIN, filters, now=NOW)
                assert whole  # the data has unpaid lines under every filter
                paged, _ = await _pages(
                    lambda c, f=filters: reports.unpaid_goods_page(
                        session, CHAIN, f, limit=4, cursor=c, now=NOW
                    )
                )
                assert paged == whole

                whole_rows, whole_totals = await reports.aging(session, CHAIN, filters, now=NOW)
                paged, pages = await _pages(
                    lambda c, f=filters: reports.aging_page(
                        session, CHAIN, f, limit=4, cursor=c, now=NOW
                    )
                )
                assert paged == whole_rows
                assert all(p.totals == whole_totals for p in pages)

                for period in periods:
                    filters = reports.Filters(period, store, vip_only)
                    body = await reports.bonus_statistics(session, CHAIN, filters)
                    expected = body.pop("by_customer")
                    assert expected
                    paged, pages = await _pages(
                        lambda c, f=filters: reports.bonus_statistics_page(
                            session, CHAIN, f, limit=4, cursor=c
                        )
                    )
                    assert paged == expected
                    assert all(p.rest == body for p in pages)


async def test_bonus_statistics_names_each_customer_and_store(engine: AsyncEngine) -> None:
    sf = make_session_factory(engine)
    async with sf() as session, session.begin():
        await _load(session)
    async with sf() as session:
        body = await reports.bonus_statistics(
            session, CHAIN, reports.Filters(Period(None, None), None, False)
        )
    names = {r["customer_id"]: r["name"] for r in body["by_customer"]}
    assert "<script>x</script>" in names.values() and "Ștefan" in names.values()
    assert "" in names.values()  # a customer whose row has not arrived yet
    assert {s["name"] for s in body["by_store"]} == {"Store 0", "Store 1"}


async def test_a_cursor_of_another_report_or_made_up_is_refused(engine: AsyncEngine) -> None:
    sf = make_session_factory(engine)
    async with sf() as session, session.begin():
        await _load(session)
    filters = reports.Filters(Period(None, None), None, False)
    async with sf() as session:
        first = await reports.aging_page(session, CHAIN, filters, limit=2, now=NOW)
        assert first.next
        for bad in (first.next, "bm90LWpzb24", "eyJyIjoidW5wYWlkIn0"):
            with pytest.raises(BadCursor):
                await reports.unpaid_goods_page(session, CHAIN, filters, limit=2, cursor=bad)
