"""Properties of the bonus ledger over random histories (hypothesis).

A history is a random mix of sales (any tenders, bonus included), cancellations of payments'
accruals, returns (restore and reverse) and expiry runs. After every step: the balance is
accrued - spent - cancelled - reversed + restored - expired; nothing is ever spent beyond a
positive balance; bonus and on-account money never accrue; nothing is taken back twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.money import quantize_money
from loyalty.domain.model import (
    REAL_MONEY_METHODS,
    AccrualBase,
    Applied,
    BonusAccount,
    MovementKind,
    PaymentHistory,
    Refused,
    SaleHistory,
)
from loyalty.testing import return_of, sale_of, signed_total

D = Decimal
T0 = datetime(2026, 1, 1, tzinfo=UTC)

money = st.decimals(min_value=D("0.01"), max_value=D("500.00"), places=2)
methods = st.sampled_from(["cash", "card", "advance", "bonus", "on_account"])
tenders = st.lists(st.tuples(methods, money), min_size=1, max_size=4)
rates = st.sampled_from([D("0"), D("3.5"), D("10.00"), D("12.75"), D("100")])

steps = st.one_of(
    st.tuples(st.just("sale"), tenders, rates, st.booleans()),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50)),
    st.tuples(
        st.just("return"),
        st.integers(min_value=0, max_value=50),
        money,
        st.decimals(min_value=D("0"), max_value=D("1"), places=2),
    ),
    st.tuples(st.just("expire"), st.sampled_from([None, 1, 7, 30])),
)


@dataclass
class Books:
    """What the repository would remember besides the lots: payments and sales."""

    payments: dict[UUID, PaymentHistory] = field(default_factory=dict)
    sales: dict[UUID, SaleHistory] = field(default_factory=dict)
    sale_payments: dict[UUID, list[UUID]] = field(default_factory=dict)
    order: list[UUID] = field(default_factory=list)


def check_invariants(account: BonusAccount, books: Books) -> None:
    assert account.balance == signed_total(account)
    assert account.balance == sum((m.signed_amount for m in account.movements), D(0))
    assert account.deficit >= 0
    for lot in account.lots:
        assert 0 <= lot.remaining <= lot.amount
    if account.deficit > 0:
        assert all(lot.remaining == 0 for lot in account.lots)
    expired_by_lot: dict[UUID | None, Decimal] = {}
    for m in account.movements:
        if m.kind is MovementKind.EXPIRED:
            expired_by_lot[m.lot_id] = expired_by_lot.get(m.lot_id, D(0)) + m.amount
    for history in books.payments.values():
        # an accrual is taken back (cancelled, reversed) or expires, never both for one cent
        expired = (
            expired_by_lot.get(history.accrual.lot_id, D(0)) if history.accrual.lot_id else D(0)
        )
        assert history.cancelled + history.reversed + expired <= history.accrual.accrued
    for sale in books.sales.values():
        assert sale.restored <= sale.spent
    if account.movements:
        assert account.movements[-1].balance_after == account.balance


def run_sale(account: BonusAccount, books: Books, at: datetime, step: tuple) -> None:  # type: ignore[type-arg]
    _, tendered, rate, accrual_on = step
    sale_id = uuid4()
    bases = tuple(AccrualBase(uuid4(), method, amount) for method, amount in tendered)
    spend = sum((amount for method, amount in tendered if method == "bonus"), D(0))
    op = sale_of(
        at=at,
        bases=bases,
        spend=spend,
        rate_percent=rate,
        accrual_on=accrual_on,
        operation_id=sale_id,
        sale_id=sale_id,
    )
    before, moves_before = account.balance, len(account.movements)
    result = account.apply(op, payments=books.payments)
    if isinstance(result, Refused):
        # no spend beyond the balance, and a refusal records nothing
        assert spend > 0 and (before <= 0 or spend > before)
        assert len(account.movements) == moves_before and account.balance == before
        return
    assert result.spent == spend
    if spend > 0:
        assert before > 0 and before >= spend
    for base, accrual in zip(bases, result.accruals, strict=True):
        if base.method not in REAL_MONEY_METHODS or not accrual_on:
            assert accrual.accrued == 0
        else:
            assert accrual.accrued == quantize_money(base.amount * rate / 100, 2)
        books.payments[base.payment_id] = PaymentHistory(accrual=accrual)
        books.order.append(base.payment_id)
    assert result.balance_after == before - spend + result.accrued
    books.sales[sale_id] = SaleHistory(spent=spend)
    books.sale_payments[sale_id] = [b.payment_id for b in bases]


def run_cancel(account: BonusAccount, books: Books, at: datetime, index: int) -> None:
    if not books.order:
        return
    payment_id = books.order[index % len(books.order)]
    history = books.payments[payment_id]
    if history.cancelled > 0:
        return  # the service answers "already" without asking the account again
    before = account.balance
    cancellation = account.cancel_accrual(history, at=at)
    expired = sum(
        (
            m.amount
            for m in account.movements
            if m.kind is MovementKind.EXPIRED
            and m.lot_id is not None
            and m.lot_id == history.accrual.lot_id
        ),
        D(0),
    )
    assert cancellation.amount == max(D(0), history.outstanding - expired)
    assert account.balance == before - cancellation.amount
    books.payments[payment_id] = PaymentHistory(
        history.accrual,
        cancelled=cancellation.amount,
        reversed=history.reversed,
        reversed_base=history.reversed_base,
    )


def run_return(account: BonusAccount, books: Books, at: datetime, step: tuple) -> None:  # type: ignore[type-arg]
    _, index, restore_up_to, share = step
    if not books.sales:
        return
    sale_id = list(books.sales)[index % len(books.sales)]
    reverse = tuple(
        AccrualBase(
            pid,
            books.payments[pid].accrual.method,
            quantize_money(books.payments[pid].accrual.base * share, 2),
        )
        for pid in books.sale_payments[sale_id]
    )
    op = return_of(sale_id, at=at, restore_up_to=restore_up_to, reverse=reverse)
    before = account.balance
    result = account.apply(op, payments=books.payments, sale=books.sales[sale_id])
    assert isinstance(result, Applied)
    assert result.balance_after == before + result.restored - result.reversed
    sale = books.sales[sale_id]
    books.sales[sale_id] = SaleHistory(spent=sale.spent, restored=sale.restored + result.restored)
    for record in result.reversals:
        h = books.payments[record.payment_id]
        books.payments[record.payment_id] = PaymentHistory(
            h.accrual,
            cancelled=h.cancelled,
            reversed=h.reversed + record.amount,
            reversed_base=h.reversed_base + record.base,
        )


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, min_size=1, max_size=40))
def test_every_history_keeps_the_ledgers_invariants(history: list[tuple]) -> None:  # type: ignore[type-arg]
    account = BonusAccount(customer_id=uuid4())
    books = Books()
    at = T0
    for step in history:
        at += timedelta(days=3)
        if step[0] == "sale":
            run_sale(account, books, at, step)
        elif step[0] == "cancel":
            run_cancel(account, books, at, step[1])
        elif step[0] == "return":
            run_return(account, books, at, step)
        else:
            before = account.balance
            expired = account.expire_due(at, step[1])
            assert account.balance == before - sum((m.amount for m in expired), D(0))
            assert all(m.at <= at for m in expired)
        check_invariants(account, books)


@settings(max_examples=200, deadline=None)
@given(tenders, rates)
def test_bonus_and_on_account_money_never_accrue(
    tendered: list[tuple[str, Decimal]], rate: Decimal
) -> None:
    account = BonusAccount(customer_id=uuid4())
    bases = tuple(AccrualBase(uuid4(), method, amount) for method, amount in tendered)
    op = sale_of(at=T0, bases=bases, rate_percent=rate)
    result = account.apply(op, payments={})
    assert isinstance(result, Applied)
    real = [b for b in bases if b.method in REAL_MONEY_METHODS]
    assert result.accrued == sum((quantize_money(b.amount * rate / 100, 2) for b in real), D(0))
    for base, accrual in zip(bases, result.accruals, strict=True):
        if base.method in {"bonus", "on_account"}:
            assert accrual.accrued == 0
