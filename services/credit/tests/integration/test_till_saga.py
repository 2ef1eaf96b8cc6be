"""The till saga on real PostgreSQL: commands in, ApplyBonuses out, answers in, outcomes out."""

from __future__ import annotations

import uuid
from decimal import Decimal

from contracts.base import Message
from contracts.enums import BonusMovementKind
from contracts.gateway.v1 import ChainSettingsChanged
from contracts.loyalty.v1 import BonusMovementRecorded
from credit.domain.model import revoke_attempt_id, revoke_operation_id
from credit.service_layer.overdue import scan_overdue
from credit.testing import (
    customer_snapshot,
    day,
    one_item_return,
    one_line_sale,
    record_advance,
    record_payment,
    record_refund,
    record_sale,
    revoke,
    sale_line,
    settings_snapshot,
)
from servicekit.testing import counted_statements

CHAIN = uuid.UUID("11111111-1111-1111-1111-111111111111")


async def test_one_line_sale_waits_for_loyalty_then_completes_with_the_full_outcome(harness):
    customer = customer_snapshot()
    settings = settings_snapshot()
    cmd = record_sale(
        chain_id=CHAIN,
        customer=customer,
        settings=settings,
        sold_at=day(0),
        lines=[sale_line(1, "60.00"), sale_line(2, "40.00", discount="10.00")],
        payments=[("cash", "30.00"), ("on_account", "70.00")],
    )
    await harness.send(cmd, key=str(customer.customer_id))
    assert await harness.events("credit.SaleCompleted") == []
    [ask] = await harness.events("loyalty.ApplyBonuses")
    assert ask["operation_id"] == str(cmd.sale_id) and ask["spend"] == "0.00"
    assert [b["base_amount"] for b in ask["accrual_bases"]] == ["30.00"]

    await harness.answer_loyalty()
    [done] = await harness.events("credit.SaleCompleted")
    assert done["total"] == "100.00" and done["paid"] == "30.00"
    assert done["on_account"] == "70.00" and done["advance_applied"] == "0.00"
    assert done["due_date"] == "2026-04-01"
    assert done["bonus_accrued"] == "3.00"
    assert done["payments"] == [
        {
            "payment_id": str(cmd.payments[0].payment_id),
            "method": "cash",
            "amount": "30.00",
            "bonus_accrued": "3.00",
        }
    ]
    assert done["customer_balances"] == {
        "debt": "70.00",
        "advance": "0.00",
        "bonus_balance": "3.00",
    }
    assert [(x["line_no"], x["owed"]) for x in done["lines"]] == [(1, "30.00"), (2, "40.00")]
    view = await harness.credit(CHAIN, customer.customer_id)
    assert view["debt"] == "70.00"


async def test_anonymous_sale_completes_at_once(harness):
    cmd = one_line_sale(CHAIN, None, settings_snapshot(), "9.99", paid_with="card")
    await harness.send(cmd, key=str(cmd.sale_id))
    assert await harness.events("loyalty.ApplyBonuses") == []
    [done] = await harness.events("credit.SaleCompleted")
    assert done["customer_id"] is None and done["customer_balances"] is None
    assert done["due_date"] is None
    ret = one_item_return(cmd, 1, at=1)
    await harness.send(ret, key=str(cmd.sale_id))
    [returned] = await harness.events("credit.ReturnRecorded")
    assert returned["refunded"] == "9.99"


async def test_worked_credit_example_per_sale_through_the_service(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="per_sale", overdue_discount="revoke")
    a = one_line_sale(CHAIN, customer, settings, "100.00", discount="10.00")
    b = one_line_sale(CHAIN, customer, settings, "50.00", at=5)
    pay = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(10), amount="70.00"
    )
    for cmd in (a, b, pay):
        await harness.send_and_settle(cmd, key=str(cid))
    [paid] = await harness.events("credit.DebtPaymentRecorded")
    assert paid["allocated"] == [{"sale_id": str(a.sale_id), "line_no": None, "amount": "70.00"}]
    assert paid["bonus_accrued"] == "7.00"
    assert paid["customer_balances"]["debt"] == "80.00"

    # day 31: A is overdue, the discount is revoked automatically, SaleOverdue once
    await harness.send(
        ChainSettingsChanged(chain_id=CHAIN, settings=settings, changed_at=day(0)), key=str(CHAIN)
    )
    await scan_overdue(harness.sf, now=day(31))
    await scan_overdue(harness.sf, now=day(31))
    [overdue] = await harness.events("credit.SaleOverdue")
    assert overdue["sale_id"] == str(a.sale_id) and overdue["amount_owed"] == "40.00"
    assert overdue["discount_revoked"] is True
    [revoked] = await harness.events("credit.DiscountRevoked")
    assert revoked["trigger"] == "automatic" and revoked["amount"] == "10.00"
    assert revoked["customer_balances"]["debt"] == "90.00"

    settle = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(32), amount=None
    )
    await harness.send_and_settle(settle, key=str(cid))
    [_, all_paid] = await harness.events("credit.DebtPaymentRecorded")
    assert all_paid["amount"] == "90.00" and all_paid["bonus_accrued"] == "9.00"
    assert all_paid["customer_balances"]["debt"] == "0.00"
    settled = {s["sale_id"]: s for s in await harness.events("credit.SaleSettled")}
    assert settled[str(a.sale_id)]["was_overdue"] is True
    assert settled[str(b.sale_id)]["was_overdue"] is False
    assert (await harness.credit(CHAIN, cid))["debt"] == "0.00"


