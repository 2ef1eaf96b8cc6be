"""The Payment-Balance report's statements: one customer per row (opening, goods, payments,
closing), sorted by closing or by casefolded name (`name_key`, compared in code-point order)
then customer id, with the totals over the whole report whatever the page.

The per-customer sums come from `credit_ledger` (all stores) or from the credit movements
themselves (one store, an index-only scan of `rm_movements_pb_store`). Every method works in
the caller's session and transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import credit_ledger
from reporting.adapters import tables as t
from reporting.domain.model import ZERO


@dataclass(frozen=True)
class Selection:
    """Which rows the report holds and where a page starts."""

    chain_id: UUID
    lower: datetime | None
    upper: datetime | None
    store_id: UUID | None
    vip_only: bool
    #: "closing" or "name"
    sort: str
    #: the (sort key, customer id) a page continues after
    after: tuple[str | Decimal, UUID] | None = None


def sums_of_movements(
    chain_id: UUID, lower: datetime | None, upper: datetime | None, store_id: UUID | None
) -> sa.Subquery:
    """(customer_id, opening, goods, payments) summed from the credit movements themselves: one
    store's (an index-only scan of `rm_movements_pb_store`), and the reference the per-customer
    sums of `credit_ledger` are tested against."""
    m = t.movements
    before = m.c.at < lower if lower is not None else sa.false()
    in_period = sa.not_(before)
    sums = (
        sa.select(
            m.c.customer_id,
            sa.func.coalesce(sa.func.sum(m.c.payments - m.c.goods).filter(before), ZERO).label(
                "opening"
            ),
            sa.func.coalesce(sa.func.sum(m.c.goods).filter(in_period), ZERO).label("goods"),
            sa.func.coalesce(sa.func.sum(m.c.payments).filter(in_period), ZERO).label("payments"),
        )
        .where(m.c.chain_id == chain_id, m.c.bonus_kind.is_(None))
        .group_by(m.c.customer_id)
    )
    if upper is not None:
        sums = sums.where(m.c.at < upper)
    if store_id is not None:
        sums = sums.where(m.c.store_id == store_id)
    return sums.subquery("sums")


def _queries(s: Selection) -> tuple[Any, sa.Select[Any], sa.Subquery]:
    """The report CTE (one row per customer), its rows in report order after `s.after`, and
    the totals over the whole report (whatever the page)."""
    c = t.customers
    if s.store_id is None:
        # every store: from the per-customer sums the projection keeps (rm_credit_*), not
        # from every movement of the chain
        sums = credit_ledger.period_sums(s.chain_id, s.lower, s.upper).subquery("sums")
    else:
        sums = sums_of_movements(s.chain_id, s.lower, s.upper, s.store_id)
    sums_cols = [
        sums.c.customer_id,
        sums.c.opening,
        sums.c.goods,
        sums.c.payments,
        (sums.c.opening + sums.c.payments - sums.c.goods).label("closing"),
    ]
    if not (s.vip_only or s.sort == "name"):
        # the customers' names only for the rows that are read (`_named`): joining 100,000
        # names before cutting the page cost more than the sums
        report_q = sa.select(*sums_cols)
    else:
        report_q = sa.select(
            *sums_cols,
            sa.func.coalesce(c.c.name, "").label("name"),
            sa.func.coalesce(c.c.name_key, "").collate("C").label("name_key"),
        ).select_from(sums.outerjoin(c, c.c.customer_id == sums.c.customer_id))
    if s.vip_only:
        report_q = report_q.where(c.c.vip.is_(True))
    report = report_q.cte("report").prefix_with("MATERIALIZED")
    key = report.c.name_key if s.sort == "name" else report.c.closing
    rows_q = sa.select(report)
    if s.after is not None:
        after_key, after_id = s.after
        after: sa.ColumnElement[Any] = (
            sa.literal(after_key, sa.Text).collate("C")
            if s.sort == "name"
            else sa.literal(after_key, t.MONEY)
        )
        rows_q = rows_q.where(
            sa.tuple_(key, report.c.customer_id)
            > sa.tuple_(after, sa.literal(after_id, t.movements.c.customer_id.type))
        )
    totals_q = sa.select(
        sa.func.coalesce(sa.func.sum(report.c.opening), ZERO).label("t_opening"),
        sa.func.coalesce(sa.func.sum(report.c.goods), ZERO).label("t_goods"),
        sa.func.coalesce(sa.func.sum(report.c.payments), ZERO).label("t_payments"),
    ).subquery("totals")
    return report, rows_q, totals_q


def _named(rows: sa.Subquery, name: str) -> sa.Subquery:
    """`rows` with the customers' `name` and `name_key` (when the report left them out)."""
    if "name" in rows.c:
        return rows
    c = t.customers
    return (
        sa.select(
            rows,
            sa.func.coalesce(c.c.name, "").label("name"),
            sa.func.coalesce(c.c.name_key, "").collate("C").label("name_key"),
        )
        .select_from(rows.outerjoin(c, c.c.customer_id == rows.c.customer_id))
        .subquery(name)
    )


