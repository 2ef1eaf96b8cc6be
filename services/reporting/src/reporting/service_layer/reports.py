"""Report queries: read the read models and answer exactly the public JSON of api.md.

Every function takes the chain id first and never returns another chain's rows. Aggregation
happens in SQL; the arithmetic that defines a report (closing, buckets, running balances) is
`reporting.domain.model`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import credit_ledger, open_debt
from reporting.adapters import tables as t
from reporting.domain.model import (
    AGING_BUCKETS,
    ZERO,
    Balances,
    OwedLine,
    PaymentBalanceRow,
    Period,
    StatementEntry,
    build_aging,
    days_past_due,
    local_today,
    money_str,
    running,
    unpaid_item,
)
from servicekit.paging import BadCursor, decode_cursor, encode_cursor, page_by_offset

#: a line's sale: sale ids are unique within their chain only
_same_sale = sa.and_(
    t.sales.c.chain_id == t.sale_lines.c.chain_id, t.sales.c.sale_id == t.sale_lines.c.sale_id
)

BONUS_FIELDS: tuple[str, ...] = ("accrued", "spent", "cancelled", "reversed", "restored", "expired")

CSV_HEADERS: dict[str, tuple[str, ...]] = {
    "payment-balance": ("customer_id", "name", "opening", "goods", "payments", "closing"),
    "unpaid-goods": (
        "customer_id",
        "customer_name",
        "sale_id",
        "sold_at",
        "due_date",
        "days_overdue",
        "item",
        "barcode",
        "quantity",
        "amount_owed",
    ),
    "aging": ("customer_id", "name", *AGING_BUCKETS, "total"),
    # `name` last: it came later, and a CSV read by position keeps its columns
    "bonus-statistics": ("customer_id", *BONUS_FIELDS, "balance", "name"),
    "statement": (
        "at",
        "kind",
        "sale_id",
        "payment_id",
        "description",
        "debt_change",
        "advance_change",
        "bonus_change",
        "debt",
        "advance",
        "bonus_balance",
    ),
}


class NotFound(Exception):
    """The object does not exist in this chain (or belongs to another one)."""


@dataclass(frozen=True)
class ChainInfo:
    timezone: str
    minor_units: int
    credit_mode: str


@dataclass(frozen=True)
class Filters:
    period: Period = Period(None, None)
    store_id: UUID | None = None
    vip_only: bool = False


async def chain_info(session: AsyncSession, chain_id: UUID) -> ChainInfo:
    row = (
        await session.execute(
            sa.select(t.chains.c.timezone, t.chains.c.minor_units, t.chains.c.credit_mode).where(
                t.chains.c.chain_id == chain_id
            )
        )
    ).first()
    if row is None:  # events of a chain whose registration is not consumed yet
        return ChainInfo("UTC", 2, "balance")
    return ChainInfo(row.timezone, row.minor_units, row.credit_mode)


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _ts(value: datetime, tz: str) -> str:
    return value.astimezone(ZoneInfo(tz)).isoformat()


def _qty(value: Decimal) -> str:
    normalized = value.normalize()
    return format(normalized, "f")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------- balances


async def _check_customer_chain(session: AsyncSession, chain_id: UUID, customer_id: UUID) -> None:
    owner = await session.scalar(
        sa.select(t.customers.c.chain_id).where(t.customers.c.customer_id == customer_id)
    )
    if owner is None:
        owner = await session.scalar(
            sa.select(t.balances.c.chain_id).where(t.balances.c.customer_id == customer_id)
        )
    if owner is not None and owner != chain_id:
        raise NotFound(str(customer_id))


async def balances_of(
    session: AsyncSession,
    chain_id: UUID,
    customer_ids: Sequence[UUID],
    *,
    now: datetime | None = None,
    strict: bool = True,
) -> dict[UUID, dict[str, Any]]:
    """`{"debt", "advance", "bonus_balance", "overdue"}` per customer; zeros when unknown."""
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    ids = list(dict.fromkeys(customer_ids))
    if strict:
        for cid in ids:
            await _check_customer_chain(session, chain_id, cid)
    rows = {
        r.customer_id: r
        for r in (
            await session.execute(
                sa.select(t.balances).where(
                    t.balances.c.chain_id == chain_id, t.balances.c.customer_id.in_(ids)
                )
            )
        )
    }
    overdue = set(
        (
            await session.execute(
                sa.select(t.sale_lines.c.customer_id)
                .join(t.sales, _same_sale)
                .where(
                    t.sale_lines.c.chain_id == chain_id,
                    t.sale_lines.c.customer_id.in_(ids),
                    t.sale_lines.c.owed > 0,
                    t.sales.c.due_date < today,
                )
                .distinct()
            )
        ).scalars()
    )
    mu = info.minor_units
    out: dict[UUID, dict[str, Any]] = {}
    for cid in ids:
        row = rows.get(cid)
        out[cid] = {
            "debt": money_str(row.debt if row else ZERO, mu),
            "advance": money_str(row.advance if row else ZERO, mu),
            "bonus_balance": money_str(row.bonus_balance if row else ZERO, mu),
            "overdue": cid in overdue,
        }
    return out


async def open_sales(
    session: AsyncSession,
    chain_id: UUID,
    customer_id: UUID,
    mode: str | None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The card lookup's `open_sales`: none in balance mode, `lines` only in per_item."""
    await _check_customer_chain(session, chain_id, customer_id)
    info = await chain_info(session, chain_id)
    mode = mode or info.credit_mode
    if mode == "balance":
        return {"open_sales": []}
    today = local_today(info.timezone, _now(now))
    lines = (
        await session.execute(
            sa.select(
                t.sales.c.sale_id,
                t.sales.c.sold_at,
                t.sales.c.due_date,
                t.sale_lines.c.line_no,
                t.sale_lines.c.name,
                t.sale_lines.c.barcode,
                t.sale_lines.c.owed,
            )
            .join(t.sales, _same_sale)
            .where(
                t.sale_lines.c.chain_id == chain_id,
                t.sale_lines.c.customer_id == customer_id,
                t.sale_lines.c.owed > 0,
            )
            .order_by(t.sales.c.sold_at, t.sales.c.sale_id, t.sale_lines.c.line_no)
        )
    ).all()
    mu = info.minor_units
    result: dict[UUID, dict[str, Any]] = {}
    owed: dict[UUID, Decimal] = {}
    for line in lines:
        sale = result.get(line.sale_id)
        if sale is None:
            sale = result[line.sale_id] = {
                "sale_id": str(line.sale_id),
                "sold_at": _ts(line.sold_at, info.timezone),
                "due_date": line.due_date.isoformat() if line.due_date else None,
                "amount_owed": "",
                "overdue": line.due_date is not None and line.due_date < today,
                "lines": [],
            }
            owed[line.sale_id] = ZERO
        owed[line.sale_id] += line.owed
        if mode == "per_item":
            sale["lines"].append(
                {
                    "line_no": line.line_no,
                    "name": line.name,
                    "barcode": line.barcode,
                    "amount_owed": money_str(line.owed, mu),
                }
            )
    for sale_id, sale in result.items():
        sale["amount_owed"] = money_str(owed[sale_id], mu)
    return {"open_sales": list(result.values())}