async def test_worked_credit_example_per_item_keeps_the_unpaid_shoes(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="per_item")
    a = record_sale(
        chain_id=CHAIN,
        customer=customer,
        settings=settings,
        sold_at=day(0),
        lines=[
            sale_line(1, "60.00", name="Dress", barcode="4820000000017"),
            sale_line(2, "40.00", discount="10.00", name="Shoes", barcode="4820000000024"),
        ],
        payments=[("on_account", "100.00")],
    )
    pay = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(10), amount="70.00"
    )
    await harness.send(a, key=str(cid))
    await harness.send_and_settle(pay, key=str(cid))
    [paid] = await harness.events("credit.DebtPaymentRecorded")
    assert paid["allocated"] == [
        {"sale_id": str(a.sale_id), "line_no": 1, "amount": "60.00"},
        {"sale_id": str(a.sale_id), "line_no": 2, "amount": "10.00"},
    ]
    assert {(x["line_no"], x["owed_after"]) for x in paid["lines_changed"]} == {
        (1, "0.00"),
        (2, "30.00"),
    }
    view = await harness.credit(CHAIN, cid)
    assert view["open_sales"][0]["lines"] == [
        {"line_no": 2, "name": "Shoes", "barcode": "4820000000024", "amount_owed": "30.00"}
    ]
    # offer: the back office revokes on request once the sale is overdue
    await harness.send_and_settle(
        revoke(chain_id=CHAIN, customer_id=cid, sale_id=a.sale_id, settings=settings, at=day(31)),
        key=str(cid),
    )
    [revoked] = await harness.events("credit.DiscountRevoked")
    assert revoked["trigger"] == "requested"
    assert revoked["lines"] == [{"line_no": 2, "amount": "10.00"}]
    assert (await harness.credit(CHAIN, cid))["debt"] == "40.00"


async def test_commands_of_a_busy_customer_are_parked_and_replayed_in_order(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot()
    sale = one_line_sale(CHAIN, customer, settings, "50.00")
    first = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="20.00"
    )
    second = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="40.00"
    )
    await harness.send(sale, key=str(cid))
    await harness.send(first, key=str(cid))
    env = await harness.send(second, key=str(cid))
    assert await harness.count("parked_commands") == 2
    assert len(await harness.events("loyalty.ApplyBonuses")) == 1
    await harness.settle()
    assert await harness.count("parked_commands") == 0
    outcomes = await harness.outbox("credit.DebtPaymentRecorded")
    assert [o.payload["payment_id"] for o in outcomes] == [
        str(first.payment_id),
        str(second.payment_id),
    ]
    # the replayed outcome keeps the correlation of its own request
    assert outcomes[1].correlation_id == env.correlation_id
    assert outcomes[1].payload["allocated"][0]["amount"] == "30.00"
    assert outcomes[1].payload["advance_added"] == "10.00"
    view = await harness.credit(CHAIN, cid)
    assert (view["debt"], view["advance"]) == ("0.00", "10.00")


