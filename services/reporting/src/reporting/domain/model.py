"""Report arithmetic, free of I/O: periods in the chain's time zone, aging buckets,
Payment-Balance rows, running balances of a statement, and what each credit event
contributes to the Payment-Balance.

Money is `Decimal` throughout and is rounded half-up to the currency's minor units only when
it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo

from contracts.money import format_money

ZERO = Decimal(0)

AGING_BUCKETS: tuple[str, ...] = ("current", "d1_30", "d31_60", "d61_90", "d90_plus")
#: the bonus movement kinds Bonus statistics sums, one column each
BONUS_FIELDS: tuple[str, ...] = ("accrued", "spent", "cancelled", "reversed", "restored", "expired")


#: money as the API shows it: a string with exactly the currency's minor-unit digits
money_str = format_money


def local_today(timezone: str, now: datetime | None = None) -> date:
    """Today's date in the chain's time zone (due dates and report days are local)."""
    moment = now if now is not None else datetime.now(UTC)
    return moment.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Period:
    """A report period: both ends included, as local dates of the chain."""

    start: date | None
    end: date | None

    def bounds(self, timezone: str) -> tuple[datetime | None, datetime | None]:
        """[start of `start`, start of the day after `end`) as aware instants; an end at the
        calendar's edge, where no such instant exists, bounds nothing (None)."""
        tz = ZoneInfo(timezone)
        lower = _midnight(self.start, tz) if self.start else None
        upper = (
            _midnight(self.end + timedelta(days=1), tz)
            if self.end and self.end < date.max
            else None
        )
        return lower, upper


def _midnight(day: date, tz: ZoneInfo) -> datetime | None:
    """The start of `day` in `tz`, None when it is outside the instants a datetime holds in UTC
    (0001-01-01 east of Greenwich: nothing is stored that early, so it bounds nothing)."""
    at = datetime.combine(day, time(0), tzinfo=tz)
    try:
        at.astimezone(UTC)
    except OverflowError:
        return None
    return at


def days_past_due(due_date: date | None, today: date) -> int:
    """Whole days since the due date (0 when not yet past due or there is no due date)."""
    if due_date is None:
        return 0
    return max(0, (today - due_date).days)


def aging_bucket(days_overdue: int) -> str:
    """The aging column a debt that many days past due belongs to."""
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "d1_30"
    if days_overdue <= 60:
        return "d31_60"
    if days_overdue <= 90:
        return "d61_90"
    return "d90_plus"


@dataclass
class AgingRow:
    customer_id: UUID
    name: str
    buckets: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(AGING_BUCKETS, ZERO))

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), ZERO)

    def add(self, bucket: str, amount: Decimal) -> None:
        self.buckets[bucket] += amount


@dataclass(frozen=True)
class OwedLine:
    """Debt still open on one receipt line, with its sale's due date."""

    customer_id: UUID
    name: str
    due_date: date | None
    owed: Decimal


def build_aging(
    lines: Iterable[OwedLine], today: date
) -> tuple[list[AgingRow], dict[str, Decimal]]:
    """Aging rows per customer (in first-seen order) and the column totals.

    Every owed amount lands in exactly one bucket, so a row's buckets sum to its total debt.
    """
    rows: dict[UUID, AgingRow] = {}
    for line in lines:
        if line.owed == 0:
            continue
        row = rows.get(line.customer_id)
        if row is None:
            row = rows[line.customer_id] = AgingRow(line.customer_id, line.name)
        row.add(aging_bucket(days_past_due(line.due_date, today)), line.owed)
    totals = dict.fromkeys(AGING_BUCKETS, ZERO)
    for row in rows.values():
        for bucket, amount in row.buckets.items():
            totals[bucket] += amount
    totals["total"] = sum((totals[b] for b in AGING_BUCKETS), ZERO)
    return list(rows.values()), totals


@dataclass(frozen=True)
class PaymentBalanceRow:
    """One customer of the Payment-Balance report; negative closing = the customer owes."""

    customer_id: UUID
    name: str
    opening: Decimal
    goods: Decimal
    payments: Decimal

    @property
    def closing(self) -> Decimal:
        return self.opening + self.payments - self.goods


