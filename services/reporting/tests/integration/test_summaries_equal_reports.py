"""The per-customer sums the triggers keep (`rm_open_debt`, `rm_credit_*`, `rm_bonus_*`,
migration 0005) give exactly the reports computed the old way, from the
lines and movements themselves, on a randomized story set that keeps changing after the rows
went in: payments dated in other months (and other years), returns (owed and quantities down),
voided bonus movements (`BonusesVoided` deletes them), a sale whose due date comes later
(`SaleOverdue`), renamed customers and VIP flags switched, customers whose row arrives after
their sales, several stores and two chains.

References: `aging`, `unpaid_goods` and `bonus_statistics` (whole reports over `rm_sale_lines`
and `rm_movements`), the movement sums of `payment_balance.sums_of_movements` (what
Payment-Balance summed before), and a fresh recompute of the summary tables from the base tables.
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

from reporting.adapters import credit_ledger, payment_balance
from reporting.adapters import tables as t
from reporting.domain.model import Period
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.service_layer import reports
from servicekit.db import make_engine, make_session_factory, prepare_database
from servicekit.testing import alembic_to

pytestmark = pytest.mark.integration

TZ = "Europe/Bucharest"
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
NAMES = ["Ana", "ana", "Zoe", "Ștefan", "<script>x</script>", "Émile", "Ion"]


async def _movement(s: AsyncSession, **values: Any) -> None:
    """One row of `rm_movements`, as the projection writes it (its own message, seq 0)."""
    await s.execute(sa.insert(t.movements).values(**movement_row(**values)))


class Story:
    """Random operations on the read-model tables, each a statement as the projection issues
    it (inserts, then updates and deletes of what is there), committed in several batches."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.chains = [uuid.uuid4(), uuid.uuid4()]
        self.stores = {c: [uuid.uuid4(), uuid.uuid4(), uuid.uuid4()] for c in self.chains}
        self.customers = {c: [uuid.uuid4() for _ in range(14)] for c in self.chains}
        self.registered: set[uuid.UUID] = set()
        self.lines: list[tuple[uuid.UUID, uuid.UUID, int, uuid.UUID]] = []
        self.bonus_ids: list[uuid.UUID] = []

    async def add_chains(self, s: AsyncSession) -> None:
        await insert_chains(s, *self.chains)

    def moment(self) -> datetime:
        # from a year and a half back to a month ahead, often on a local month's edge
        if self.rnd.random() < 0.2:
            month = self.rnd.randrange(1, 13)
            edge = datetime(2026, month, 1, tzinfo=UTC) - timedelta(hours=3)
            return edge + timedelta(minutes=self.rnd.choice([-1, 0, 1, 90, 200]))
        return NOW - timedelta(hours=self.rnd.randrange(-24 * 30, 24 * 540))

    async def register(self, s: AsyncSession, chain: uuid.UUID, cid: uuid.UUID) -> None:
        name = self.rnd.choice(NAMES)
        await insert_customers(s, chain, [(cid, name, self.rnd.random() < 0.6)])
        self.registered.add(cid)

    async def sale(self, s: AsyncSession, chain: uuid.UUID) -> None:
        cid = self.rnd.choice(self.customers[chain])
        store = self.rnd.choice(self.stores[chain])
        sale_id, at = uuid.uuid4(), self.moment()
        total = Decimal(self.rnd.randrange(100, 90000)) / 100
        paid = self.rnd.choice([Decimal(0), total, (total / 3).quantize(Decimal("0.01"))])
        due = None if self.rnd.random() < 0.15 else at.date() + timedelta(days=30)
        sale = sa.insert(t.sales).values(
            sale_id=sale_id,
            chain_id=chain,
            customer_id=cid,
            store_id=store,
            sold_at=at,
            due_date=due,
            total=total,
        )
        n = self.rnd.randrange(1, 4)
        share = (total - paid) / n
        # lines stored before their sale (order-free) count once the sale comes
        lines_first = self.rnd.random() < 0.3
        if not lines_first:
            await s.execute(sale)
        await s.execute(
            sa.insert(t.sale_lines),
            [
                {
                    "sale_id": sale_id,
                    "line_no": i,
                    "chain_id": chain,
                    "customer_id": cid,
                    "sku": "SKU",
                    "barcode": f"48{i}",
                    "name": f"Item {i}",
                    "quantity": Decimal(2),
                    "amount": total / n,
                    "owed": share,
                }
                for i in range(1, n + 1)
            ],
        )
        if lines_first:
            await s.execute(sale)
        self.lines += [(chain, sale_id, i, cid) for i in range(1, n + 1)]
        # the sale's movement and the bonus it accrued: one customer, store, moment and sale
        of_sale = {
            "chain_id": chain,
            "customer_id": cid,
            "store_id": store,
            "at": at,
            "sale_id": sale_id,
        }
        await _movement(
            s,
            **of_sale,
            kind="sale",
            description="Sale",
            goods=total,
            payments=paid,
            debt_change=total - paid,
        )
        if paid:
            amount = (paid / 10).quantize(Decimal("0.01"))
            movement_id = uuid.uuid4()
            self.bonus_ids.append(movement_id)
            await _movement(
                s,
                **of_sale,
                kind="bonus_accrued",
                description="Bonus",
                bonus_change=amount,
                bonus_kind="accrued",
                bonus_amount=amount,
                bonus_movement_id=movement_id,
            )

    async def payment(self, s: AsyncSession) -> None:
        """A payment dated any time (another month, another year): owed lines go down."""
        if not self.lines:
            return
        chain, sale_id, line_no, cid = self.rnd.choice(self.lines)
        amount = Decimal(self.rnd.randrange(1, 20000)) / 100
        owed = await s.scalar(
            sa.select(t.sale_lines.c.owed).where(
                t.sale_lines.c.chain_id == chain,
                t.sale_lines.c.sale_id == sale_id,
                t.sale_lines.c.line_no == line_no,
            )
        )
        await s.execute(
            sa.update(t.sale_lines)
            .where(
                t.sale_lines.c.chain_id == chain,
                t.sale_lines.c.sale_id == sale_id,
                t.sale_lines.c.line_no == line_no,
            )
            .values(owed=max(Decimal(0), owed - amount))
        )
        await _movement(
            s,
            chain_id=chain,
            customer_id=cid,
            store_id=self.rnd.choice(self.stores[chain] + [None]),
            at=self.moment(),
            kind=self.rnd.choice(["payment", "advance", "refund"]),
            payment_id=uuid.uuid4(),
            description="Payment",
            payments=amount if self.rnd.random() < 0.8 else -amount,
            debt_change=-amount,
        )

    async def ret(self, s: AsyncSession) -> None:
        """A return: the line's quantity and debt go down, goods come back."""
        if not self.lines:
            return
        chain, sale_id, line_no, cid = self.rnd.choice(self.lines)
        line = t.sale_lines.c
        where = [line.chain_id == chain, line.sale_id == sale_id, line.line_no == line_no]
        await s.execute(
            sa.update(t.sale_lines)
            .where(*where)
            .values(returned_quantity=line.returned_quantity + 1, owed=line.owed / 2)
        )
        await _movement(
            s,
            chain_id=chain,
            customer_id=cid,
            store_id=self.rnd.choice(self.stores[chain]),
            at=self.moment(),
            kind="return",
            sale_id=sale_id,
            description="Return",
            goods=-Decimal("7.5"),
            payments=-Decimal("2.5"),
        )

    async def void(self, s: AsyncSession) -> None:
        """`BonusesVoided`: a failed operation's bonus movements are deleted."""
        if self.bonus_ids:
            gone = self.bonus_ids.pop(self.rnd.randrange(len(self.bonus_ids)))
            await s.execute(sa.delete(t.movements).where(t.movements.c.bonus_movement_id == gone))

    async def rename(self, s: AsyncSession) -> None:
        if self.registered:
            cid = self.rnd.choice(sorted(self.registered))
            name = self.rnd.choice(NAMES)
            await s.execute(
                sa.update(t.customers)
                .where(t.customers.c.customer_id == cid)
                .values(name=name, name_key=name.casefold(), vip=self.rnd.random() < 0.5)
            )

    async def due_later(self, s: AsyncSession) -> None:
        """`SaleOverdue` gives a sale without a due date its due date."""
        await s.execute(
            sa.update(t.sales)
            .where(t.sales.c.due_date.is_(None))
            .where(
                t.sales.c.sale_id.in_(
                    sa.select(t.sales.c.sale_id)
                    .where(t.sales.c.due_date.is_(None))
                    .limit(1)
                    .scalar_subquery()
                )
            )
            .values(due_date=date(2026, 3, 1))
        )

    async def revoke_discount(self, s: AsyncSession) -> None:
        """`DiscountRevoked` on a sale: its lines' debt is another statement; the sale's row
        changes in a column open debt does not read."""
        if self.lines:
            chain, sale_id, _, _ = self.rnd.choice(self.lines)
            await s.execute(
                sa.update(t.sales)
                .where(t.sales.c.chain_id == chain, t.sales.c.sale_id == sale_id)
                .values(discount_revoked=t.sales.c.discount_revoked + 1)
            )

    async def batch(self, s: AsyncSession, operations: int) -> None:
        for _ in range(operations):
            chain = self.rnd.choice(self.chains)
            unregistered = [c for c in self.customers[chain] if c not in self.registered]
            roll = self.rnd.random()
            if unregistered and roll < 0.12 and len(unregistered) > 2:
                await self.register(s, chain, self.rnd.choice(unregistered))
            elif roll < 0.55:
                await self.sale(s, chain)
            elif roll < 0.72:
                await self.payment(s)
            elif roll < 0.8:
                await self.ret(s)
            elif roll < 0.87:
                await self.void(s)
            elif roll < 0.93:
                await self.rename(s)
            elif roll < 0.96:
                await self.revoke_discount(s)
            else:
                await self.due_later(s)