async def test_a_duplicate_command_changes_nothing(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot()
    cmd = one_line_sale(CHAIN, customer, settings, "50.00")
    env = await harness.send_and_settle(cmd, key=str(cid))
    entries = await harness.count("entries")
    outbox = len(await harness.outbox())
    await harness.send_envelope(env)  # the same message again (redelivery)
    await harness.send(cmd, key=str(cid))  # the same command in a new message (re-publish)
    await harness.settle()
    assert await harness.count("entries") == entries
    assert len(await harness.outbox()) == outbox
    assert (await harness.credit(CHAIN, cid))["debt"] == "50.00"


async def test_advance_pays_debt_first_and_an_one_line_sale_uses_the_advance(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="balance")
    await harness.send(
        one_line_sale(CHAIN, customer, settings, "30.00"),
        key=str(cid),
    )
    await harness.send_and_settle(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="50.00"
        ),
        key=str(cid),
    )
    [adv] = await harness.events("credit.AdvanceRecorded")
    assert (adv["applied_to_debt"], adv["advance_added"], adv["bonus_accrued"]) == (
        "30.00",
        "20.00",
        "3.00",
    )
    sale = one_line_sale(CHAIN, customer, settings, "50.00", at=2)
    await harness.send_and_settle(sale, key=str(cid))
    done = (await harness.events("credit.SaleCompleted"))[-1]
    assert done["advance_applied"] == "20.00" and done["on_account"] == "50.00"
    assert done["customer_balances"]["debt"] == "30.00"
    assert done["customer_balances"]["advance"] == "0.00"
    assert done["bonus_accrued"] == "2.00"  # advance money paying goods accrues


async def test_refund_of_advance_asks_loyalty_with_nothing_to_apply(harness):
    """A refund moves no bonuses, yet waits for loyalty's answer: its balance is loyalty's."""
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot()
    await harness.send_and_settle(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="25.00"
        ),
        key=str(cid),
    )
    cmd = record_refund(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(2), amount="10.00"
    )
    await harness.send(cmd, key=str(cid))
    assert await harness.events("credit.RefundRecorded") == []
    ask = await harness.loyalty_asked(cmd.refund_id)
    assert (ask["operation_kind"], ask["sale_id"], ask["store_id"]) == (
        "refund",
        None,
        str(cmd.store_id),
    )
    assert (ask["spend"], ask["accrual_bases"], ask["restore_up_to"], ask["reverse_bases"]) == (
        "0.00",
        [],
        "0.00",
        [],
    )
    await harness.settle()
    [refund] = await harness.events("credit.RefundRecorded")
    assert refund["customer_balances"] == {
        "debt": "0.00",
        "advance": "15.00",
        "bonus_balance": "0.00",
    }


async def test_a_refund_answers_loyaltys_balance_not_the_cached_one(harness):
    """The chaos finding of stop 33: a back-office cancellation answered by loyalty whose
    `PaymentBonusCancelled` credit has not consumed yet (credit's cached balance still the
    one before it); a refund sent after it answers with loyalty's balance after it."""
    customer = customer_snapshot()
    cid, settings = customer.customer_id, settings_snapshot()
    await harness.send_and_settle(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="100.00"
        ),
        key=str(cid),
    )
    sale = one_line_sale(CHAIN, customer, settings, "70.00", at=1, paid_with="cash")
    await harness.send_and_settle(sale, key=str(cid))
    assert (await harness.cached_bonus(cid)) == Decimal("7.00")
    harness.bonus[cid] = Decimal("-3.81")  # loyalty cancelled 10.85: its event not read yet

    refund = record_refund(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(2), amount="1.00"
    )
    await harness.send_and_settle(refund, key=str(cid))
    assert await harness.events("credit.OperationRefused") == []
    [done] = await harness.events("credit.RefundRecorded")
    assert done["customer_balances"]["bonus_balance"] == "-3.81"
    assert (await harness.cached_bonus(cid)) == Decimal("-3.81")