# --------------------------------------------------------------------------- payment-balance


@dataclass(frozen=True)
class PaymentBalancePage:
    rows: list[PaymentBalanceRow]
    totals: dict[str, Decimal]
    info: ChainInfo
    next: str | None


def _pb_cursor(sort: str, row: Any) -> str:
    key = row.name_key if sort == "name" else str(row.closing)
    return encode_cursor({"s": sort, "k": key, "i": str(row.customer_id)})


def _pb_after(sort: str, cursor: str) -> tuple[str | Decimal, UUID]:
    """The (sort key, customer id) a keyset cursor continues after."""
    position = decode_cursor(cursor)
    key, cid = position.get("k"), position.get("i")
    if position.get("s") != sort or not isinstance(key, str) or not isinstance(cid, str):
        raise BadCursor("invalid cursor")
    try:
        return (key if sort == "name" else Decimal(key)), UUID(cid)
    except (ValueError, ArithmeticError) as exc:
        raise BadCursor("invalid cursor") from exc


def _pb_sums_of_movements(
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


def _pb_queries(
    chain_id: UUID,
    info: ChainInfo,
    filters: Filters,
    sort: str,
    cursor: str | None,
) -> tuple[Any, sa.Select[Any], sa.Subquery]:
    """The report CTE (one row per customer), its rows in report order after `cursor`, and
    the totals over the whole report (whatever the page)."""
    lower, upper = filters.period.bounds(info.timezone)
    c = t.customers
    if filters.store_id is None:
        # every store: from the per-customer sums the projection keeps (rm_credit_*), not
        # from every movement of the chain
        s = credit_ledger.period_sums(chain_id, lower, upper).subquery("sums")
    else:
        s = _pb_sums_of_movements(chain_id, lower, upper, filters.store_id)
    sums_cols = [
        s.c.customer_id,
        s.c.opening,
        s.c.goods,
        s.c.payments,
        (s.c.opening + s.c.payments - s.c.goods).label("closing"),
    ]
    if not (filters.vip_only or sort == "name"):
        # the customers' names only for the rows that are read (`_pb_named`): joining 100,000
        # names before cutting the page cost more than the sums
        report_q = sa.select(*sums_cols)
    else:
        report_q = sa.select(
            *sums_cols,
            sa.func.coalesce(c.c.name, "").label("name"),
            sa.func.coalesce(c.c.name_key, "").collate("C").label("name_key"),
        ).select_from(s.outerjoin(c, c.c.customer_id == s.c.customer_id))
    if filters.vip_only:
        report_q = report_q.where(c.c.vip.is_(True))
    report = report_q.cte("report").prefix_with("MATERIALIZED")
    key = report.c.name_key if sort == "name" else report.c.closing
    rows_q = sa.select(report)
    if cursor:
        after_key, after_id = _pb_after(sort, cursor)
        after: sa.ColumnElement[Any] = (
            sa.literal(after_key, sa.Text).collate("C")
            if sort == "name"
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


def _pb_named(rows: sa.Subquery, name: str) -> sa.Subquery:
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


def _pb_totals(opening: Decimal, goods: Decimal, payments: Decimal) -> dict[str, Decimal]:
    return {
        "opening": opening,
        "goods": goods,
        "payments": payments,
        "closing": opening + payments - goods,
    }


async def payment_balance_page(
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    *,
    sort: str = "closing",
    limit: int | None = None,
    cursor: str | None = None,
) -> PaymentBalancePage:
    """Payment-Balance sorted, paged (keyset cursor) and totalled in one SQL statement.

    The same numbers as `reporting.domain.model.build_payment_balance`, sorted as
    `sort_payment_balance` (closing or casefolded name, then customer id; `name_key` compared
    in code-point order), totals over every row of the report whatever the page. Only the page
    reaches Python: the per-customer sums are one pass over the chain's `rm_credit_totals` and
    two month starts' `rm_credit_months` rows (`credit_ledger`), or for one store over
    `rm_movements_pb_store` (index-only).
    """
    info = await chain_info(session, chain_id)
    if filters.store_id is None and limit is not None:
        return await _pb_page_from_ledger(session, chain_id, info, filters, sort, limit, cursor)
    report, rows_q, totals_q = _pb_queries(chain_id, info, filters, sort, cursor)
    key = report.c.name_key if sort == "name" else report.c.closing
    page_q = rows_q.order_by(key, report.c.customer_id)
    if limit is not None:
        page_q = page_q.limit(limit + 1)
    page = _pb_named(page_q.subquery("page"), "named_page")
    page_key = page.c.name_key if sort == "name" else page.c.closing
    stmt = (
        sa.select(totals_q, page)
        .select_from(totals_q.outerjoin(page, sa.true()))
        .order_by(page_key, page.c.customer_id)
    )
    result = (await session.execute(stmt)).all()
    found = [r for r in result if r.customer_id is not None]
    nxt = None
    if limit is not None and len(found) > limit:
        found = found[:limit]
        nxt = _pb_cursor(sort, found[-1])
    rows = [PaymentBalanceRow(r.customer_id, r.name, r.opening, r.goods, r.payments) for r in found]
    first = result[0]
    totals = _pb_totals(first.t_opening, first.t_goods, first.t_payments)
    return PaymentBalancePage(rows, totals, info, nxt)


async def _pb_page_from_ledger(
    session: AsyncSession,
    chain_id: UUID,
    info: ChainInfo,
    filters: Filters,
    sort: str,
    limit: int,
    cursor: str | None,
) -> PaymentBalancePage:
    """One page of the all-stores report in three small statements instead of one over the
    whole chain: the page's customers in report order (every customer's closing, or name, and
    nothing else), the page's figures for those customers only, and the totals from chain-wide
    sums (`credit_ledger`). The same rows, order, cursors and totals as `_pb_queries`."""
    lower, upper = filters.period.bounds(info.timezone)
    if sort == "name":
        after_name = None
        if cursor:
            after_key, after_id = _pb_after(sort, cursor)
            after_name = (str(after_key), after_id)
        page_q = credit_ledger.by_name(chain_id, upper, filters.vip_only, after_name, limit + 1)
    else:
        after_closing = None
        if cursor:
            after_key, after_id = _pb_after(sort, cursor)
            after_closing = (Decimal(after_key), after_id)
        page_q = credit_ledger.by_closing(
            chain_id, upper, filters.vip_only, after_closing, limit + 1
        )
    ids = list((await session.execute(page_q)).scalars())
    figures: dict[UUID, Any] = {}
    if ids:
        figures = {
            r.customer_id: r
            for r in await session.execute(
                credit_ledger.named_period_sums(chain_id, lower, upper, ids)
            )
        }
    totals_row = (
        await session.execute(credit_ledger.period_totals(chain_id, lower, upper, filters.vip_only))
    ).one()
    found = [figures[i] for i in ids]
    nxt = None
    if len(found) > limit:
        found = found[:limit]
        nxt = _pb_cursor(sort, found[-1])
    rows = [PaymentBalanceRow(r.customer_id, r.name, r.opening, r.goods, r.payments) for r in found]
    totals = _pb_totals(
        Decimal(totals_row.t_opening), Decimal(totals_row.t_goods), Decimal(totals_row.t_payments)
    )
    return PaymentBalancePage(rows, totals, info, nxt)


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


@dataclass(frozen=True)
class RenderedPaymentBalance:
    body: str  # JSON rows joined by "," (no brackets), or CSV lines with their header
    totals: dict[str, Decimal]
    info: ChainInfo


async def payment_balance_rendered(
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    *,
    sort: str = "closing",
    fmt: str = "json",
    cursor: str | None = None,
) -> RenderedPaymentBalance:
    """The whole (unpaged) report rendered by PostgreSQL: exactly the JSON objects of
    `payment_balance_json` (compact) or the CSV lines of `to_csv`, in report order, as one text.

    A chain-wide answer has ~100,000 rows; turning them into `Decimal`s and strings in Python
    costs seconds, while PostgreSQL formats them in one `string_agg` pass (docs/benchmarks.md).
    """
    info = await chain_info(session, chain_id)
    _, rows_q, totals_q = _pb_queries(chain_id, info, filters, sort, cursor)
    mu = info.minor_units
    rows = _pb_named(rows_q.subquery("rows"), "named_rows")
    key = rows.c.name_key if sort == "name" else rows.c.closing
    money = {f: _money_sql(rows.c[f], mu) for f in ("opening", "goods", "payments", "closing")}
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
    result = (await session.execute(sa.select(totals_q, agg.label("body")))).one()
    body: str = result.body
    if fmt == "csv":
        body = ",".join(CSV_HEADERS["payment-balance"]) + "\r\n" + body
    totals = _pb_totals(result.t_opening, result.t_goods, result.t_payments)
    return RenderedPaymentBalance(body, totals, info)


async def payment_balance(
    session: AsyncSession, chain_id: UUID, filters: Filters, *, sort: str = "closing"
) -> tuple[list[PaymentBalanceRow], dict[str, Decimal], ChainInfo]:
    """Every row of the report, sorted, with its totals."""
    page = await payment_balance_page(session, chain_id, filters, sort=sort)
    return page.rows, page.totals, page.info


def payment_balance_json(row: PaymentBalanceRow, mu: int) -> dict[str, Any]:
    return {
        "customer_id": str(row.customer_id),
        "name": row.name,
        "opening": money_str(row.opening, mu),
        "goods": money_str(row.goods, mu),
        "payments": money_str(row.payments, mu),
        "closing": money_str(row.closing, mu),
    }


# --------------------------------------------------------------------------- unpaid goods, aging


def _owed_lines_query(chain_id: UUID, filters: Filters) -> sa.Select[Any]:
    stmt = (
        sa.select(
            t.sale_lines.c.customer_id,
            sa.func.coalesce(t.customers.c.name, "").label("customer_name"),
            t.sale_lines.c.sale_id,
            t.sales.c.sold_at,
            t.sales.c.due_date,
            t.sale_lines.c.line_no,
            t.sale_lines.c.name,
            t.sale_lines.c.barcode,
            (t.sale_lines.c.quantity - t.sale_lines.c.returned_quantity).label("quantity"),
            t.sale_lines.c.owed,
        )
        .select_from(
            t.sale_lines.join(t.sales, _same_sale).outerjoin(
                t.customers, t.customers.c.customer_id == t.sale_lines.c.customer_id
            )
        )
        .where(t.sale_lines.c.chain_id == chain_id, t.sale_lines.c.owed > 0)
        .order_by(
            sa.func.coalesce(t.customers.c.name, ""),
            t.sale_lines.c.customer_id,
            t.sales.c.sold_at,
            t.sale_lines.c.sale_id,
            t.sale_lines.c.line_no,
        )
    )
    if filters.store_id is not None:
        stmt = stmt.where(t.sales.c.store_id == filters.store_id)
    if filters.vip_only:
        stmt = stmt.where(t.customers.c.vip.is_(True))
    return stmt


async def unpaid_goods(
    session: AsyncSession, chain_id: UUID, filters: Filters, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    mu = info.minor_units
    return [
        {
            "customer_id": str(r.customer_id),
            "customer_name": r.customer_name,
            "sale_id": str(r.sale_id),
            "sold_at": _ts(r.sold_at, info.timezone),
            "due_date": r.due_date.isoformat() if r.due_date else None,
            "days_overdue": days_past_due(r.due_date, today),
            "item": unpaid_item(r.name, r.barcode),
            "barcode": r.barcode,
            "quantity": _qty(r.quantity),
            "amount_owed": money_str(r.owed, mu),
        }
        for r in await session.execute(_owed_lines_query(chain_id, filters))
    ]


async def aging(
    session: AsyncSession, chain_id: UUID, filters: Filters, *, now: datetime | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    mu = info.minor_units
    lines = [
        OwedLine(r.customer_id, r.customer_name, r.due_date, r.owed)
        for r in await session.execute(_owed_lines_query(chain_id, filters))
    ]
    rows, totals = build_aging(lines, today)
    out = [
        {
            "customer_id": str(row.customer_id),
            "name": row.name,
            **{b: money_str(row.buckets[b], mu) for b in AGING_BUCKETS},
            "total": money_str(row.total, mu),
        }
        for row in rows
    ]
    return out, {k: money_str(v, mu) for k, v in totals.items()}


# --------------------------------------------------------------------------- statement

# Movements of one moment: the credit side first, then the bonus movements in the order the
# bonus ledger applies them (due expiries, spend, accrual, restore, reverse), so that the
# running bonus balance of a mixed payment never shows an amount the customer did not have
# and the statement reads the same every time (message ids are random).
_KIND_ORDER = sa.case(
    (t.movements.c.kind == "sale", 0),
    (t.movements.c.kind == "bonus_expired", 2),
    (t.movements.c.kind == "bonus_spent", 3),
    (t.movements.c.kind == "bonus_accrued", 4),
    (t.movements.c.kind == "bonus_restored", 5),
    (t.movements.c.kind == "bonus_reversed", 6),
    (t.movements.c.kind.like("bonus_%"), 7),
    else_=1,
)


async def statement(
    session: AsyncSession,
    chain_id: UUID,
    customer_id: UUID,
    period: Period,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The customer's statement; returns the JSON body and its entries (the CSV rows)."""
    await _check_customer_chain(session, chain_id, customer_id)
    info = await chain_info(session, chain_id)
    mu = info.minor_units
    lower, upper = period.bounds(info.timezone)
    m = t.movements
    opening_q = sa.select(
        sa.func.coalesce(sa.func.sum(m.c.debt_change), 0),
        sa.func.coalesce(sa.func.sum(m.c.advance_change), 0),
        sa.func.coalesce(sa.func.sum(m.c.bonus_change), 0),
    ).where(m.c.chain_id == chain_id, m.c.customer_id == customer_id)
    if lower is not None:
        opening_row = (await session.execute(opening_q.where(m.c.at < lower))).one()
        opening = Balances(*(Decimal(v) for v in opening_row))
    else:
        opening = Balances(ZERO, ZERO, ZERO)
    q = (
        sa.select(m)
        .where(m.c.chain_id == chain_id, m.c.customer_id == customer_id)
        .order_by(m.c.at, _KIND_ORDER, m.c.message_id, m.c.seq)
    )
    if lower is not None:
        q = q.where(m.c.at >= lower)
    if upper is not None:
        q = q.where(m.c.at < upper)
    entries = [
        StatementEntry(
            at=r.at,
            kind=r.kind,
            sale_id=r.sale_id,
            payment_id=r.payment_id,
            description=r.description,
            debt_change=r.debt_change,
            advance_change=r.advance_change,
            bonus_change=r.bonus_change,
        )
        for r in await session.execute(q)
    ]
    with_balances, closing = running(opening, entries)
    rows = [
        {
            "at": _ts(e.at, info.timezone),
            "kind": e.kind,
            "sale_id": _str(e.sale_id),
            "payment_id": _str(e.payment_id),
            "description": e.description,
            "debt_change": money_str(e.debt_change, mu),
            "advance_change": money_str(e.advance_change, mu),
            "bonus_change": money_str(e.bonus_change, mu),
            "debt": money_str(b.debt, mu),
            "advance": money_str(b.advance, mu),
            "bonus_balance": money_str(b.bonus_balance, mu),
        }
        for e, b in with_balances
    ]
    page, nxt = page_by_offset(rows, limit=limit, cursor=cursor)

    def _bal(b: Balances) -> dict[str, str]:
        return {
            "debt": money_str(b.debt, mu),
            "advance": money_str(b.advance, mu),
            "bonus_balance": money_str(b.bonus_balance, mu),
        }

    body: dict[str, Any] = {
        "customer_id": str(customer_id),
        "opening": _bal(opening),
        "entries": list(page),
        "closing": _bal(closing),
    }
    if limit is not None:
        body["next"] = nxt
    return body, list(page)


# --------------------------------------------------------------------------- bonus statistics


async def bonus_statistics(
    session: AsyncSession, chain_id: UUID, filters: Filters
) -> dict[str, Any]:
    info = await chain_info(session, chain_id)
    mu = info.minor_units
    lower, upper = filters.period.bounds(info.timezone)
    m = t.movements
    in_period = [m.c.chain_id == chain_id, m.c.bonus_kind.is_not(None)]
    if lower is not None:
        in_period.append(m.c.at >= lower)
    if upper is not None:
        in_period.append(m.c.at < upper)
    if filters.store_id is not None:
        in_period.append(m.c.store_id == filters.store_id)

    def sums() -> list[Any]:
        return [
            sa.func.coalesce(
                sa.func.sum(sa.case((m.c.bonus_kind == kind, m.c.bonus_amount), else_=0)), 0
            ).label(kind)
            for kind in BONUS_FIELDS
        ]

    def fields(row: Any) -> dict[str, str]:
        return {kind: money_str(getattr(row, kind), mu) for kind in BONUS_FIELDS}

    totals = (await session.execute(sa.select(*sums()).where(*in_period))).one()
    by_store = (
        await session.execute(
            sa.select(m.c.store_id, *sums())
            .where(*in_period)
            .group_by(m.c.store_id)
            .order_by(m.c.store_id)
        )
    ).all()
    # balances at the end of the period, over every movement up to then
    upto = [m.c.chain_id == chain_id, m.c.bonus_kind.is_not(None)]
    if upper is not None:
        upto.append(m.c.at < upper)
    balances = {
        r.customer_id: r.balance
        for r in await session.execute(
            sa.select(m.c.customer_id, sa.func.sum(m.c.bonus_change).label("balance"))
            .where(*upto)
            .group_by(m.c.customer_id)
        )
    }
    by_customer_rows = {
        r.customer_id: r
        for r in await session.execute(
            sa.select(m.c.customer_id, *sums()).where(*in_period).group_by(m.c.customer_id)
        )
    }
    customer_ids = sorted(
        set(by_customer_rows) | {cid for cid, bal in balances.items() if bal != 0}, key=str
    )
    if filters.vip_only or filters.store_id is not None:
        if filters.vip_only:
            vip = set(
                (
                    await session.execute(
                        sa.select(t.customers.c.customer_id).where(
                            t.customers.c.chain_id == chain_id, t.customers.c.vip.is_(True)
                        )
                    )
                ).scalars()
            )
            customer_ids = [c for c in customer_ids if c in vip]
        if filters.store_id is not None:
            customer_ids = [c for c in customer_ids if c in by_customer_rows]
    zero = dict.fromkeys(BONUS_FIELDS, money_str(ZERO, mu))
    names = {
        r.customer_id: r.name
        for r in await session.execute(
            sa.select(t.customers.c.customer_id, t.customers.c.name).where(
                t.customers.c.chain_id == chain_id
            )
        )
    }
    store_names = {
        r.store_id: r.name
        for r in await session.execute(
            sa.select(t.stores.c.store_id, t.stores.c.name).where(t.stores.c.chain_id == chain_id)
        )
    }
    by_customer = [
        {
            "customer_id": str(cid),
            "name": names.get(cid, ""),
            **(fields(by_customer_rows[cid]) if cid in by_customer_rows else zero),
            "balance": money_str(balances.get(cid, ZERO), mu),
        }
        for cid in customer_ids
    ]
    return {
        **fields(totals),
        "outstanding": money_str(sum(balances.values(), ZERO), mu),
        "by_store": [
            {"store_id": _str(r.store_id), "name": store_names.get(r.store_id), **fields(r)}
            for r in by_store
        ],
        "by_customer": by_customer,
    }


def parse_date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


# --------------------------------------------------------------------------- pages in SQL
#
# The back office asks for one page at a time (`limit`). On a large chain (100,000 customers,
# ~300,000 unpaid lines, ~2,000,000 movements) building the whole report in Python and then
# cutting a page out of it took seconds; these do the grouping, ordering, totals and the page
# in PostgreSQL and bring only the page's rows into Python. Same rows, same order and same
# totals as the whole reports above (tests/integration/test_report_pages.py holds them to it),
# with keyset cursors.


def _page_after(cursor: str | None, kind: str) -> dict[str, Any] | None:
    if not cursor:
        return None
    position = decode_cursor(cursor)
    if position.get("r") != kind:
        raise BadCursor("invalid cursor")
    return position


def _cursor_uuid(position: dict[str, Any], key: str) -> UUID:
    try:
        return UUID(str(position[key]))
    except (KeyError, ValueError) as exc:
        raise BadCursor("invalid cursor") from exc


def _cursor_text(position: dict[str, Any], key: str) -> str:
    value = position.get(key)
    if not isinstance(value, str):
        raise BadCursor("invalid cursor")
    return value


@dataclass(frozen=True)
class ReportPage:
    rows: list[dict[str, Any]]
    next: str | None
    totals: dict[str, str] | None = None
    #: bonus statistics: the movement sums, `outstanding` and `by_store` besides the rows
    rest: dict[str, Any] | None = None


async def unpaid_goods_page(
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    *,
    limit: int,
    cursor: str | None = None,
    now: datetime | None = None,
) -> ReportPage:
    """One page of `unpaid_goods` (the same order), after `cursor`."""
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    mu = info.minor_units
    stmt = _owed_lines_query(chain_id, filters)
    name = sa.func.coalesce(t.customers.c.name, "")
    position = _page_after(cursor, "unpaid")
    # the customers the page can reach (the cursor's own, whose lines may go on, and the next
    # `limit + 1`), from rm_open_debt in name order: the lines are read for them only
    from_ = None if position is None else (_cursor_text(position, "n"), _cursor_uuid(position, "c"))
    candidates = open_debt.page_customers_query(
        chain_id, filters.store_id, filters.vip_only, from_, limit + 2
    )
    stmt = stmt.where(t.sale_lines.c.customer_id.in_(candidates.scalar_subquery()))
    if position is not None:
        try:
            sold_at = datetime.fromisoformat(_cursor_text(position, "t"))
            line_no = int(position["l"])
        except (KeyError, ValueError, TypeError) as exc:
            raise BadCursor("invalid cursor") from exc
        stmt = stmt.where(
            sa.tuple_(
                name,
                t.sale_lines.c.customer_id,
                t.sales.c.sold_at,
                t.sale_lines.c.sale_id,
                t.sale_lines.c.line_no,
            )
            > sa.tuple_(
                sa.literal(_cursor_text(position, "n"), sa.Text),
                sa.literal(_cursor_uuid(position, "c"), t.sale_lines.c.customer_id.type),
                sa.literal(sold_at, t.sales.c.sold_at.type),
                sa.literal(_cursor_uuid(position, "s"), t.sale_lines.c.sale_id.type),
                sa.literal(line_no, sa.Integer),
            )
        )
    found = (await session.execute(stmt.limit(limit + 1))).all()
    nxt = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        nxt = encode_cursor(
            {
                "r": "unpaid",
                "n": last.customer_name,
                "c": str(last.customer_id),
                "t": last.sold_at.isoformat(),
                "s": str(last.sale_id),
                "l": last.line_no,
            }
        )
    rows = [
        {
            "customer_id": str(r.customer_id),
            "customer_name": r.customer_name,
            "sale_id": str(r.sale_id),
            "sold_at": _ts(r.sold_at, info.timezone),
            "due_date": r.due_date.isoformat() if r.due_date else None,
            "days_overdue": days_past_due(r.due_date, today),
            "item": unpaid_item(r.name, r.barcode),
            "barcode": r.barcode,
            "quantity": _qty(r.quantity),
            "amount_owed": money_str(r.owed, mu),
        }
        for r in found
    ]
    return ReportPage(rows, nxt)


async def aging_page(
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    *,
    limit: int,
    cursor: str | None = None,
    now: datetime | None = None,
) -> ReportPage:
    """One page of `aging` (customers by name, then id) and the totals of the whole report,
    from `rm_open_debt`: the page's customers' rows and the totals per due date."""
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    mu = info.minor_units
    position = _page_after(cursor, "aging")
    after = None if position is None else (_cursor_text(position, "n"), _cursor_uuid(position, "c"))
    found = (
        await session.execute(
            open_debt.aging_rows_query(
                chain_id, filters.store_id, filters.vip_only, today, after, limit + 1
            )
        )
    ).all()
    totals_row = (
        await session.execute(
            open_debt.aging_totals_query(chain_id, filters.store_id, filters.vip_only, today)
        )
    ).one()
    nxt = None
    if len(found) > limit:
        found = found[:limit]
        nxt = encode_cursor({"r": "aging", "n": found[-1].name, "c": str(found[-1].customer_id)})
    rows = [
        {
            "customer_id": str(r.customer_id),
            "name": r.name,
            **{b: money_str(getattr(r, b), mu) for b in AGING_BUCKETS},
            "total": money_str(r.total, mu),
        }
        for r in found
    ]
    totals = {b: money_str(getattr(totals_row, b), mu) for b in (*AGING_BUCKETS, "total")}
    return ReportPage(rows, nxt, totals)


async def bonus_statistics_page(
    session: AsyncSession,
    chain_id: UUID,
    filters: Filters,
    *,
    limit: int,
    cursor: str | None = None,
) -> ReportPage:
    """`bonus_statistics` with one page of `by_customer` (by customer id, as there) after
    `cursor`; the movement sums, `outstanding` and `by_store` are the whole report's."""
    info = await chain_info(session, chain_id)
    mu = info.minor_units
    lower, upper = filters.period.bounds(info.timezone)
    m = t.movements
    conds = [m.c.chain_id == chain_id, m.c.bonus_kind.is_not(None)]
    if upper is not None:
        conds.append(m.c.at < upper)
    in_period: list[sa.ColumnElement[bool]] = [sa.true()]
    if lower is not None:
        in_period.append(m.c.at >= lower)
    if filters.store_id is not None:
        in_period.append(m.c.store_id == filters.store_id)
    moved = sa.and_(*in_period)

    def sums(where: sa.ColumnElement[Any] | None = None) -> list[Any]:
        return [
            sa.func.coalesce(
                sa.func.sum(m.c.bonus_amount).filter(
                    sa.and_(m.c.bonus_kind == kind, where if where is not None else sa.true())
                ),
                ZERO,
            ).label(kind)
            for kind in BONUS_FIELDS
        ]

    def fields(row: Any) -> dict[str, str]:
        return {kind: money_str(getattr(row, kind), mu) for kind in BONUS_FIELDS}

    in_period_conds = [*conds, *in_period]
    totals = (await session.execute(sa.select(*sums()).where(*in_period_conds))).one()
    by_store = (
        await session.execute(
            sa.select(m.c.store_id, t.stores.c.name.label("store_name"), *sums())
            .select_from(m.outerjoin(t.stores, t.stores.c.store_id == m.c.store_id))
            .where(*in_period_conds)
            .group_by(m.c.store_id, t.stores.c.name)
            .order_by(m.c.store_id)
        )
    ).all()
    # the page's customers: every customer's balance at the end of the period from the bonus
    # ledger (`credit_ledger.bonus_balances`) and who moved in the period, in id order
    c = t.customers
    position = _page_after(cursor, "bonus")
    ids = list(
        (
            await session.execute(
                credit_ledger.bonus_page(
                    chain_id,
                    upper,
                    sa.select(m.c.customer_id).where(*conds, moved),
                    balance_counts=filters.store_id is None,
                    vip_only=filters.vip_only,
                    after=None if position is None else _cursor_uuid(position, "c"),
                    limit=limit + 1,
                )
            )
        ).scalars()
    )
    # their movements of the period and balance at its end, summed from their movements
    per_customer = (
        sa.select(
            m.c.customer_id,
            *sums(moved),
            sa.func.coalesce(sa.func.sum(m.c.bonus_change), ZERO).label("balance"),
        )
        .where(*conds, m.c.customer_id.in_(ids))
        .group_by(m.c.customer_id)
        .subquery("per_customer")
    )
    result = (
        (
            await session.execute(
                sa.select(per_customer, sa.func.coalesce(c.c.name, "").label("name"))
                .select_from(
                    per_customer.outerjoin(c, c.c.customer_id == per_customer.c.customer_id)
                )
                .order_by(per_customer.c.customer_id)
            )
        ).all()
        if ids
        else []
    )
    outstanding = (
        await session.execute(credit_ledger.bonus_outstanding(chain_id, upper))
    ).scalar_one()
    found = list(result)
    nxt = None
    if len(found) > limit:
        found = found[:limit]
        nxt = encode_cursor({"r": "bonus", "c": str(found[-1].customer_id)})
    rows = [
        {
            "customer_id": str(r.customer_id),
            "name": r.name,
            **fields(r),
            "balance": money_str(r.balance, mu),
        }
        for r in found
    ]
    rest = {
        **fields(totals),
        "outstanding": money_str(Decimal(outstanding), mu),
        "by_store": [
            {"store_id": _str(r.store_id), "name": r.store_name, **fields(r)} for r in by_store
        ],
    }
    return ReportPage(rows, nxt, rest=rest)
