"""Reports: read the read models and answer exactly the public JSON of api.md.

Every function takes the chain id first and never returns another chain's rows. Aggregation
happens in SQL, in the statements of `reporting.adapters` (which read model, filtered and
ordered how); this module decides which report to build from them, pages it with its cursors
and renders it. The arithmetic that defines a report (closing, buckets, running balances) is
`reporting.domain.model`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import read_models
from reporting.adapters.bonus_statistics import BonusStatistics
from reporting.adapters.movements import Movements
from reporting.adapters.open_debt import OpenDebt
from reporting.adapters.payment_balance import PaymentBalance, Selection
from reporting.adapters.read_models import MasterData
from reporting.adapters.sales import Sales
from reporting.domain.model import (
    AGING_BUCKETS,
    BONUS_FIELDS,
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


#: what a chain whose registration is not consumed yet (its events came first) is taken to be
#: (`Balances.card_read` takes UTC as its time zone too)
UNREGISTERED = ChainInfo("UTC", 2, "balance")


async def chain_info(session: AsyncSession, chain_id: UUID) -> ChainInfo:
    row = await MasterData(session).chain_settings(chain_id)
    if row is None:
        return UNREGISTERED
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
    owner = await MasterData(session).customer_chain(customer_id)
    if owner is None:
        owner = await read_models.Balances(session).customer_chain(customer_id)
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
    rows = await read_models.Balances(session).of_customers(chain_id, ids)
    overdue = await Sales(session).overdue_customers(chain_id, ids, today)
    out: dict[UUID, dict[str, Any]] = {}
    for cid in ids:
        row = rows.get(cid)
        out[cid] = _balances_json(
            row.debt if row else None,
            row.advance if row else None,
            row.bonus_balance if row else None,
            cid in overdue,
            info.minor_units,
        )
    return out


def _balances_json(
    debt: Decimal | None,
    advance: Decimal | None,
    bonus_balance: Decimal | None,
    overdue: bool,
    minor_units: int,
) -> dict[str, Any]:
    """A customer's balances as the card lookup answers them; None (no row yet) is zero."""
    return {
        "debt": money_str(debt if debt is not None else ZERO, minor_units),
        "advance": money_str(advance if advance is not None else ZERO, minor_units),
        "bonus_balance": money_str(
            bonus_balance if bonus_balance is not None else ZERO, minor_units
        ),
        "overdue": overdue,
    }


async def customer_balances(
    session: AsyncSession, chain_id: UUID, customer_id: UUID, *, now: datetime | None = None
) -> dict[str, Any]:
    """`balances_of(session, chain_id, [customer_id])[customer_id]` (a customer of another
    chain is `NotFound`), read in one statement: the card lookup's, on every card shown at a
    till."""
    row = await read_models.Balances(session).card_read(chain_id, customer_id, _now(now))
    if row["owner"] is not None and row["owner"] != chain_id:
        raise NotFound(str(customer_id))
    mu = row["minor_units"] if row["minor_units"] is not None else UNREGISTERED.minor_units
    return _balances_json(
        row["debt"], row["advance"], row["bonus_balance"], bool(row["overdue"]), mu
    )


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
    lines = await Sales(session).open_lines_of(chain_id, customer_id)
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


def _cut(
    found: Sequence[Any], limit: int | None, cursor_of: Callable[[Any], str]
) -> tuple[Sequence[Any], str | None]:
    """A page of the rows `found` (read one more than `limit`, to know whether the report goes
    on) and the cursor after its last row, None on the last page (or without a limit)."""
    if limit is None or len(found) <= limit:
        return found, None
    page = found[:limit]
    return page, cursor_of(page[-1])


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


def _pb_selection(
    chain_id: UUID, info: ChainInfo, filters: Filters, sort: str, cursor: str | None
) -> Selection:
    """The report's rows (period in the chain's timezone, store, VIP) and where the page
    starts."""
    lower, upper = filters.period.bounds(info.timezone)
    after = _pb_after(sort, cursor) if cursor else None
    return Selection(chain_id, lower, upper, filters.store_id, filters.vip_only, sort, after)


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
    selection = _pb_selection(chain_id, info, filters, sort, cursor)
    if filters.store_id is None and limit is not None:
        return await _pb_page_from_ledger(session, selection, info, limit)
    result = await PaymentBalance(session).page(selection, None if limit is None else limit + 1)
    first = result[0]
    totals = _pb_totals(first.t_opening, first.t_goods, first.t_payments)
    found = [r for r in result if r.customer_id is not None]
    return _pb_page(found, sort, limit, totals, info)


def _pb_page(
    found: Sequence[Any],
    sort: str,
    limit: int | None,
    totals: dict[str, Decimal],
    info: ChainInfo,
) -> PaymentBalancePage:
    """The page of the rows `found` (one more than `limit` when the report goes on)."""
    found, nxt = _cut(found, limit, lambda last: _pb_cursor(sort, last))
    rows = [PaymentBalanceRow(r.customer_id, r.name, r.opening, r.goods, r.payments) for r in found]
    return PaymentBalancePage(rows, totals, info, nxt)