async def test_a_requested_revocation_answers_loyaltys_balance_not_the_cached_one(harness):
    """The chaos finding of stop 33, for a requested revocation: a back-office cancellation
    answered by loyalty whose `PaymentBonusCancelled` credit has not consumed yet (credit's
    cached balance still the one before it); a revocation requested after it waits for
    loyalty (asked with nothing to apply, under its request's own operation id, at the sale's
    store) and answers with loyalty's balance after the cancellation."""
    customer = customer_snapshot()
    cid, settings = customer.customer_id, settings_snapshot(overdue_discount="offer")
    paid = one_line_sale(CHAIN, customer, settings, "70.00", paid_with="cash")
    owed = one_line_sale(CHAIN, customer, settings, "90.00", discount="10.00")
    for cmd in (paid, owed):
        await harness.send_and_settle(cmd, key=str(cid))
    assert (await harness.cached_bonus(cid)) == Decimal("7.00")
    harness.bonus[cid] = Decimal("-3.81")  # loyalty cancelled 10.81: its event not read yet

    cmd = revoke(
        chain_id=CHAIN, customer_id=cid, sale_id=owed.sale_id, settings=settings, at=day(31)
    )
    env = await harness.send(cmd, key=str(cid))
    assert await harness.events("credit.DiscountRevoked") == []
    attempt = revoke_attempt_id(owed.sale_id, env.message_id)
    assert attempt not in (owed.sale_id, revoke_operation_id(owed.sale_id))
    ask = await harness.loyalty_asked(attempt)
    assert (ask["operation_kind"], ask["sale_id"], ask["store_id"], ask["bonus_accrual"]) == (
        "revoke_discount",
        None,
        str(owed.store_id),
        False,
    )
    assert (ask["spend"], ask["accrual_bases"], ask["restore_up_to"], ask["reverse_bases"]) == (
        "0.00",
        [],
        "0.00",
        [],
    )
    await harness.settle()
    assert await harness.events("credit.OperationRefused") == []
    [done] = await harness.events("credit.DiscountRevoked")
    assert (done["sale_id"], done["trigger"], done["amount"]) == (
        str(owed.sale_id),
        "requested",
        "10.00",
    )
    assert done["customer_balances"] == {
        "debt": "100.00",
        "advance": "0.00",
        "bonus_balance": "-3.81",
    }
    assert (await harness.cached_bonus(cid)) == Decimal("-3.81")
    assert (await harness.credit(CHAIN, cid))["debt"] == "100.00"


async def test_return_cancels_debt_restores_bonus_and_refunds_the_rest(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="per_item")
    harness.bonus[cid] = Decimal("20.00")
    sale = record_sale(
        chain_id=CHAIN,
        customer=customer,
        settings=settings,
        sold_at=day(0),
        lines=[sale_line(1, "60.00"), sale_line(2, "40.00")],
        payments=[("bonus", "20.00"), ("cash", "30.00"), ("on_account", "50.00")],
    )
    await harness.send_and_settle(sale, key=str(cid))
    ret = one_item_return(sale, 1, at=1)
    await harness.send(ret, key=str(cid))
    ask = await harness.loyalty_asked(ret.return_id)
    assert ask["restore_up_to"] == "20.00"
    assert [(b["payment_id"], b["base_amount"]) for b in ask["reverse_bases"]] == [
        (str(sale.payments[1].payment_id), "30.00")
    ]
    await harness.settle()
    [done] = await harness.events("credit.ReturnRecorded")
    assert (done["value"], done["debt_cancelled"], done["bonus_restored"], done["refunded"]) == (
        "60.00",
        "10.00",
        "20.00",
        "30.00",
    )
    assert done["customer_balances"]["debt"] == "40.00"


def _movement(customer_id: uuid.UUID, operation_id: uuid.UUID | None, balance: str) -> Message:
    return BonusMovementRecorded(
        movement_id=uuid.uuid4(),
        chain_id=CHAIN,
        customer_id=customer_id,
        kind=BonusMovementKind.EXPIRED if operation_id is None else BonusMovementKind.ACCRUED,
        amount=Decimal("1.00"),
        store_id=None,
        payment_id=None,
        sale_id=None,
        operation_id=operation_id,
        at=day(1),
        balance_after=Decimal(balance),
    )


async def test_an_operations_own_movements_are_passed_over_and_an_expiry_is_taken(harness):
    """The bonus balance credit keeps (what an answer without loyalty, an automatic or
    requested revocation, shows) is the one loyalty's answer carried for the sale, not a
    movement of that sale's (passed over without a transaction: the answer after them carries
    the balance), and an expiry's balance after."""
    customer = customer_snapshot()
    cid, settings = customer.customer_id, settings_snapshot()

    async def cached_shows() -> Decimal:
        return await harness.cached_bonus(cid)

    await harness.send_and_settle(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="50.00"
        ),
        key=str(cid),
    )
    sale = one_line_sale(CHAIN, customer, settings, "30.00", at=1, paid_with="cash")
    await harness.send_and_settle(sale, key=str(cid))
    [done] = await harness.events("credit.SaleCompleted")
    assert done["customer_balances"]["bonus_balance"] == "3.00"

    with counted_statements(harness.sf.kw["bind"]) as statements:
        await harness.send(_movement(cid, sale.sale_id, "999.00"), key=str(cid))
    assert statements == []
    assert await cached_shows() == Decimal("3.00")

    await harness.send(_movement(cid, None, "2.00"), key=str(cid))
    assert await cached_shows() == Decimal("2.00")