async def _table(s: AsyncSession, table: sa.Table) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in await s.execute(sa.select(table))}


async def _recomputed(engine: AsyncEngine) -> dict[str, set[tuple[Any, ...]]]:
    """The summary tables recomputed from scratch (in a transaction rolled back)."""
    async with engine.connect() as conn:
        tx = await conn.begin()
        for table in t.DERIVED_TABLES:
            await conn.execute(sa.text(f"DELETE FROM {table.name}"))
        await conn.execute(
            sa.text(
                "SELECT public.rm_refresh_open_debt_of(current_schema(), "
                "(SELECT array_agg(DISTINCT customer_id) FROM rm_sale_lines))"
            )
        )
        await conn.execute(sa.text(credit_ledger.BACKFILL_SQL))
        out = {
            table.name: {tuple(r) for r in await conn.execute(sa.select(table))}
            for table in t.DERIVED_TABLES
        }
        await tx.rollback()
    return out


async def _assert_kept_equal_recomputed(engine: AsyncEngine) -> None:
    """The summary tables hold rows, and equal a recompute from scratch, row for row."""
    async with make_session_factory(engine)() as s:
        kept = {table.name: await _table(s, table) for table in t.DERIVED_TABLES}
    assert all(kept.values())
    assert kept == await _recomputed(engine)