async def _pb_page_from_ledger(
    session: AsyncSession, selection: Selection, info: ChainInfo, limit: int
) -> PaymentBalancePage:
    """One page of the all-stores report in three small statements instead of one over the
    whole chain: the page's customers in report order (every customer's closing, or name, and
    nothing else), the page's figures for those customers only, and the totals from chain-wide
    sums (`credit_ledger`). The same rows, order, cursors and totals as the one statement."""
    report = PaymentBalance(session)
    ids = await report.page_ids(selection, limit + 1)
    figures: dict[UUID, Any] = {}
    if ids:
        figures = await report.figures(selection.chain_id, selection.lower, selection.upper, ids)
    totals_row = await report.totals(selection)
    totals = _pb_totals(
        Decimal(totals_row.t_opening), Decimal(totals_row.t_goods), Decimal(totals_row.t_payments)
    )
    return _pb_page([figures[i] for i in ids], selection.sort, limit, totals, info)


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
    selection = _pb_selection(chain_id, info, filters, sort, cursor)
    result = await PaymentBalance(session).rendered(selection, info.minor_units, fmt)
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


def _unpaid_row(r: Any, tz: str, today: date, mu: int) -> dict[str, Any]:
    """One open line as Unpaid goods shows it."""
    return {
        "customer_id": str(r.customer_id),
        "customer_name": r.customer_name,
        "sale_id": str(r.sale_id),
        "sold_at": _ts(r.sold_at, tz),
        "due_date": r.due_date.isoformat() if r.due_date else None,
        "days_overdue": days_past_due(r.due_date, today),
        "item": unpaid_item(r.name, r.barcode),
        "barcode": r.barcode,
        "quantity": _qty(r.quantity),
        "amount_owed": money_str(r.owed, mu),
    }


def _aging_row(
    customer_id: UUID, name: str, buckets: Any, total: Decimal, mu: int
) -> dict[str, Any]:
    """One customer as Aging shows them (`buckets`: the amount of each of `AGING_BUCKETS`)."""
    return {
        "customer_id": str(customer_id),
        "name": name,
        **{b: money_str(buckets[b], mu) for b in AGING_BUCKETS},
        "total": money_str(total, mu),
    }


