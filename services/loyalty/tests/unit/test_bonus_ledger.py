"""The bonus ledger's rules, one behaviour per test (pure domain, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from loyalty.domain.model import (
    AccrualBase,
    Applied,
    BonusAccount,
    BonusOperation,
    MovementKind,
    PaymentHistory,
    Refused,
    SaleHistory,
)
from loyalty.testing import return_of, sale_of, signed_total

D = Decimal
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sale(
    *,
    cash: str | None = None,
    bonus: str = "0.00",
    at: datetime = T0,
    accrual_on: bool = True,
    rate: str = "10.00",
    method: str = "cash",
) -> tuple[BonusOperation, UUID | None]:
    payment_id = uuid4() if cash is not None else None
    bases = (
        (AccrualBase(payment_id, method, D(cash)),)
        if payment_id is not None and cash is not None
        else ()
    )
    op = sale_of(at=at, bases=bases, spend=bonus, rate_percent=rate, accrual_on=accrual_on)
    return op, payment_id


def applied(result: Applied | Refused) -> Applied:
    assert isinstance(result, Applied), result
    return result


def history_of(result: Applied, payment_id: UUID | None) -> PaymentHistory:
    (accrual,) = [a for a in result.accruals if a.payment_id == payment_id]
    return PaymentHistory(accrual=accrual)


def test_the_worked_example_of_the_domain_ends_at_a_zero_balance() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, _ = sale(cash="200.00")
    assert applied(account.apply(first, payments={})).balance_after == D("20.00")

    second, cash_payment = sale(bonus="20.00", cash="30.00", at=T0 + timedelta(days=1))
    result = applied(account.apply(second, payments={}))
    assert (result.spent, result.accrued, result.balance_after) == (
        D("20.00"),
        D("3.00"),
        D("3.00"),
    )

    cancellation = account.cancel_accrual(history_of(result, cash_payment), at=T0)
    assert cancellation.amount == D("3.00")
    assert cancellation.balance_after == D("0.00")
    assert account.balance == D("0.00")


def test_accrual_is_rounded_half_up_per_payment() -> None:
    account = BonusAccount(customer_id=uuid4())
    p1, p2 = uuid4(), uuid4()
    op = sale_of(
        at=T0, bases=(AccrualBase(p1, "cash", D("0.05")), AccrualBase(p2, "card", D("0.05")))
    )
    result = applied(account.apply(op, payments={}))
    assert [a.accrued for a in result.accruals] == [D("0.01"), D("0.01")]


def test_nothing_accrues_when_the_customers_accrual_is_off() -> None:
    account = BonusAccount(customer_id=uuid4())
    op, _ = sale(cash="100.00", accrual_on=False)
    result = applied(account.apply(op, payments={}))
    assert result.accrued == D("0.00")
    assert result.movements == ()


@pytest.mark.parametrize("method", ["bonus", "on_account"])
def test_nothing_accrues_on_bonus_or_on_account_money(method: str) -> None:
    account = BonusAccount(customer_id=uuid4())
    op, _ = sale(cash="100.00", method=method)
    assert applied(account.apply(op, payments={})).accrued == D("0.00")


def test_a_spend_beyond_the_balance_is_refused_and_changes_nothing() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="100.00")[0], payments={})
    movements_before = list(account.movements)

    result = account.apply(sale(bonus="10.01", cash="5.00")[0], payments={})

    assert isinstance(result, Refused)
    assert result.code == "insufficient_bonus"
    assert result.balance == D("10.00")
    assert account.movements == movements_before
    assert account.balance == D("10.00")


def test_the_whole_balance_can_be_spent() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="100.00")[0], payments={})
    result = applied(account.apply(sale(bonus="10.00")[0], payments={}))
    assert result.balance_after == D("0.00")


def test_spending_takes_the_oldest_lots_first() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="100.00", at=T0 + timedelta(days=5))[0], payments={})
    account.apply(sale(cash="50.00", at=T0)[0], payments={})  # back-dated: older
    account.apply(sale(bonus="6.00")[0], payments={})
    assert [(lot.amount, lot.remaining) for lot in account.lots] == [
        (D("5.00"), D("0.00")),
        (D("10.00"), D("9.00")),
    ]


def test_a_cancelled_accrual_already_spent_leaves_a_negative_balance_filled_by_later_accruals() -> (
    None
):
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="200.00")
    result = applied(account.apply(first, payments={}))
    account.apply(sale(bonus="15.00")[0], payments={})

    account.cancel_accrual(history_of(result, payment), at=T0)
    assert account.balance == D("-15.00")
    refused = account.apply(sale(bonus="0.01")[0], payments={})
    assert isinstance(refused, Refused)

    account.apply(sale(cash="100.00")[0], payments={})
    assert account.balance == D("-5.00")
    assert all(lot.remaining == 0 for lot in account.lots)
    account.apply(sale(cash="80.00")[0], payments={})
    assert account.balance == D("3.00")


def test_a_return_gives_back_the_spent_bonus_up_to_what_credit_allows() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="300.00")[0], payments={})
    spend_op, _ = sale(bonus="20.00")
    account.apply(spend_op, payments={})
    assert spend_op.sale_id is not None
    ret = return_of(spend_op.sale_id, restore_up_to="50.00", at=T0)
    result = applied(
        account.apply(ret, payments={}, sale=SaleHistory(spent=D("20.00"), restored=D("5.00")))
    )
    assert result.restored == D("15.00")
    assert account.balance == D("25.00")


def test_a_return_reverses_the_accrual_in_proportion_and_never_more_than_accrued() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="10.05")
    result = applied(account.apply(first, payments={}))
    history = history_of(result, payment)
    assert history.accrual.accrued == D("1.01")
    assert payment is not None and first.sale_id is not None

    def give_back(base: str, hist: PaymentHistory) -> Decimal:
        op = return_of(first.sale_id, reverse=(AccrualBase(payment, "cash", D(base)),), at=T0)
        return applied(account.apply(op, payments={payment: hist})).reversed

    r1 = give_back("5.00", history)
    history = PaymentHistory(history.accrual, reversed=r1, reversed_base=D("5.00"))
    r2 = give_back("5.05", history)
    history = PaymentHistory(history.accrual, reversed=r1 + r2, reversed_base=D("10.05"))
    r3 = give_back("5.00", history)  # more than was ever paid: nothing left to reverse
    assert (r1, r2, r3) == (D("0.50"), D("0.51"), D("0.00"))
    assert account.balance == D("0.00")


def test_a_return_reverses_nothing_of_an_accrual_already_cancelled() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="100.00")
    history = history_of(applied(account.apply(first, payments={})), payment)
    account.cancel_accrual(history, at=T0)
    assert payment is not None
    op = return_of(first.sale_id, reverse=(AccrualBase(payment, "cash", D("100.00")),), at=T0)
    cancelled = PaymentHistory(history.accrual, cancelled=D("10.00"))
    assert applied(account.apply(op, payments={payment: cancelled})).reversed == D("0.00")
    assert account.balance == D("0.00")


def test_cancelling_after_a_partial_return_takes_back_only_what_is_left() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="100.00")
    history = history_of(applied(account.apply(first, payments={})), payment)
    partly = PaymentHistory(history.accrual, reversed=D("4.00"), reversed_base=D("40.00"))
    assert account.cancel_accrual(partly, at=T0).amount == D("6.00")


def test_an_accrual_expires_after_the_chains_days_as_far_as_it_is_not_spent() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="100.00")[0], payments={})
    account.apply(sale(bonus="4.00", at=T0 + timedelta(days=3))[0], payments={})

    assert account.expire_due(T0 + timedelta(days=30) - timedelta(seconds=1), 30) == []
    (expiry,) = account.expire_due(T0 + timedelta(days=31), 30)

    assert expiry.kind is MovementKind.EXPIRED
    assert expiry.amount == D("6.00")
    assert expiry.at == T0 + timedelta(days=30)
    assert account.balance == D("0.00")
    assert account.expire_due(T0 + timedelta(days=400), 30) == []


def test_cancelling_an_expired_accrual_takes_back_only_what_did_not_expire() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="200.00")
    history = history_of(applied(account.apply(first, payments={})), payment)
    account.apply(sale(bonus="5.00", at=T0 + timedelta(days=1))[0], payments={})
    (expiry,) = account.expire_due(T0 + timedelta(days=31), 30)
    assert expiry.amount == D("15.00")

    # the 15.00 already left the balance; only the 5.00 that was spent is taken back
    cancellation = account.cancel_accrual(history, at=T0 + timedelta(days=32))
    assert cancellation.amount == D("5.00")
    assert account.balance == D("-5.00")


def test_a_history_read_after_the_expiry_is_not_taken_back_twice() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="200.00")
    history = history_of(applied(account.apply(first, payments={})), payment)
    account.expire_due(T0 + timedelta(days=31), 30)
    # as the repository reads it in a later transaction: with the lot's expiry
    reread = BonusAccount(customer_id=account.customer_id, lots=list(account.lots))
    expired = PaymentHistory(history.accrual, expired=D("20.00"))
    assert reread.cancel_accrual(expired, at=T0 + timedelta(days=40)).amount == D("0.00")
    assert reread.balance == D("0.00")


def test_a_return_reverses_nothing_of_an_accrual_that_expired() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="200.00")
    history = history_of(applied(account.apply(first, payments={})), payment)
    account.apply(sale(cash="50.00", at=T0 + timedelta(days=20))[0], payments={})
    assert payment is not None
    ret = return_of(
        first.sale_id,
        at=T0 + timedelta(days=35),
        reverse=(AccrualBase(payment, "cash", D("100.00")),),
    )
    account.expire_due(ret.at, 30)  # the operation records due expiries first
    result = applied(account.apply(ret, payments={payment: history}))
    assert result.reversed == D("0.00")
    assert account.balance == D("5.00")


def test_nothing_expires_while_the_setting_is_off() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="100.00")[0], payments={})
    assert account.expire_due(T0 + timedelta(days=4000), None) == []


def test_accruals_made_before_expiry_was_switched_on_expire_too_dated_when_they_expired() -> None:
    account = BonusAccount(customer_id=uuid4())
    account.apply(sale(cash="100.00")[0], payments={})
    account.apply(sale(cash="50.00", at=T0 + timedelta(days=100))[0], payments={})
    # switched on at day 120 with 30 days: the first lot expired on day 30, the second on 130
    expired = account.expire_due(T0 + timedelta(days=120), 30)
    assert [(m.amount, m.at) for m in expired] == [(D("10.00"), T0 + timedelta(days=30))]
    assert account.balance == D("5.00")


def test_the_balance_is_the_signed_sum_of_the_movements() -> None:
    account = BonusAccount(customer_id=uuid4())
    first, payment = sale(cash="200.00")
    history = history_of(applied(account.apply(first, payments={})), payment)
    account.apply(sale(bonus="18.00", cash="12.00")[0], payments={})
    account.cancel_accrual(history, at=T0)
    assert account.balance == signed_total(account) == D("-16.80")
