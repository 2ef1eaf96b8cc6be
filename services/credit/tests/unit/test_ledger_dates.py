"""Money and goods dated by the POS (`dated=True`: an offline `occurred_at`) never reach a sale
made after that date (issue 13 finding 6): a take_money of 101.00 dated before a 100.00 sale on
account had been auto-allocated to it, and the statement read debt -100.00 and advance 1.00."""

from __future__ import annotations

import uuid

import pytest

from credit.domain.errors import Refusal
from credit.domain.model import EntryKind, Ledger, Method, Mode
from credit.testing import D, day, line, pay, return_goods, sale, take_money, vip_sale


def _on_account(ledger: Ledger, amount: str, at: int):  # type: ignore[no-untyped-def]
    s = sale([line(1, amount)], [pay("on_account", amount)], at=at)
    vip_sale(ledger, s)
    return s


def _refused_on_occurred_at(operation) -> Refusal:  # type: ignore[no-untyped-def]
    with pytest.raises(Refusal) as refused:
        operation()
    assert (refused.value.code, refused.value.field) == ("validation_error", "occurred_at")
    return refused.value


@pytest.mark.parametrize("mode", list(Mode))
def test_dated_take_money_before_the_only_sale_is_refused_and_changes_nothing(mode: Mode) -> None:
    ledger = Ledger()
    _on_account(ledger, "100.00", at=10)
    entries = list(ledger.entries)
    _refused_on_occurred_at(lambda: take_money(ledger, "101.00", at=9, mode=mode, dated=True))
    assert ledger.entries == entries
    assert (ledger.debt, ledger.advance) == (D("100.00"), D("0"))


@pytest.mark.parametrize("mode", list(Mode))
def test_dated_pay_debt_and_advance_before_a_sale_are_refused(mode: Mode) -> None:
    ledger = Ledger()
    _on_account(ledger, "100.00", at=10)
    _refused_on_occurred_at(
        lambda: ledger.pay_debt(payment_id=uuid.uuid4(), method=Method.CARD, at=day(9), dated=True)
    )
    _refused_on_occurred_at(
        lambda: ledger.record_advance(
            payment_id=uuid.uuid4(), amount=D("5.00"), method=Method.CASH, at=day(9), dated=True
        )
    )
    assert ledger.debt == D("100.00")


@pytest.mark.parametrize("mode", list(Mode))
def test_dated_money_after_the_sales_it_pays_is_accepted(mode: Mode) -> None:
    ledger = Ledger()
    first = _on_account(ledger, "100.00", at=1)
    _on_account(ledger, "50.00", at=10)
    # dated between the two sales: it may pay the older one, and only that one
    paid = take_money(ledger, "60.00", at=5, mode=mode, dated=True)
    assert {a.sale_id for a in paid.allocated} == {first.sale_id}
    assert ledger.debt == D("90.00")


def test_undated_money_is_allocated_as_before_whatever_the_order_of_acceptance() -> None:
    # the gateway's clock at acceptance may lag a sale accepted at the same moment by another
    # instance: without a POS-named date nothing is refused
    ledger = Ledger()
    later = _on_account(ledger, "100.00", at=10)
    out = take_money(ledger, "101.00", at=9, mode=Mode.BALANCE)
    assert {a.sale_id for a in out.allocated} == {later.sale_id}
    assert (ledger.debt, ledger.advance) == (D("0.00"), D("1.00"))


def test_a_dated_return_before_its_sale_is_refused() -> None:
    ledger = Ledger()
    s = _on_account(ledger, "100.00", at=10)
    _refused_on_occurred_at(
        lambda: return_goods(ledger, s.sale_id, at=9, mode=Mode.PER_SALE, dated=True)
    )
    assert not [e for e in ledger.entries if e.kind is EntryKind.RETURNED_GOODS]


def test_a_dated_return_may_not_cancel_the_debt_of_a_later_sale() -> None:
    # balance mode: what the returned goods did not owe cancels the oldest other debt - but
    # not debt of a sale made after the return
    ledger = Ledger()
    paid = sale([line(1, "30.00")], [pay("cash", "30.00")], at=1)
    vip_sale(ledger, paid)
    _on_account(ledger, "100.00", at=10)
    _refused_on_occurred_at(
        lambda: return_goods(
            ledger, paid.sale_id, at=5, mode=Mode.BALANCE, refund=Method.ADVANCE, dated=True
        )
    )
    accepted = return_goods(
        ledger, paid.sale_id, at=11, mode=Mode.BALANCE, refund=Method.ADVANCE, dated=True
    )
    assert accepted.debt_cancelled == D("30.00")