@dataclass(frozen=True)
class BalanceMovement:
    """A movement's share of the Payment-Balance report."""

    customer_id: UUID
    at: datetime
    goods: Decimal
    payments: Decimal


def build_payment_balance(
    movements: Iterable[BalanceMovement],
    names: dict[UUID, str],
    lower: datetime | None,
    upper: datetime | None,
) -> list[PaymentBalanceRow]:
    """Rows from raw movements: before `lower` is the opening, [lower, upper) the period.

    (The service computes the same sums in SQL; this is the reference the tests hold it to.)
    """
    opening: dict[UUID, Decimal] = {}
    goods: dict[UUID, Decimal] = {}
    payments: dict[UUID, Decimal] = {}
    for mov in movements:
        if upper is not None and mov.at >= upper:
            continue
        opening.setdefault(mov.customer_id, ZERO)
        goods.setdefault(mov.customer_id, ZERO)
        payments.setdefault(mov.customer_id, ZERO)
        if lower is not None and mov.at < lower:
            opening[mov.customer_id] += mov.payments - mov.goods
        else:
            goods[mov.customer_id] += mov.goods
            payments[mov.customer_id] += mov.payments
    return [
        PaymentBalanceRow(cid, names.get(cid, ""), opening[cid], goods[cid], payments[cid])
        for cid in opening
    ]


def sort_payment_balance(rows: Sequence[PaymentBalanceRow], sort: str) -> list[PaymentBalanceRow]:
    """`closing`: most owing first (ascending); `name`: alphabetical; ties by customer id."""
    if sort == "name":
        return sorted(rows, key=lambda r: (r.name.casefold(), str(r.customer_id)))
    return sorted(rows, key=lambda r: (r.closing, str(r.customer_id)))


def payment_balance_totals(rows: Iterable[PaymentBalanceRow]) -> dict[str, Decimal]:
    totals = {"opening": ZERO, "goods": ZERO, "payments": ZERO, "closing": ZERO}
    for row in rows:
        totals["opening"] += row.opening
        totals["goods"] += row.goods
        totals["payments"] += row.payments
        totals["closing"] += row.closing
    return totals


# --------------------------------------------------------------------------- event shares
# What each credit event adds to "goods" and "payments". They are chosen so that for every
# event payments - goods equals the change of (advance - debt), which makes
# closing = opening + payments - goods = advance - debt hold by construction.


def sale_shares(
    *,
    total: Decimal,
    paid: Decimal,
    advance_payments: Decimal,
    change_to_advance: Decimal,
) -> tuple[Decimal, Decimal]:
    """A sale: goods = its total; payments = cash, card and bonus kept by the store plus
    the change left as advance. Explicit `advance` payments are not new money: they were
    counted when the advance was deposited."""
    return total, paid - advance_payments + change_to_advance


def return_shares(
    *, value: Decimal, refunded: Decimal, bonus_restored: Decimal
) -> tuple[Decimal, Decimal]:
    """A return: goods go down by the returned value; money paid back (and spent bonus given
    back) leaves the payments."""
    return -value, -(refunded + bonus_restored)


@dataclass(frozen=True)
class StatementEntry:
    """A statement line with the changes it made (balances are filled by `running`)."""

    at: datetime
    kind: str
    sale_id: UUID | None
    payment_id: UUID | None
    description: str
    debt_change: Decimal
    advance_change: Decimal
    bonus_change: Decimal


@dataclass(frozen=True)
class Balances:
    debt: Decimal
    advance: Decimal
    bonus_balance: Decimal


def running(
    opening: Balances, entries: Iterable[StatementEntry]
) -> tuple[list[tuple[StatementEntry, Balances]], Balances]:
    """Each entry with the balances right after it, and the closing balances."""
    debt, advance, bonus = opening.debt, opening.advance, opening.bonus_balance
    out: list[tuple[StatementEntry, Balances]] = []
    for entry in entries:
        debt += entry.debt_change
        advance += entry.advance_change
        bonus += entry.bonus_change
        out.append((entry, Balances(debt, advance, bonus)))
    return out, Balances(debt, advance, bonus)


def unpaid_item(name: str, barcode: str | None) -> str:
    """The unpaid-goods report names an item with its barcode appended: "Shoes [4820...]"."""
    return f"{name} [{barcode}]" if barcode else name
