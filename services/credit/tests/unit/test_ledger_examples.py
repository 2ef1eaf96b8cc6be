"""The ledger against the worked credit examples of domain.md and the rules of each operation."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from credit.domain.errors import Refusal
from credit.domain.model import (
    AllocationRequest,
    EntryKind,
    Ledger,
    Method,
    Mode,
    Sale,
    advance_applied_payment_id,
)
from credit.testing import D, day, line, local, pay, return_goods, sale, take_money, vip_sale


def test_worked_example_per_sale_mode():
    ledger = Ledger()
    a = sale([line(1, "100.00", discount="10.00")], [pay("on_account", "100.00")], at=0)
    out_a = vip_sale(ledger, a)
    assert ledger.debt == D("100.00") and out_a.due_date == local(30)
    b = sale([line(1, "50.00")], [pay("on_account", "50.00")], at=5)
    vip_sale(ledger, b)
    assert ledger.debt == D("150.00")
    assert [(s.sale_id, owed) for s, owed in ledger.open_sales()] == [
        (a.sale_id, D("100.00")),
        (b.sale_id, D("50.00")),
    ]
    paid = take_money(ledger, "70.00", at=10, mode=Mode.PER_SALE)
    assert ledger.sale_owed(a.sale_id) == D("30.00")
    assert ledger.sale_owed(b.sale_id) == D("50.00")
    assert paid.accrual_bases[0].amount == D("70.00")  # 10% of it: the +7.00 bonus

    assert ledger.overdue_sales(local(30)) == []
    overdue = ledger.overdue_sales(local(31))
    assert [o.sale.sale_id for o in overdue] == [a.sale_id]
    revoked = ledger.revoke_discount(sale_id=a.sale_id, at=day(31), today=local(31))
    assert revoked.amount == D("10.00")
    assert ledger.sale_owed(a.sale_id) == D("40.00")
    assert ledger.debt == D("90.00")

    settled = ledger.pay_debt(payment_id=uuid.uuid4(), method=Method.CASH, at=day(32))
    assert settled.amount == D("90.00")
    assert settled.accrual_bases[0].amount == D("90.00")  # the +9.00 bonus
    assert ledger.debt == D("0.00") and ledger.advance == D("0")
    assert ledger.overdue_sales(local(32)) == []


def test_worked_example_per_item_mode():
    ledger = Ledger()
    dress = line(1, "60.00", name="Dress", barcode="4820000000017")
    shoes = line(2, "40.00", discount="10.00", name="Shoes", barcode="4820000000024")
    a = sale([dress, shoes], [pay("on_account", "100.00")], at=0)
    vip_sale(ledger, a)
    b = sale([line(1, "50.00")], [pay("on_account", "50.00")], at=5)
    vip_sale(ledger, b)
    out = take_money(ledger, "70.00", at=10, mode=Mode.PER_ITEM)
    assert ledger.owed(a.sale_id, 1) == D("0.00")
    assert ledger.owed(a.sale_id, 2) == D("30.00")  # "Shoes [4820000000024]" 30.00 owed
    assert {(x.sale_id, x.line_no): x.amount for x in out.allocated} == {
        (a.sale_id, 1): D("60.00"),
        (a.sale_id, 2): D("10.00"),
    }
    assert out.lines_changed == {(a.sale_id, 1): D("0.00"), (a.sale_id, 2): D("30.00")}
    ledger.revoke_discount(sale_id=a.sale_id, at=day(31), today=local(31))
    assert ledger.owed(a.sale_id, 2) == D("40.00")
    assert ledger.debt == D("90.00")
    ledger.pay_debt(payment_id=uuid.uuid4(), method=Method.CASH, at=day(32))
    assert ledger.debt == 0


def test_per_item_payment_goes_to_the_named_line_first():
    ledger = Ledger()
    a = sale([line(1, "60.00"), line(2, "40.00")], [pay("on_account", "100.00")])
    vip_sale(ledger, a)
    take_money(
        ledger,
        "50.00",
        at=1,
        mode=Mode.PER_ITEM,
        method=Method.CARD,
        allocations=[AllocationRequest(a.sale_id, 2, D("30.00"))],
    )
    assert ledger.owed(a.sale_id, 2) == D("10.00")
    assert ledger.owed(a.sale_id, 1) == D("40.00")


def _two_sales_on_account() -> tuple[Ledger, Sale, Sale]:
    """30.00 on account on day 0, then 50.00 on day 1."""
    ledger = Ledger()
    a = sale([line(1, "30.00")], [pay("on_account", "30.00")], at=0)
    b = sale([line(1, "50.00")], [pay("on_account", "50.00")], at=1)
    vip_sale(ledger, a)
    vip_sale(ledger, b)
    return ledger, a, b


@pytest.mark.parametrize(
    ("mode", "amount", "owed_a", "owed_b"),
    [
        # the named sale first, never more than it owes: the rest goes to the oldest sale
        pytest.param(Mode.PER_SALE, "70.00", "10.00", "0", id="per_sale-named-sale-first"),
        # the oldest goods first, whatever the payment names
        pytest.param(Mode.BALANCE, "40.00", "0", "40.00", id="balance-ignores-named-sale"),
    ],
)
def test_a_payment_naming_the_newer_sale(mode, amount, owed_a, owed_b):
    ledger, a, b = _two_sales_on_account()
    out = take_money(
        ledger,
        amount,
        at=2,
        mode=mode,
        allocations=[AllocationRequest(b.sale_id, None, D(amount))],
    )
    assert ledger.sale_owed(a.sale_id) == D(owed_a)
    assert ledger.sale_owed(b.sale_id) == D(owed_b)
    assert sum(x.amount for x in out.allocated) == D(amount)  # never over-allocated


def test_money_beyond_the_debt_becomes_advance():
    ledger = Ledger()
    vip_sale(ledger, sale([line(1, "30.00")], [pay("on_account", "30.00")]))
    out = ledger.record_advance(
        payment_id=uuid.uuid4(), amount=D("50.00"), method=Method.CASH, at=day(1)
    )
    assert out.applied_to_debt == D("30.00") and out.advance_added == D("20.00")
    assert ledger.debt == 0 and ledger.advance == D("20.00")
    assert out.accrual_bases[0].amount == D("30.00")


def test_existing_advance_covers_a_new_one_line_sale_first():
    ledger = Ledger()
    ledger.record_advance(payment_id=uuid.uuid4(), amount=D("20.00"), method=Method.CASH, at=day(0))
    s = sale([line(1, "50.00")], [pay("on_account", "50.00")], at=1)
    out = vip_sale(ledger, s)
    assert out.on_account == D("50.00") and out.advance_applied == D("20.00")
    assert ledger.debt == D("30.00") and ledger.advance == 0
    assert any(
        b.payment_id == advance_applied_payment_id(s.sale_id) and b.amount == D("20.00")
        for b in out.accrual_bases
    )


def test_sale_with_change_kept_as_advance_accrues_only_on_goods():
    ledger = Ledger()
    cash = pay("cash", "100.00")
    s = sale([line(1, "93.00")], [cash])
    out = vip_sale(ledger, s, change="7.00", change_to_advance="5.00")
    assert out.paid == D("93.00") and out.advance_added == D("5.00")
    assert ledger.advance == D("5.00") and ledger.debt == 0
    assert [(b.payment_id, b.amount) for b in out.accrual_bases] == [(cash.payment_id, D("93.00"))]
    assert out.due_date is None


def test_kept_change_pays_open_debt_first():
    ledger = Ledger()
    old = sale([line(1, "4.00")], [pay("on_account", "4.00")], at=0)
    vip_sale(ledger, old)
    out = vip_sale(
        ledger,
        sale([line(1, "10.00")], [pay("cash", "20.00")], at=1),
        change="10.00",
        change_to_advance="10.00",
    )
    assert [(a.sale_id, a.amount) for a in out.change_allocated] == [(old.sale_id, D("4.00"))]
    assert out.advance_added == D("6.00")
    assert ledger.debt == 0 and ledger.advance == D("6.00")


def test_credit_limit_refuses_the_whole_sale():
    ledger = Ledger()
    vip_sale(ledger, sale([line(1, "400.00")], [pay("on_account", "400.00")]), limit="500.00")
    before = list(ledger.entries)
    with pytest.raises(Refusal) as err:
        vip_sale(
            ledger,
            sale([line(1, "150.00")], [pay("cash", "40.00"), pay("on_account", "110.00")]),
            limit="500.00",
        )
    assert err.value.code == "credit_limit_exceeded"
    assert ledger.entries == before and ledger.debt == D("400.00")


def test_overdue_customer_is_blocked_from_new_credit_when_the_chain_says_so():
    ledger = Ledger()
    vip_sale(ledger, sale([line(1, "10.00")], [pay("on_account", "10.00")], at=0, delay=5))
    late = sale([line(1, "10.00")], [pay("on_account", "10.00")], at=7)
    with pytest.raises(Refusal) as err:
        vip_sale(ledger, late, block=True)
    assert err.value.code == "credit_blocked_overdue"
    assert ledger.debt == D("10.00")
    vip_sale(ledger, sale([line(1, "10.00")], [pay("cash", "10.00")], at=7), block=True)


def test_explicit_advance_payment_needs_the_advance():
    ledger = Ledger()
    with pytest.raises(Refusal) as err:
        vip_sale(ledger, sale([line(1, "10.00")], [pay("advance", "10.00")]))
    assert err.value.code == "insufficient_advance"
    assert ledger.entries == []


def test_pay_debt_without_debt_is_refused():
    with pytest.raises(Refusal) as err:
        Ledger().pay_debt(payment_id=uuid.uuid4(), method=Method.CASH, at=day(0))
    assert err.value.code == "no_debt"


def test_refund_of_more_than_the_advance_is_refused():
    ledger = Ledger()
    ledger.record_advance(payment_id=uuid.uuid4(), amount=D("5.00"), method=Method.CASH, at=day(0))
    with pytest.raises(Refusal) as err:
        ledger.refund(refund_id=uuid.uuid4(), amount=D("6.00"), method=Method.CASH, at=day(1))
    assert err.value.code == "insufficient_advance"
    ledger.refund(refund_id=uuid.uuid4(), amount=D("5.00"), method=Method.CASH, at=day(1))
    assert ledger.advance == 0


def test_return_cancels_the_debt_on_the_goods_first_then_restores_bonus_then_refunds():
    ledger = Ledger()
    cash = pay("cash", "30.00")
    s = sale(
        [line(1, "60.00"), line(2, "40.00", quantity="2")],
        [pay("bonus", "20.00"), cash, pay("on_account", "50.00")],
    )
    vip_sale(ledger, s)
    # lines paid in receipt order: line 1 by bonus 20 + cash 30 + 10 on account
    assert ledger.owed(s.sale_id, 1) == D("10.00")
    assert ledger.owed(s.sale_id, 2) == D("40.00")
    out = return_goods(ledger, s.sale_id, at=1)
    assert out.value == D("60.00")
    assert out.debt_cancelled == D("10.00")
    assert out.bonus_restored == D("20.00")
    assert out.refunded == D("30.00")
    assert [(b.payment_id, b.amount) for b in out.reverse_bases] == [(cash.payment_id, D("30.00"))]
    assert ledger.debt == D("40.00")


def test_return_in_per_sale_mode_cancels_the_sale_debt_and_keeps_the_rest_as_advance():
    ledger = Ledger()
    s = sale(
        [line(1, "60.00"), line(2, "40.00")], [pay("cash", "60.00"), pay("on_account", "40.00")]
    )
    vip_sale(ledger, s)
    out = return_goods(ledger, s.sale_id, at=1, mode=Mode.PER_SALE, refund=Method.ADVANCE)
    assert out.debt_cancelled == D("40.00")
    assert out.advance_added == D("20.00")
    assert ledger.debt == 0 and ledger.advance == D("20.00")


def test_kept_return_money_pays_other_open_debt_first():
    ledger = Ledger()
    other = sale([line(1, "15.00")], [pay("on_account", "15.00")], at=0)
    vip_sale(ledger, other)
    s = sale([line(1, "60.00")], [pay("cash", "60.00")], at=1)
    vip_sale(ledger, s)
    out = return_goods(ledger, s.sale_id, at=2, refund=Method.ADVANCE)
    assert out.applied_to_debt == D("15.00") and out.advance_added == D("45.00")
    assert ledger.debt == 0 and ledger.advance == D("45.00")


def test_returning_more_than_was_sold_counts_earlier_returns():
    ledger = Ledger()
    s = sale([line(1, "30.00", quantity="3")], [pay("cash", "30.00")])
    vip_sale(ledger, s)
    return_goods(ledger, s.sale_id, at=1, quantity="2")
    before = list(ledger.entries)
    with pytest.raises(Refusal) as err:
        return_goods(ledger, s.sale_id, at=2, quantity="2")
    assert err.value.code == "return_exceeds_sold"
    assert ledger.entries == before


def test_partial_returns_add_up_to_the_line_amount_exactly():
    ledger = Ledger()
    s = sale([line(1, "10.00", quantity="3")], [pay("cash", "10.00")])
    vip_sale(ledger, s)
    values = [return_goods(ledger, s.sale_id, at=1).value for _ in range(3)]
    assert values == [D("3.33"), D("3.33"), D("3.34")]


def test_discount_is_revoked_once_and_only_when_overdue():
    ledger = Ledger()
    s = sale([line(1, "90.00", discount="10.00")], [pay("on_account", "90.00")], delay=10)
    vip_sale(ledger, s)
    with pytest.raises(Refusal) as err:
        ledger.revoke_discount(sale_id=s.sale_id, at=day(10), today=local(10))
    assert err.value.code == "not_overdue"
    ledger.revoke_discount(sale_id=s.sale_id, at=day(11), today=local(11))
    with pytest.raises(Refusal) as err:
        ledger.revoke_discount(sale_id=s.sale_id, at=day(12), today=local(12))
    assert err.value.code == "already_revoked"
    assert ledger.debt == D("100.00")
    assert sum(1 for e in ledger.entries if e.kind is EntryKind.REVOKED_DISCOUNT) == 1


def test_goods_returned_after_their_discount_was_revoked_are_credited_at_the_full_price():
    # Shoes 2 x 25.00 less 10.00 (40.00), 15.00 paid; overdue, so the 10.00 is revoked: the
    # customer now pays 50.00 for the pair. Returning them must take the revoked discount back
    # too, or the customer would pay for part of a discount on goods they no longer have.
    ledger = Ledger()
    s = sale(
        [line(1, "40.00", discount="10.00", quantity="2")],
        [pay("cash", "15.00"), pay("on_account", "25.00")],
        delay=10,
    )
    vip_sale(ledger, s)
    ledger.revoke_discount(sale_id=s.sale_id, at=day(11), today=local(11))
    assert ledger.debt == D("35.00")

    one = return_goods(ledger, s.sale_id, at=12)
    assert (one.value, one.debt_cancelled, one.refunded) == (D("25.00"), D("25.00"), D("0"))
    assert ledger.owed(s.sale_id, 1) == D("10.00")  # one shoe at 25.00, 15.00 of it paid
    other = return_goods(ledger, s.sale_id, at=13)
    # everything back: nothing owed, and all the money paid is refunded
    assert (other.value, other.debt_cancelled, other.refunded) == (
        D("25.00"),
        D("10.00"),
        D("15.00"),
    )
    assert ledger.debt == 0 and ledger.advance == 0


def test_a_discount_revoked_after_a_partial_return_is_taken_back_with_the_rest():
    # 3 x 10.00 less 1.00 (29.00): one piece back before the revocation at 9.67; the revocation
    # then adds the discount of the two pieces kept (0.67): they are worth 20.00 together.
    ledger = Ledger()
    s = sale(
        [line(1, "29.00", discount="1.00", quantity="3")], [pay("on_account", "29.00")], delay=10
    )
    vip_sale(ledger, s)
    first = return_goods(ledger, s.sale_id, at=1)
    assert first.value == D("9.67")
    ledger.revoke_discount(sale_id=s.sale_id, at=day(11), today=local(11))
    assert ledger.debt == D("20.00")
    rest = return_goods(ledger, s.sale_id, at=12, quantity="2")
    assert (rest.value, rest.debt_cancelled, rest.refunded) == (D("20.00"), D("20.00"), D("0"))
    assert ledger.debt == 0


def test_mode_switch_keeps_every_open_debt():
    ledger = Ledger()
    a = sale([line(1, "60.00"), line(2, "40.00")], [pay("on_account", "100.00")], at=0)
    vip_sale(ledger, a)
    take_money(
        ledger,
        "70.00",
        at=1,
        mode=Mode.PER_ITEM,
        allocations=[AllocationRequest(a.sale_id, 2, D("40.00"))],
    )
    # the chain switches to balance: the same ledger, the same debts, only allocation differs
    assert ledger.debt == D("30.00")
    assert ledger.owed(a.sale_id, 1) == D("30.00")
    take_money(ledger, "10.00", at=2, mode=Mode.BALANCE)
    assert ledger.owed(a.sale_id, 1) == D("20.00")
    assert ledger.debt == Decimal("20.00")
