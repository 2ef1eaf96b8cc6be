"""Report arithmetic on generated data: Payment-Balance closes as opening + payments - goods
(= advance - debt), and aging buckets always add up to the debt."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from reporting.domain.csv_rows import to_csv
from reporting.domain.model import (
    AGING_BUCKETS,
    BalanceMovement,
    OwedLine,
    Period,
    aging_bucket,
    build_aging,
    build_payment_balance,
    money_str,
    return_shares,
    sale_shares,
    sort_payment_balance,
)

CUSTOMERS = [uuid.UUID(int=i) for i in range(1, 5)]
money = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def ledgers(draw: st.DrawFn) -> list[tuple[uuid.UUID, datetime, str, Decimal]]:
    """Operations of a few customers in time order, as (customer, at, kind, amount)."""
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CUSTOMERS),
                st.integers(0, 120),
                st.sampled_from(["sale_on_account", "sale_cash", "payment", "advance", "refund"]),
                money.filter(lambda m: m > 0),
            ),
            max_size=40,
        )
    )
    return [(c, T0 + timedelta(days=d), k, a) for c, d, k, a in sorted(ops, key=lambda o: o[1])]


def simulate(ops: list[tuple[uuid.UUID, datetime, str, Decimal]]):  # noqa: ANN201
    """A toy credit ledger: the balances it ends with and the report movements it made."""
    debt = dict.fromkeys(CUSTOMERS, Decimal(0))
    advance = dict.fromkeys(CUSTOMERS, Decimal(0))
    movements = []
    for cid, at, kind, amount in ops:
        if kind == "sale_on_account":
            covered = min(advance[cid], amount)
            advance[cid] -= covered
            debt[cid] += amount - covered
            goods, payments = sale_shares(
                total=amount,
                paid=Decimal(0),
                advance_payments=Decimal(0),
                change_to_advance=Decimal(0),
            )
        elif kind == "sale_cash":
            goods, payments = sale_shares(
                total=amount,
                paid=amount,
                advance_payments=Decimal(0),
                change_to_advance=Decimal(0),
            )
        elif kind in ("payment", "advance"):
            paid_debt = min(debt[cid], amount)
            debt[cid] -= paid_debt
            advance[cid] += amount - paid_debt
            goods, payments = Decimal(0), amount
        else:  # refund of advance, at most what there is
            amount = min(amount, advance[cid])
            advance[cid] -= amount
            goods, payments = Decimal(0), -amount
        movements.append(BalanceMovement(cid, at, goods, payments))
    return debt, advance, movements


@given(ledgers(), st.integers(0, 130), st.integers(0, 130))
def test_payment_balance_opening_and_closing_are_advance_minus_debt_at_the_period_ends(
    ops: list[tuple[uuid.UUID, datetime, str, Decimal]], a: int, b: int
) -> None:
    # The report only sums movements; the toy ledger replayed up to each end of the period
    # says independently what the customer's advance - debt was there.
    start, end = sorted((a, b))
    lower, upper = T0 + timedelta(days=start), T0 + timedelta(days=end + 1)
    debt_at_start, advance_at_start, _ = simulate([op for op in ops if op[1] < lower])
    debt_at_end, advance_at_end, _ = simulate([op for op in ops if op[1] < upper])
    _, _, movements = simulate(ops)
    rows = {row.customer_id: row for row in build_payment_balance(movements, {}, lower, upper)}
    for cid in CUSTOMERS:
        at_start = advance_at_start[cid] - debt_at_start[cid]
        at_end = advance_at_end[cid] - debt_at_end[cid]
        row = rows.get(cid)
        if row is None:  # no movement before the period's end: nothing to report
            assert at_start == at_end == 0
            continue
        assert row.opening == at_start
        assert row.opening + row.payments - row.goods == at_end


@given(ledgers())
def test_payment_balance_closing_equals_advance_minus_debt(
    ops: list[tuple[uuid.UUID, datetime, str, Decimal]],
) -> None:
    debt, advance, movements = simulate(ops)
    for row in build_payment_balance(movements, {}, None, None):
        assert row.closing == advance[row.customer_id] - debt[row.customer_id]
        assert row.opening == 0


@given(ledgers(), st.integers(0, 130))
def test_next_periods_opening_is_this_periods_closing(
    ops: list[tuple[uuid.UUID, datetime, str, Decimal]], split: int
) -> None:
    _, _, movements = simulate(ops)
    cut = T0 + timedelta(days=split)
    first = {r.customer_id: r for r in build_payment_balance(movements, {}, None, cut)}
    second = {r.customer_id: r for r in build_payment_balance(movements, {}, cut, None)}
    for cid, row in first.items():
        assert second[cid].opening == row.closing


def test_a_return_refunded_in_cash_changes_advance_minus_debt_by_value_less_money_back() -> None:
    goods, payments = return_shares(
        value=Decimal("50.00"), refunded=Decimal("20.00"), bonus_restored=Decimal("5.00")
    )
    # 25.00 of the value cancelled debt or became advance: advance - debt went up by 25.00
    assert payments - goods == Decimal("25.00")


def test_a_sale_paid_with_advance_brings_no_new_money() -> None:
    goods, payments = sale_shares(
        total=Decimal("30.00"),
        paid=Decimal("30.00"),
        advance_payments=Decimal("30.00"),
        change_to_advance=Decimal("0.00"),
    )
    assert (goods, payments) == (Decimal("30.00"), Decimal("0.00"))


owed_lines = st.lists(
    st.tuples(st.sampled_from(CUSTOMERS), st.integers(-200, 200) | st.none(), money),
    max_size=50,
)


@given(owed_lines)
def test_aging_buckets_sum_to_the_total_debt(
    lines: list[tuple[uuid.UUID, int | None, Decimal]],
) -> None:
    today = date(2026, 6, 1)
    owed = [
        OwedLine(cid, "x", today - timedelta(days=d) if d is not None else None, amount)
        for cid, d, amount in lines
    ]
    rows, totals = build_aging(owed, today)
    debt = {cid: sum((a for c, _, a in lines if c == cid), Decimal(0)) for cid in CUSTOMERS}
    for row in rows:
        assert sum(row.buckets.values(), Decimal(0)) == row.total == debt[row.customer_id]
    assert totals["total"] == sum((a for _, _, a in lines), Decimal(0))
    assert totals["total"] == sum((totals[b] for b in AGING_BUCKETS), Decimal(0))


def test_aging_bucket_edges() -> None:
    assert [aging_bucket(d) for d in (-3, 0, 1, 30, 31, 60, 61, 90, 91)] == [
        "current",
        "current",
        "d1_30",
        "d1_30",
        "d31_60",
        "d31_60",
        "d61_90",
        "d61_90",
        "d90_plus",
    ]


def test_report_period_covers_whole_local_days() -> None:
    lower, upper = Period(date(2026, 3, 1), date(2026, 3, 31)).bounds("Europe/Bucharest")
    assert lower is not None and upper is not None
    assert lower.astimezone(UTC) == datetime(2026, 2, 28, 22, tzinfo=UTC)
    assert upper.astimezone(UTC) == datetime(2026, 3, 31, 21, tzinfo=UTC)  # DST started


def test_a_period_to_the_ends_of_the_calendar_bounds_nothing_there() -> None:
    """The gateway keeps periods within 2000-2099; reporting's own API answers any date a
    `date` holds (0001-01-01 to 9999-12-31 was an OverflowError, a 500)."""
    assert Period(date.min, date.max).bounds("Europe/Bucharest") == (None, None)
    lower, upper = Period(date.min, date(9999, 12, 30)).bounds("America/New_York")
    assert lower is not None and lower.astimezone(UTC).date() == date.min
    assert upper is not None and upper.date() == date.max


def test_closing_sort_lists_the_most_owing_customer_first() -> None:
    rows = build_payment_balance(
        [
            BalanceMovement(CUSTOMERS[0], T0, Decimal("10"), Decimal("0")),
            BalanceMovement(CUSTOMERS[1], T0, Decimal("90"), Decimal("0")),
        ],
        {CUSTOMERS[0]: "Zoe", CUSTOMERS[1]: "Adam"},
        None,
        None,
    )
    assert [r.name for r in sort_payment_balance(rows, "closing")] == ["Adam", "Zoe"]
    assert [r.name for r in sort_payment_balance(rows, "name")] == ["Adam", "Zoe"]


def test_money_is_shown_with_the_currency_minor_units_rounded_half_up() -> None:
    assert money_str(Decimal("2.345"), 2) == "2.35"
    assert money_str(Decimal("-2.345"), 2) == "-2.35"
    assert money_str(Decimal("7"), 3) == "7.000"


def test_csv_has_a_header_of_scalar_fields_and_one_line_per_row() -> None:
    text = to_csv([{"a": "1", "b": None, "c": [1]}], ["a", "b"])
    assert text == "a,b\r\n1,\r\n"
