"""Payment-Balance sorted, paged and totalled in SQL gives exactly the reference rows of
`build_payment_balance` + `sort_payment_balance`, page after page with keyset cursors."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from reporting_helpers import all_pages, insert_chains, insert_customers, movement_row
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.adapters import tables as t
from reporting.domain.csv_rows import to_csv
from reporting.domain.model import (
    BalanceMovement,
    Period,
    build_payment_balance,
    payment_balance_totals,
    sort_payment_balance,
)
from reporting.service_layer import reports
from reporting.service_layer.reports import CSV_HEADERS
from servicekit.db import make_session_factory
from servicekit.paging import BadCursor

pytestmark = pytest.mark.integration

CHAIN, OTHER = uuid.uuid4(), uuid.uuid4()
STORES = [uuid.uuid4(), uuid.uuid4()]
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
# names whose casefolded order differs from PostgreSQL's lower()/collation order
NAMES = ["Ștefan", "stefan", "Zoe", "adam", "Straße", "STRASSE", "Émile", "emile", "Ana", "ana"]


def _sale_movement(
    chain: uuid.UUID,
    customer: uuid.UUID,
    store: uuid.UUID,
    at: datetime,
    goods: Decimal,
    payments: Decimal,
) -> dict[str, object]:
    """The movement of a sale of `goods` that paid `payments`."""
    return movement_row(
        chain_id=chain,
        customer_id=customer,
        store_id=store,
        at=at,
        kind="sale",
        description="Sale",
        goods=goods,
        payments=payments,
    )


async def test_every_page_and_the_totals_match_the_reference_report(engine: AsyncEngine) -> None:
    rnd = random.Random(5)
    customers = [uuid.uuid4() for _ in range(37)]
    names = {c: NAMES[i % len(NAMES)] for i, c in enumerate(customers[:-3])}  # 3 unregistered
    vip = {c: i % 3 != 0 for i, c in enumerate(customers)}
    movements = []
    rows = []
    for _ in range(400):
        cid = rnd.choice(customers)
        store = rnd.choice(STORES)
        at = T0 + timedelta(hours=rnd.randrange(0, 24 * 40))
        goods = Decimal(rnd.randrange(0, 5000)) / 100
        payments = Decimal(rnd.choice([0, rnd.randrange(0, 6000)])) / 100
        movements.append((cid, store, BalanceMovement(cid, at, goods, payments)))
        rows.append(_sale_movement(CHAIN, cid, store, at, goods, payments))
    # bonus movements and another chain's movements are in no Payment-Balance
    extra = [
        movement_row(
            chain_id=CHAIN,
            customer_id=customers[0],
            store_id=STORES[0],
            at=T0,
            kind="bonus_accrued",
            description="Bonus",
            bonus_kind="accrued",
            bonus_amount=Decimal("3"),
            bonus_change=Decimal("3"),
        ),
        movement_row(
            chain_id=OTHER,
            customer_id=uuid.uuid4(),
            store_id=STORES[0],
            at=T0,
            kind="sale",
            description="Sale",
            goods=Decimal("7"),
        ),
    ]
    sf = make_session_factory(engine)
    async with sf() as session, session.begin():
        await session.execute(sa.insert(t.movements), rows)
        for row in extra:
            await session.execute(sa.insert(t.movements).values(**row))
        await insert_customers(session, CHAIN, [(c, name, vip[c]) for c, name in names.items()])
    periods = [
        Period(None, None),
        Period(date(2026, 3, 10), date(2026, 3, 25)),
        Period(None, date(2026, 3, 20)),
        Period(date(2026, 3, 15), None),
    ]
    async with sf() as session:
        for period in periods:
            lower, upper = period.bounds("UTC")
            for store in (None, STORES[1]):
                for vip_only in (False, True):
                    for sort in ("closing", "name"):
                        chosen = [
                            mov
                            for cid, st, mov in movements
                            if (store is None or st == store)
                            and (not vip_only or (cid in names and vip[cid]))
                        ]
                        expected = sort_payment_balance(
                            build_payment_balance(chosen, names, lower, upper), sort
                        )
                        filters = reports.Filters(period, store, vip_only)
                        whole, totals, _ = await reports.payment_balance(
                            session, CHAIN, filters, sort=sort
                        )
                        assert whole == expected
                        assert totals == payment_balance_totals(expected)
                        paged, pages = await all_pages(
                            lambda c, f=filters, o=sort: reports.payment_balance_page(
                                session, CHAIN, f, sort=o, limit=4, cursor=c
                            )
                        )
                        assert all(page.totals == totals for page in pages)
                        assert paged == expected
        with pytest.raises(BadCursor):
            await reports.payment_balance_page(
                session, CHAIN, reports.Filters(), sort="name", limit=4, cursor="bm90IGEgY3Vyc29y"
            )


# names that JSON must escape and CSV must quote, and sub-minor-unit amounts whose rounding
# (half-up, a negative amount rounding to zero keeping its sign) SQL must do as Python does
AWKWARD_NAMES = ['O"Brien, Jr.', "two\nlines", "back\\slash", "tab\there", "Zoë 🛒", "", "a\rb"]
AWKWARD_AMOUNTS = ["0.0049", "0.005", "0.0051", "12.3450", "99999.9999", "0.0001", "7"]


@pytest.mark.parametrize("minor_units", [2, 0, 3])
async def test_the_whole_report_rendered_by_postgresql_equals_the_python_rendering(
    engine: AsyncEngine, minor_units: int
) -> None:
    chain = uuid.uuid4()
    rnd = random.Random(minor_units)
    customers = [uuid.uuid4() for _ in range(len(AWKWARD_NAMES) + 2)]  # 2 unregistered
    rows = []
    for i, cid in enumerate(customers * 3):
        goods = Decimal(AWKWARD_AMOUNTS[i % len(AWKWARD_AMOUNTS)])
        payments = Decimal(rnd.choice(AWKWARD_AMOUNTS)) if i % 2 else Decimal(0)
        rows.append(
            _sale_movement(chain, cid, STORES[i % 2], T0 + timedelta(days=i), goods, payments)
        )
    sf = make_session_factory(engine)
    async with sf() as session, session.begin():
        await insert_chains(
            session,
            chain,
            name="Awkward",
            currency="XTS",
            minor_units=minor_units,
            credit_mode="balance",
        )
        await session.execute(sa.insert(t.movements), rows)
        await insert_customers(
            session, chain, [(c, n, True) for c, n in zip(customers, AWKWARD_NAMES, strict=False)]
        )
    async with sf() as session:
        signed_zero_seen = False
        for period in (Period(None, None), Period(date(2026, 3, 5), date(2026, 3, 12))):
            for store in (None, STORES[0]):
                for sort in ("closing", "name"):
                    filters = reports.Filters(period, store, False)
                    whole, totals, info = await reports.payment_balance(
                        session, chain, filters, sort=sort
                    )
                    assert info.minor_units == minor_units
                    expected = [reports.payment_balance_json(r, minor_units) for r in whole]
                    signed_zero_seen |= any(
                        v.startswith("-") and not v.strip("-0.")
                        for r in expected
                        for v in r.values()
                    )
                    as_json = await reports.payment_balance_rendered(
                        session, chain, filters, sort=sort, fmt="json"
                    )
                    assert json.loads("[" + as_json.body + "]") == expected
                    assert as_json.totals == totals
                    as_csv = await reports.payment_balance_rendered(
                        session, chain, filters, sort=sort, fmt="csv"
                    )
                    assert as_csv.body == to_csv(expected, CSV_HEADERS["payment-balance"])
        assert signed_zero_seen, "the data should exercise a negative amount rounding to zero"
        empty = await reports.payment_balance_rendered(
            session, uuid.uuid4(), reports.Filters(), fmt="json"
        )
        assert (empty.body, empty.totals["closing"]) == ("", Decimal(0))