def _periods(rnd: random.Random) -> list[Period]:
    fixed = [
        Period(None, None),
        Period(date(2026, 5, 1), date(2026, 5, 31)),
        Period(date(2025, 1, 1), date(2025, 12, 31)),
        Period(None, date(2026, 2, 14)),
        Period(date(2026, 3, 17), None),
        Period(date(2026, 6, 1), date(2026, 6, 1)),
        Period(date(2027, 1, 1), date(2027, 2, 1)),
        Period(date(2020, 1, 1), date(2020, 1, 31)),
    ]
    for _ in range(10):
        start = date(2025, 1, 1) + timedelta(days=rnd.randrange(0, 600))
        fixed.append(Period(start, start + timedelta(days=rnd.randrange(0, 120))))
    return fixed


async def _pb_reference(
    s: AsyncSession, chain: uuid.UUID, period: Period
) -> dict[uuid.UUID, tuple[Decimal, Decimal, Decimal]]:
    lower, upper = period.bounds(TZ)
    sums = payment_balance.sums_of_movements(chain, lower, upper, None)
    return {
        r.customer_id: (r.opening, r.goods, r.payments) for r in await s.execute(sa.select(sums))
    }


async def _pb_ledger(
    s: AsyncSession, chain: uuid.UUID, period: Period
) -> dict[uuid.UUID, tuple[Decimal, Decimal, Decimal]]:
    lower, upper = period.bounds(TZ)
    return {
        r.customer_id: (r.opening, r.goods, r.payments)
        for r in await s.execute(credit_ledger.period_sums(chain, lower, upper))
    }


async def test_the_kept_sums_equal_the_reports_summed_from_lines_and_movements(
    engine: AsyncEngine,
) -> None:
    story = Story(seed=20261203)
    sf = make_session_factory(engine)
    async with sf() as s, s.begin():
        await story.add_chains(s)
        for chain in story.chains:
            await s.execute(
                sa.insert(t.stores),
                [
                    {"store_id": st, "chain_id": chain, "code": f"S{i}", "name": f"Store {i}"}
                    for i, st in enumerate(story.stores[chain])
                ],
            )
    for _ in range(6):
        async with sf() as s, s.begin():
            await story.batch(s, 40)
    async with sf() as s, s.begin():
        # a customer whose first movement falls after the local end of May but before the UTC
        # month start the report reads at: in June's report, not in May's
        chain, late = story.chains[0], uuid.uuid4()
        await story.register(s, chain, late)
        await _movement(
            s,
            chain_id=chain,
            customer_id=late,
            store_id=story.stores[chain][0],
            at=datetime(2026, 5, 31, 22, 30, tzinfo=UTC),
            kind="advance",
            payment_id=uuid.uuid4(),
            description="Advance",
            payments=Decimal("40"),
            advance_change=Decimal("40"),
        )

    await _assert_kept_equal_recomputed(engine)

    chain = story.chains[0]
    async with sf() as s:
        for period in _periods(story.rnd):
            assert await _pb_ledger(s, chain, period) == await _pb_reference(s, chain, period)
        for store in (None, story.stores[chain][1]):
            for vip_only in (False, True):
                filters = reports.Filters(Period(None, None), store, vip_only)
                whole = await reports.unpaid_goods(s, chain, filters, now=NOW)
                assert whole
                paged = await all_pages(
                    lambda c, f=filters: reports.unpaid_goods_page(
                        s, chain, f, limit=3, cursor=c, now=NOW
                    )
                )
                assert paged[0] == whole
                rows, totals = await reports.aging(s, chain, filters, now=NOW)
                paged_rows, pages = await all_pages(
                    lambda c, f=filters: reports.aging_page(s, chain, f, limit=3, cursor=c, now=NOW)
                )
                assert paged_rows == rows
                assert all(p.totals == totals for p in pages)
                for period in _periods(story.rnd)[:8]:
                    await _payment_balance_matches(s, chain, period, store, vip_only)
                    filters = reports.Filters(period, store, vip_only)
                    body = await reports.bonus_statistics(s, chain, filters)
                    expected = body.pop("by_customer")
                    paged_rows, pages = await all_pages(
                        lambda c, f=filters: reports.bonus_statistics_page(
                            s, chain, f, limit=3, cursor=c
                        )
                    )
                    assert paged_rows == expected, (period, store, vip_only)
                    assert all(p.rest == body for p in pages)


