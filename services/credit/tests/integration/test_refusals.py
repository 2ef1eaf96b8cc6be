"""Every refusal code: one OperationRefused is published and nothing else changes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from contracts.base import Message
from credit.testing import (
    customer_snapshot,
    day,
    one_item_return,
    one_line_sale,
    record_payment,
    record_refund,
    record_sale,
    revoke,
    sale_line,
    settings_snapshot,
)

CHAIN = uuid.UUID("22222222-2222-2222-2222-222222222222")


async def ledger_view(harness, cid: uuid.UUID) -> tuple[str, str, list[Any]]:
    """Debt, advance and open sales; a customer never seen has zeros (the row is only a lock)."""
    view = await harness.credit(CHAIN, cid)
    if view is None:
        return ("0.00", "0.00", [])
    return (view["debt"], view["advance"], view["open_sales"])


async def refused(harness, cid: uuid.UUID, cmd: Message, code: str) -> dict[str, Any]:
    """Send ``cmd``, expect exactly one refusal with ``code`` and no other change."""
    before = (
        await harness.count("entries"),
        await harness.count("operations"),
        await ledger_view(harness, cid),
        len(await harness.outbox()),
    )
    await harness.send_and_settle(cmd, key=str(cid))
    new = (await harness.outbox())[before[3] :]
    assert [e.type for e in new] == ["credit.OperationRefused"], [e.type for e in new]
    assert new[0].payload["code"] == code
    after = (
        await harness.count("entries"),
        await harness.count("operations"),
        await ledger_view(harness, cid),
    )
    assert after == before[:3]
    return new[0].payload


async def setup(
    harness, **settings_overrides: Any
) -> tuple[Any, Any, Callable[..., Awaitable[Any]]]:
    customer = customer_snapshot(credit_limit=Decimal("100.00"))
    settings = settings_snapshot(**settings_overrides)

    async def sale(amount: str, *, at: int = 0, discount: str = "0.00", method="on_account"):
        cmd = record_sale(
            chain_id=CHAIN,
            customer=customer,
            settings=settings,
            sold_at=day(at),
            lines=[sale_line(1, amount, discount=discount)],
            payments=[(method, amount)],
        )
        await harness.send_and_settle(cmd, key=str(customer.customer_id))
        return cmd

    return customer, settings, sale


async def test_credit_limit_exceeded_refuses_the_whole_sale(harness):
    customer, settings, sale = await setup(harness)
    await sale("80.00")
    cmd = one_line_sale(CHAIN, customer, settings, "30.00", at=1)
    body = await refused(harness, customer.customer_id, cmd, "credit_limit_exceeded")
    assert body["operation_id"] == str(cmd.sale_id) and body["operation_kind"] == "sale"


async def test_credit_blocked_while_overdue(harness):
    customer, settings, sale = await setup(harness, block_credit_when_overdue=True)
    await sale("10.00", at=0)
    cmd = one_line_sale(CHAIN, customer, settings, "5.00", at=40)
    await refused(harness, customer.customer_id, cmd, "credit_blocked_overdue")


async def test_explicit_advance_payment_beyond_the_advance_is_refused(harness):
    customer, settings, _ = await setup(harness)
    cmd = one_line_sale(CHAIN, customer, settings, "5.00", paid_with="advance")
    await refused(harness, customer.customer_id, cmd, "insufficient_advance")


async def test_refund_beyond_the_advance_is_refused(harness):
    customer, settings, _ = await setup(harness)
    cmd = record_refund(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(0), amount="1.00"
    )
    await refused(harness, customer.customer_id, cmd, "insufficient_advance")


async def test_pay_debt_without_debt_is_refused(harness):
    customer, settings, _ = await setup(harness)
    cmd = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(0), amount=None
    )
    await refused(harness, customer.customer_id, cmd, "no_debt")


async def test_allocation_to_an_unknown_sale_is_refused(harness):
    customer, settings, sale = await setup(harness)
    await sale("10.00")
    cmd = record_payment(
        chain_id=CHAIN,
        customer=customer,
        settings=settings,
        at=day(1),
        amount="5.00",
        allocations=[(uuid.uuid4(), None, "5.00")],
    )
    await refused(harness, customer.customer_id, cmd, "not_found")


async def test_returning_more_than_sold_is_refused_counting_earlier_returns(harness):
    customer, _, sale = await setup(harness)
    s = await sale("10.00", method="cash")
    first = one_item_return(s, 1, at=1)
    await harness.send_and_settle(first, key=str(customer.customer_id))
    again = one_item_return(s, 1, at=2)
    await refused(harness, customer.customer_id, again, "return_exceeds_sold")


async def test_revoking_a_sale_that_is_not_overdue_is_refused(harness):
    customer, settings, sale = await setup(harness, overdue_discount="offer")
    s = await sale("90.00", discount="10.00")
    cid = customer.customer_id
    cmd = revoke(chain_id=CHAIN, customer_id=cid, sale_id=s.sale_id, settings=settings, at=day(5))
    body = await refused(harness, cid, cmd, "not_overdue")
    assert body["operation_id"] == str(s.sale_id)


async def test_revoking_twice_is_refused(harness):
    customer, settings, sale = await setup(harness, overdue_discount="offer")
    s = await sale("90.00", discount="10.00")
    cid = customer.customer_id
    cmd = revoke(chain_id=CHAIN, customer_id=cid, sale_id=s.sale_id, settings=settings, at=day(31))
    await harness.send_and_settle(cmd, key=str(cid))
    assert len(await harness.events("credit.DiscountRevoked")) == 1
    again = revoke(
        chain_id=CHAIN, customer_id=cid, sale_id=s.sale_id, settings=settings, at=day(32)
    )
    await refused(harness, cid, again, "already_revoked")


async def test_loyalty_refusing_the_bonus_voids_the_pending_sale(harness):
    customer, settings, _ = await setup(harness)
    cid = customer.customer_id
    cmd = record_sale(
        chain_id=CHAIN,
        customer=customer,
        settings=settings,
        sold_at=day(0),
        lines=[sale_line(1, "20.00")],
        payments=[("bonus", "5.00"), ("on_account", "15.00")],
    )
    before = await ledger_view(harness, cid)
    await harness.send(cmd, key=str(cid))
    await harness.answer_loyalty()  # the fake loyalty has no bonus for this customer
    [refusal] = await harness.events("credit.OperationRefused")
    assert refusal["code"] == "insufficient_bonus"
    assert await harness.events("credit.SaleCompleted") == []
    assert await ledger_view(harness, cid) == before
    # the customer is free again: the next sale goes through
    ok = one_line_sale(CHAIN, customer, settings, "15.00", at=1)
    await harness.send_and_settle(ok, key=str(cid))
    assert (await harness.credit(CHAIN, cid))["debt"] == "15.00"