async def unpaid_goods(
    session: AsyncSession, chain_id: UUID, filters: Filters, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    lines = await Sales(session).owed_lines(chain_id, filters.store_id, filters.vip_only)
    return [_unpaid_row(r, info.timezone, today, info.minor_units) for r in lines]


async def aging(
    session: AsyncSession, chain_id: UUID, filters: Filters, *, now: datetime | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    info = await chain_info(session, chain_id)
    today = local_today(info.timezone, _now(now))
    mu = info.minor_units
    lines = [
        OwedLine(r.customer_id, r.customer_name, r.due_date, r.owed)
        for r in await Sales(session).owed_lines(chain_id, filters.store_id, filters.vip_only)
    ]
    rows, totals = build_aging(lines, today)
    out = [_aging_row(row.customer_id, row.name, row.buckets, row.total, mu) for row in rows]
    return out, {k: money_str(v, mu) for k, v in totals.items()}


# --------------------------------------------------------------------------- statement


async def _opening(
    movements: Movements, chain_id: UUID, customer_id: UUID, lower: datetime | None
) -> Balances:
    """The balances before the period: the sums of the movements before its start (none: 0)."""
    if lower is None:
        return Balances(ZERO, ZERO, ZERO)
    opening_row = await movements.balances_before(chain_id, customer_id, lower)
    return Balances(*(Decimal(v) for v in opening_row))


def _statement_balances(b: Balances, mu: int) -> dict[str, str]:
    """Balances as the statement shows them: opening, closing, and after each entry."""
    return {
        "debt": money_str(b.debt, mu),
        "advance": money_str(b.advance, mu),
        "bonus_balance": money_str(b.bonus_balance, mu),
    }


def _statement_row(e: StatementEntry, b: Balances, tz: str, mu: int) -> dict[str, Any]:
    """One entry as the statement shows it, with the balances right after it."""
    return {
        "at": _ts(e.at, tz),
        "kind": e.kind,
        "sale_id": _str(e.sale_id),
        "payment_id": _str(e.payment_id),
        "description": e.description,
        "debt_change": money_str(e.debt_change, mu),
        "advance_change": money_str(e.advance_change, mu),
        "bonus_change": money_str(e.bonus_change, mu),
        **_statement_balances(b, mu),
    }


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
    movements = Movements(session)
    opening = await _opening(movements, chain_id, customer_id, lower)
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
        for r in await movements.statement_entries(chain_id, customer_id, lower, upper)
    ]
    with_balances, closing = running(opening, entries)
    rows = [_statement_row(e, b, info.timezone, mu) for e, b in with_balances]
    page, nxt = page_by_offset(rows, limit=limit, cursor=cursor)
    body: dict[str, Any] = {
        "customer_id": str(customer_id),
        "opening": _statement_balances(opening, mu),
        "entries": list(page),
        "closing": _statement_balances(closing, mu),
    }
    if limit is not None:
        body["next"] = nxt
    return body, list(page)


# --------------------------------------------------------------------------- bonus statistics


def _bonus_fields(row: Any, mu: int) -> dict[str, str]:
    """The sums per movement kind of a row, as Bonus statistics shows them."""
    return {kind: money_str(getattr(row, kind), mu) for kind in BONUS_FIELDS}


async def bonus_statistics(
    session: AsyncSession, chain_id: UUID, filters: Filters
) -> dict[str, Any]:
    info = await chain_info(session, chain_id)
    mu = info.minor_units
    lower, upper = filters.period.bounds(info.timezone)
    report = BonusStatistics(session, chain_id, lower, upper, filters.store_id)
    totals = await report.totals()
    by_store = await report.by_store()
    # balances at the end of the period, over every movement up to then
    balances = await report.balances()
    by_customer_rows = await report.by_customer()
    customer_ids = sorted(
        set(by_customer_rows) | {cid for cid, bal in balances.items() if bal != 0}, key=str
    )
    master_data = MasterData(session)
    if filters.vip_only or filters.store_id is not None:
        if filters.vip_only:
            vip = await master_data.vip_customer_ids(chain_id)
            customer_ids = [c for c in customer_ids if c in vip]
        if filters.store_id is not None:
            customer_ids = [c for c in customer_ids if c in by_customer_rows]
    zero = dict.fromkeys(BONUS_FIELDS, money_str(ZERO, mu))
    names = await master_data.customer_names(chain_id)
    store_names = await master_data.store_names(chain_id)
    by_customer = [
        {
            "customer_id": str(cid),
            "name": names.get(cid, ""),
            **(_bonus_fields(by_customer_rows[cid], mu) if cid in by_customer_rows else zero),
            "balance": money_str(balances.get(cid, ZERO), mu),
        }
        for cid in customer_ids
    ]
    return {
        **_bonus_fields(totals, mu),
        "outstanding": money_str(sum(balances.values(), ZERO), mu),
        "by_store": [
            {
                "store_id": _str(r.store_id),
                "name": store_names.get(r.store_id),
                **_bonus_fields(r, mu),
            }
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
    position = _page_after(cursor, "unpaid")
    after = None
    if position is not None:
        try:
            sold_at = datetime.fromisoformat(_cursor_text(position, "t"))
            line_no = int(position["l"])
        except (KeyError, ValueError, TypeError) as exc:
            raise BadCursor("invalid cursor") from exc
        after = (
            _cursor_text(position, "n"),
            _cursor_uuid(position, "c"),
            sold_at,
            _cursor_uuid(position, "s"),
            line_no,
        )
    found = await Sales(session).owed_lines_page(
        chain_id, filters.store_id, filters.vip_only, after, limit + 1
    )
    found, nxt = _cut(
        found,
        limit,
        lambda last: encode_cursor(
            {
                "r": "unpaid",
                "n": last.customer_name,
                "c": str(last.customer_id),
                "t": last.sold_at.isoformat(),
                "s": str(last.sale_id),
                "l": last.line_no,
            }
        ),
    )
    rows = [_unpaid_row(r, info.timezone, today, info.minor_units) for r in found]
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
    open_debt = OpenDebt(session)
    found = await open_debt.aging_rows(
        chain_id, filters.store_id, filters.vip_only, today, after, limit + 1
    )
    totals_row = await open_debt.aging_totals(chain_id, filters.store_id, filters.vip_only, today)
    found, nxt = _cut(
        found,
        limit,
        lambda last: encode_cursor({"r": "aging", "n": last.name, "c": str(last.customer_id)}),
    )
    rows = [_aging_row(r.customer_id, r.name, r._mapping, r.total, mu) for r in found]
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
    report = BonusStatistics(session, chain_id, lower, upper, filters.store_id)
    totals = await report.page_totals()
    by_store = await report.page_by_store()
    # the page's customers: every customer's balance at the end of the period from the bonus
    # ledger and who moved in the period, in id order
    position = _page_after(cursor, "bonus")
    ids = await report.page_ids(
        vip_only=filters.vip_only,
        after=None if position is None else _cursor_uuid(position, "c"),
        limit=limit + 1,
    )
    # their movements of the period and balance at its end, summed from their movements
    found = await report.page_rows(ids)
    outstanding = await report.outstanding()
    found, nxt = _cut(
        found, limit, lambda last: encode_cursor({"r": "bonus", "c": str(last.customer_id)})
    )
    rows = [
        {
            "customer_id": str(r.customer_id),
            "name": r.name,
            **_bonus_fields(r, mu),
            "balance": money_str(r.balance, mu),
        }
        for r in found
    ]
    rest = {
        **_bonus_fields(totals, mu),
        "outstanding": money_str(Decimal(outstanding), mu),
        "by_store": [
            {"store_id": _str(r.store_id), "name": r.store_name, **_bonus_fields(r, mu)}
            for r in by_store
        ],
    }
    return ReportPage(rows, nxt, rest=rest)