def _money_sql(value: sa.ColumnElement[Any], minor_units: int) -> sa.ColumnElement[Any]:
    """`money_str` in SQL: half-up to the minor unit (PostgreSQL's `round` of a numeric rounds
    half away from zero, as `ROUND_HALF_UP` does) and printed with exactly that many digits;
    a negative amount that rounds to zero keeps its sign, as a quantized `Decimal` does."""
    rounded = sa.func.round(value, sa.literal_column(str(int(minor_units))))
    text = sa.cast(rounded, sa.Text)
    return sa.case((sa.and_(value < 0, rounded == 0), sa.literal("-") + text), else_=text)


def _csv_field_sql(value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A field as Python's `csv.writer` (QUOTE_MINIMAL, `\r\n` lines) writes it."""
    quoted = sa.literal('"') + sa.func.replace(value, '"', '""') + sa.literal('"')
    return sa.case((value.regexp_match('[,"\r\n]'), quoted), else_=value)


class PaymentBalance:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, s: Selection, limit: int | None) -> Sequence[Any]:
        """Up to `limit` rows of the report after `s.after` in report order (customer_id,
        name, opening, goods, payments, closing) in one statement, each with the totals of
        the whole report (t_opening, t_goods, t_payments); one row with the totals and no
        customer (customer_id None) when the page is empty."""
        report, rows_q, totals_q = _queries(s)
        key = report.c.name_key if s.sort == "name" else report.c.closing
        page_q = rows_q.order_by(key, report.c.customer_id)
        if limit is not None:
            page_q = page_q.limit(limit)
        page = _named(page_q.subquery("page"), "named_page")
        page_key = page.c.name_key if s.sort == "name" else page.c.closing
        stmt = (
            sa.select(totals_q, page)
            .select_from(totals_q.outerjoin(page, sa.true()))
            .order_by(page_key, page.c.customer_id)
        )
        return (await self.session.execute(stmt)).all()

    async def rendered(self, s: Selection, minor_units: int, fmt: str) -> Any:
        """The whole report after `s.after` rendered by PostgreSQL in one `string_agg` pass
        (`body`: the compact JSON objects joined by "," or, with `fmt` "csv", the CSV lines)
        with the totals (t_opening, t_goods, t_payments)."""
        _, rows_q, totals_q = _queries(s)
        rows = _named(rows_q.subquery("rows"), "named_rows")
        key = rows.c.name_key if s.sort == "name" else rows.c.closing
        money = {
            f: _money_sql(rows.c[f], minor_units)
            for f in ("opening", "goods", "payments", "closing")
        }
        cid = sa.cast(rows.c.customer_id, sa.Text)
        if fmt == "csv":
            line = sa.func.concat(
                cid,
                ",",
                _csv_field_sql(rows.c.name),
                ",",
                money["opening"],
                ",",
                money["goods"],
                ",",
                money["payments"],
                ",",
                money["closing"],
                "\r\n",
            )
            sep = ""
        else:
            line = sa.func.concat(
                '{"customer_id":"',
                cid,
                '","name":',
                sa.cast(sa.func.to_json(rows.c.name), sa.Text),
                ',"opening":"',
                money["opening"],
                '","goods":"',
                money["goods"],
                '","payments":"',
                money["payments"],
                '","closing":"',
                money["closing"],
                '"}',
            )
            sep = ","
        agg = (
            sa.select(
                sa.func.coalesce(
                    sa.func.string_agg(
                        line, aggregate_order_by(sa.literal(sep), key, rows.c.customer_id)
                    ),
                    "",
                ).label("body")
            )
            .select_from(rows)
            .scalar_subquery()
        )
        return (await self.session.execute(sa.select(totals_q, agg.label("body")))).one()

    # ------------------------------------------------------------------- all stores, a page

    async def page_ids(self, s: Selection, limit: int) -> list[UUID]:
        """The ids of the first `limit` customers of the all-stores report after `s.after`:
        every customer's closing, or a walk of the names, from `credit_ledger`."""
        if s.sort == "name":
            after_name = None if s.after is None else (str(s.after[0]), s.after[1])
            page_q = credit_ledger.by_name(s.chain_id, s.upper, s.vip_only, after_name, limit)
        else:
            after_closing = None if s.after is None else (Decimal(s.after[0]), s.after[1])
            page_q = credit_ledger.by_closing(s.chain_id, s.upper, s.vip_only, after_closing, limit)
        return list((await self.session.execute(page_q)).scalars())

    async def figures(
        self, chain_id: UUID, lower: datetime | None, upper: datetime | None, ids: list[UUID]
    ) -> dict[UUID, Any]:
        """The report's rows of these customers (all stores), by customer id."""
        return {
            r.customer_id: r
            for r in await self.session.execute(
                credit_ledger.named_period_sums(chain_id, lower, upper, ids)
            )
        }

    async def totals(self, s: Selection) -> Any:
        """(t_opening, t_goods, t_payments) of the whole all-stores report."""
        return (
            await self.session.execute(
                credit_ledger.period_totals(s.chain_id, s.lower, s.upper, s.vip_only)
            )
        ).one()