async def _payment_balance_matches(
    s: AsyncSession, chain: uuid.UUID, period: Period, store: uuid.UUID | None, vip_only: bool
) -> None:
    """Every page of Payment-Balance, both sorts, equals the report built in Python from the
    movement sums: same rows, same order, same totals."""
    lower, upper = period.bounds(TZ)
    sums = payment_balance.sums_of_movements(chain, lower, upper, store)
    c = t.customers.c
    rows = (
        await s.execute(
            sa.select(sums, c.name, c.name_key, c.vip).select_from(
                sums.outerjoin(t.customers, c.customer_id == sums.c.customer_id)
            )
        )
    ).all()
    if vip_only:
        rows = [r for r in rows if r.vip is True]
    reference = [
        (
            r.customer_id,
            r.name or "",
            r.name_key or "",
            r.opening,
            r.goods,
            r.payments,
            r.opening + r.payments - r.goods,
        )
        for r in rows
    ]
    totals = {
        "opening": sum((r[3] for r in reference), Decimal(0)),
        "goods": sum((r[4] for r in reference), Decimal(0)),
        "payments": sum((r[5] for r in reference), Decimal(0)),
    }
    totals["closing"] = totals["opening"] + totals["payments"] - totals["goods"]
    filters = reports.Filters(period, store, vip_only)
    for sort in ("closing", "name"):
        if sort == "closing":
            expected = sorted(reference, key=lambda r: (r[6], str(r[0])))
        else:
            expected = sorted(reference, key=lambda r: (r[2], str(r[0])))
        got, pages = await all_pages(
            lambda c, f=filters, o=sort: reports.payment_balance_page(
                s, chain, f, sort=o, limit=4, cursor=c
            )
        )
        assert all(page.totals == totals for page in pages)
        assert [(r.customer_id, r.name, r.opening, r.goods, r.payments) for r in got] == [
            (r[0], r[1], r[3], r[4], r[5]) for r in expected
        ], (period, store, vip_only, sort)


async def test_an_existing_database_upgrades_to_the_kept_sums_of_its_read_models(
    fresh_database_url: str,
) -> None:
    """A database at 0004 (read models, no sums) gets 0005's tables filled from its rows."""
    await prepare_database(MIGRATIONS_DIR, fresh_database_url)
    await alembic_to(MIGRATIONS_DIR, fresh_database_url, "downgrade", "0004")
    engine = make_engine(fresh_database_url, pool_size=2)
    try:
        async with engine.connect() as conn:
            left = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_tables WHERE tablename IN "
                    "('rm_open_debt', 'rm_credit_totals', 'rm_credit_months', 'rm_bonus_totals', "
                    "'rm_bonus_months')"
                )
            )
        assert left == 0  # 0004's shape: the read models without the sums
        story = Story(seed=4)
        sf = make_session_factory(engine)
        async with sf() as s, s.begin():
            await story.add_chains(s)
            await story.batch(s, 120)
        await alembic_to(MIGRATIONS_DIR, fresh_database_url, "upgrade", "head")
        await _assert_kept_equal_recomputed(engine)
        chain = story.chains[0]
        async with sf() as s:
            filters = reports.Filters(Period(None, None), None, False)
            rows, totals = await reports.aging(s, chain, filters, now=NOW)
            page = await reports.aging_page(s, chain, filters, limit=500, now=NOW)
            assert (page.rows, page.totals) == (rows, totals)
            await _payment_balance_matches(
                s, chain, Period(date(2026, 5, 1), date(2026, 5, 31)), None, True
            )
    finally:
        await engine.dispose()
