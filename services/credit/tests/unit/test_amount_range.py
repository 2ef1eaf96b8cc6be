"""The bound on balances: a debt or an advance never reaches 10^13 (`amount_out_of_range`), and
an operation refused for it changes nothing in the ledger."""

from __future__ import annotations

import uuid

import pytest

from credit.domain.errors import Refusal
from credit.domain.model import AMOUNT_LIMIT, Entry, EntryKind, Ledger, Method, Mode
from credit.testing import D, day, line, local, pay, sale, take_money, vip_sale


def test_a_sale_that_takes_the_debt_to_the_limit_is_refused_and_one_below_it_is_not():
    ledger = Ledger()
    vip_sale(ledger, sale([line(1, "9999999999999.98")], [pay("on_account", "9999999999999.98")]))
    with pytest.raises(Refusal) as refused:
        vip_sale(ledger, sale([line(1, "0.02")], [pay("on_account", "0.02")], at=1))
    assert refused.value.code == "amount_out_of_range"
    assert ledger.debt == D("9999999999999.98")
    vip_sale(ledger, sale([line(1, "0.01")], [pay("on_account", "0.01")], at=2))
    assert ledger.debt == AMOUNT_LIMIT - D("0.01")


def test_an_advance_or_kept_change_that_takes_the_advance_to_the_limit_is_refused():
    ledger = Ledger()
    ledger.record_advance(
        payment_id=uuid.uuid4(), amount=D("9999999999999.99"), method=Method.CASH, at=day(0)
    )
    for attempt in (
        lambda: ledger.record_advance(
            payment_id=uuid.uuid4(), amount=D("0.01"), method=Method.CARD, at=day(1)
        ),
        lambda: take_money(ledger, "0.01", at=1, mode=Mode.BALANCE),
    ):
        with pytest.raises(Refusal) as refused:
            attempt()
        assert refused.value.code == "amount_out_of_range"
    assert ledger.advance == D("9999999999999.99")


def test_a_sale_whose_total_is_beyond_the_limit_is_refused_even_when_paid_in_cash():
    with pytest.raises(Refusal) as refused:
        vip_sale(Ledger(), sale([line(1, "10000000000000.00")], [pay("cash", "10000000000000.00")]))
    assert refused.value.code == "amount_out_of_range"


def test_a_revocation_that_would_take_the_debt_to_the_limit_is_refused_and_changes_nothing():
    ledger = Ledger()
    s = sale(
        [line(1, "9999999999999.00", discount="5.00")], [pay("on_account", "9999999999999.00")]
    )
    vip_sale(ledger, s)
    with pytest.raises(Refusal) as refused:
        ledger.revoke_discount(sale_id=s.sale_id, at=day(40), today=local(40))
    assert refused.value.code == "amount_out_of_range"
    assert not ledger.is_revoked(s.sale_id) and ledger.debt == D("9999999999999.00")


def test_a_debt_beyond_the_limit_from_before_it_existed_can_still_be_paid():
    """A customer wedged before the limit (finding 1 of issue 13) can pay it off."""
    s = sale([line(1, "99999999999999.99")], [pay("on_account", "99999999999999.99")])
    goods = Entry(
        s.sale_id, EntryKind.GOODS, D("99999999999999.99"), s.sold_at, sale_id=s.sale_id, line_no=1
    )
    ledger = Ledger([s], [goods])
    paid = ledger.pay_debt(payment_id=uuid.uuid4(), method=Method.CASH, at=day(1))
    assert paid.debt_after == 0 and ledger.debt == 0
