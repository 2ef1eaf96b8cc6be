"""A command reads only the part of the customer's ledger its rules need (issue 14): the sales
that may still owe something and the sales it names, with their entries, and the advance summed
in SQL. Settled history is not read, and every decision is the one the whole ledger gives.

Real PostgreSQL through the consumer's production path; the whole ledger is
`Repository.load_ledger` (every sale and entry, as every command read it before).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa

from credit.adapters.repository import Repository
from credit.domain.errors import Refusal
from credit.domain.model import Ledger
from credit.entrypoints.app import MIGRATIONS_DIR
from credit.service_layer.decisions import Step, decide
from credit.service_layer.handlers import customer_of, identity, named_sales
from credit.testing import (
    customer_snapshot,
    day,
    one_item_return,
    record_advance,
    record_payment,
    record_refund,
    record_return,
    record_sale,
    revoke,
    sale_line,
    settings_snapshot,
)
from servicekit.testing import alembic_to

CHAIN = uuid.UUID("77777777-7777-4777-8777-777777777777")


def sale_of(
    customer: Any, settings: Any, n: int, lines: list[Any], payments: list[tuple[str, str]]
) -> Any:
    return record_sale(
        chain_id=CHAIN,
        customer=customer,
        settings=settings,
        sold_at=day(n),
        lines=lines,
        payments=payments,
    )


async def ledgers(harness: Any, customer_id: uuid.UUID, cmd: Any = None) -> tuple[Ledger, Ledger]:
    """(the whole ledger, what the command reads) of the customer, now."""
    async with harness.sf() as session, session.begin():
        repo = Repository(session)
        whole = await repo.load_ledger(chain_id=CHAIN, customer_id=customer_id)
        part, _ = await repo.load_for_command(
            chain_id=CHAIN,
            customer_id=customer_id,
            named=named_sales(cmd) if cmd is not None else (),
        )
    return whole, part


def state(ledger: Ledger, today: Any) -> Any:
    return (
        ledger.debt,
        ledger.advance,
        [(s.sale_id, s.due_date, owed) for s, owed in ledger.open_sales()],
        [(o.sale.sale_id, o.amount_owed, o.days_overdue) for o in ledger.overdue_sales(today)],
    )


def decided(cmd: Any, ledger: Ledger) -> Any:
    """What the ledger decides for `cmd`: the refusal, or the entries, event and loyalty's
    part (a new sale's `seq` left out: the database numbers it)."""
    operation_id, _ = identity(cmd)
    step = Step(cmd, ledger, operation_id, customer_of(cmd), Decimal(0))
    try:
        decision = decide(step)
    except Refusal as refusal:
        return ("refused", refusal.code, refusal.detail, refusal.field)
    return (
        decision.outcome.entries,
        decision.event.model_dump(mode="json"),
        decision.bonus.model_dump(mode="json") if decision.bonus else None,
        {s.sale_id: owed for s, owed in ledger.open_sales()},
    )


async def send_checked(harness: Any, customer: Any, cmd: Any) -> None:
    """Decide `cmd` on the whole ledger and on the command's read (the same), then send it
    through the service and drive it to the end; the two ledgers agree after it."""
    whole, part = await ledgers(harness, customer.customer_id, cmd)
    today = day(400).date()
    assert state(part, today) == state(whole, today)
    assert decided(cmd, part) == decided(cmd, whole)
    await harness.send_and_settle(cmd, key=str(customer.customer_id))
    whole, part = await ledgers(harness, customer.customer_id)
    assert state(part, today) == state(whole, today)


@pytest.mark.parametrize("mode", ["balance", "per_sale", "per_item"])
async def test_every_operation_decides_on_the_commands_read_as_on_the_whole_ledger(harness, mode):
    """Old settled sales (paid at the till, paid off, covered by the advance) returned, named by
    payments and revocations; open sales paid oldest first; advances, refunds, refusals."""
    customer = customer_snapshot()
    settings = settings_snapshot(credit_mode=mode)
    blocking = settings_snapshot(credit_mode=mode, block_credit_when_overdue=True)

    async def send(cmd: Any) -> None:
        await send_checked(harness, customer, cmd)

    # the arguments every command of this customer repeats
    pay = partial(record_payment, chain_id=CHAIN, customer=customer, settings=settings)
    returned = partial(record_return, chain_id=CHAIN, customer=customer, settings=settings)
    revoked = partial(
        revoke, chain_id=CHAIN, customer_id=customer.customer_id, settings=settings, at=day(60)
    )

    s1 = sale_of(
        customer,
        settings,
        0,
        [sale_line(1, "60.00"), sale_line(2, "40.00", discount="10.00", quantity="2")],
        [("cash", "30.00"), ("on_account", "70.00")],
    )
    s2 = sale_of(customer, settings, 1, [sale_line(1, "25.00", quantity="5")], [("cash", "25.00")])
    await send(s1)
    await send(s2)
    await send(pay(at=day(2), amount=None))
    await send(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(3), amount="40.00"
        )
    )
    s3 = sale_of(customer, settings, 4, [sale_line(1, "30.00")], [("on_account", "30.00")])
    await send(s3)  # all of it covered by the advance: settled when recorded
    for n in range(5, 15):  # settled history: sold part on account, then paid off
        await send(
            sale_of(
                customer,
                settings,
                n,
                [sale_line(1, f"{10 + n}.00"), sale_line(2, "3.50")],
                [("cash", "5.00"), ("on_account", f"{8 + n}.50")],
            )
        )
        if n % 3 == 0:
            await send(pay(at=day(n), amount=None))
    await send(pay(at=day(15), amount=None))
    s4 = sale_of(
        customer,
        settings,
        16,
        [sale_line(1, "70.00"), sale_line(2, "80.00", discount="5.00"), sale_line(3, "20.00")],
        [("on_account", "170.00")],
    )
    await send(s4)
    s5 = sale_of(
        customer,
        settings,
        17,
        [sale_line(1, "45.00", discount="5.00")],
        [("cash", "5.00"), ("on_account", "40.00")],
    )
    await send(s5)
    # money naming a settled sale (nothing to pay there) and an open one, the rest oldest first
    await send(
        pay(
            at=day(18),
            amount="25.00",
            allocations=[(s1.sale_id, 1, "10.00"), (s5.sale_id, None, "5.00")],
        )
    )
    # returns of old settled sales: to the advance (it pays open debt first), and in cash
    await send(
        returned(sale_id=s1.sale_id, at=day(19), lines=[(1, "1"), (2, "1")], refund="advance")
    )
    await send(returned(sale_id=s2.sale_id, at=day(19), lines=[(1, "2")]))
    await send(returned(sale_id=s3.sale_id, at=day(20), lines=[(1, "1")], refund="advance"))
    # more than is left of the old sale's line: refused the same way
    await send(returned(sale_id=s1.sale_id, at=day(20), lines=[(2, "2")]))
    # revocations: of a settled sale (not overdue), of an open overdue one, twice
    await send(revoked(sale_id=s1.sale_id))
    for _ in range(2):
        await send(revoked(sale_id=s4.sale_id))
    # no goods on account while overdue (the open sales are), a cash sale is fine
    await send(sale_of(customer, blocking, 61, [sale_line(1, "9.00")], [("on_account", "9.00")]))
    await send(sale_of(customer, blocking, 61, [sale_line(1, "9.00")], [("cash", "9.00")]))
    await send(pay(at=day(62), amount="500.00"))
    await send(
        record_refund(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(63), amount="7.50"
        )
    )
    await send(
        sale_of(customer, settings, 64, [sale_line(1, "600.00")], [("on_account", "600.00")])
    )

    # the history is long, the command's read is not: only what may still owe something
    refused = {e["code"] for e in await harness.events("credit.OperationRefused")}
    assert refused >= {
        "return_exceeds_sold",
        "not_overdue",
        "already_revoked",
        "credit_blocked_overdue",
    }
    assert len(await harness.events("credit.DiscountRevoked")) == 1
    assert len(await harness.events("credit.ReturnRecorded")) == 3
    whole, part = await ledgers(harness, customer.customer_id)
    assert len(whole.sales) == 17
    assert set(part.sales) == {s.sale_id for s, _ in whole.open_sales()}
    assert len(part.sales) == 1
    assert len(part.entries) < len(whole.entries) // 10
    assert part.advance == whole.advance and part.debt == whole.debt


async def test_a_return_of_an_old_settled_sale_cancels_nothing_and_refunds_its_value(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="per_sale")
    old = sale_of(
        customer,
        settings,
        0,
        [sale_line(1, "60.00"), sale_line(2, "50.00", discount="10.00")],
        [("cash", "40.00"), ("on_account", "70.00")],
    )
    await harness.send_and_settle(old, key=str(cid))
    pay = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount=None
    )
    await harness.send_and_settle(pay, key=str(cid))
    for n in range(2, 8):
        await harness.send_and_settle(
            sale_of(customer, settings, n, [sale_line(1, "10.00")], [("cash", "10.00")]),
            key=str(cid),
        )
    open_sale = sale_of(customer, settings, 8, [sale_line(1, "30.00")], [("on_account", "30.00")])
    await harness.send_and_settle(open_sale, key=str(cid))
    _, part = await ledgers(harness, cid)
    assert set(part.sales) == {open_sale.sale_id}  # the old sale is not read by default

    # the shoes of the old sale come back, kept as advance: nothing of them is owed, so their
    # value (50.00) is real money that pays the open sale first (30.00), the rest is advance
    ret = one_item_return(old, 2, at=9, refund="advance")
    await harness.send(ret, key=str(cid))
    [ask] = [
        a
        for a in await harness.events("loyalty.ApplyBonuses")
        if a["operation_id"] == str(ret.return_id)
    ]
    # the bonus reversed traces back to the old sale's payment that paid the shoes: the
    # pay-debt money (the till's cash paid the first line)
    assert [(b["payment_id"], b["base_amount"]) for b in ask["reverse_bases"]] == [
        (str(pay.payment_id), "50.00")
    ]
    await harness.settle()
    [done] = await harness.events("credit.ReturnRecorded")
    assert (done["value"], done["debt_cancelled"], done["applied_to_debt"]) == (
        "50.00",
        "0.00",
        "30.00",
    )
    assert done["allocated"] == [
        {"sale_id": str(open_sale.sale_id), "line_no": None, "amount": "30.00"}
    ]
    assert (done["advance_added"], done["customer_balances"]["debt"]) == ("20.00", "0.00")
    assert done["customer_balances"]["advance"] == "20.00"

    # the same line again: the old sale's earlier return counts (read by its id)
    again = one_item_return(old, 2, at=10)
    await harness.send_and_settle(again, key=str(cid))
    [refused] = await harness.events("credit.OperationRefused")
    assert (refused["operation_id"], refused["code"]) == (
        str(again.return_id),
        "return_exceeds_sold",
    )


async def test_after_many_settled_sales_the_next_sale_and_payment_keep_balances_and_due_dates(
    harness,
):
    customer = customer_snapshot(max_payment_delay_days=20)
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="per_sale")
    for n in range(30):
        await harness.send_and_settle(
            sale_of(
                customer,
                settings,
                n,
                [sale_line(1, "10.00")],
                [("cash", "4.00"), ("on_account", "6.00")],
            ),
            key=str(cid),
        )
        if n % 2:
            await harness.send_and_settle(
                record_payment(
                    chain_id=CHAIN, customer=customer, settings=settings, at=day(n), amount=None
                ),
                key=str(cid),
            )
    await harness.send_and_settle(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(30), amount="4.00"
        ),
        key=str(cid),
    )
    async with harness.sf() as session:
        settled = await session.scalar(
            sa.text("SELECT count(*) FROM sales WHERE customer_id = :c AND settled"), {"c": cid}
        )
    assert settled == 30

    first = sale_of(customer, settings, 31, [sale_line(1, "50.00")], [("on_account", "50.00")])
    second = sale_of(customer, settings, 32, [sale_line(1, "20.00")], [("on_account", "20.00")])
    await send_checked(harness, customer, first)
    await send_checked(harness, customer, second)
    completed = await harness.events("credit.SaleCompleted")
    assert [(e["due_date"], e["advance_applied"]) for e in completed[-2:]] == [
        (day(51).date().isoformat(), "4.00"),
        (day(52).date().isoformat(), "0.00"),
    ]
    assert [e["customer_balances"]["debt"] for e in completed[-2:]] == ["46.00", "66.00"]
    pay = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(33), amount="50.00"
    )
    await send_checked(harness, customer, pay)
    [paid] = [
        e
        for e in await harness.events("credit.DebtPaymentRecorded")
        if e["payment_id"] == str(pay.payment_id)
    ]
    assert paid["allocated"] == [
        {"sale_id": str(first.sale_id), "line_no": None, "amount": "46.00"},
        {"sale_id": str(second.sale_id), "line_no": None, "amount": "4.00"},
    ]
    assert paid["customer_balances"]["debt"] == "16.00"
    # the first sale is settled by the payment, so commands stop reading it
    _, part = await ledgers(harness, cid)
    assert set(part.sales) == {second.sale_id}
    view = await harness.credit(CHAIN, cid)
    assert view["debt"] == "16.00"
    assert [s["due_date"] for s in view["open_sales"]] == [day(52).date().isoformat()]


async def test_the_migration_marks_settled_only_the_sales_that_owe_nothing_for_good(
    harness, fresh_database_url
):
    """Sales recorded before migration 0004: paid at the till or paid off (settled); still
    owing, or touched by an operation still waiting for loyalty, or anonymous (not)."""
    settings = settings_snapshot()
    ana, bob = customer_snapshot(), customer_snapshot()
    cash = sale_of(ana, settings, 0, [sale_line(1, "10.00")], [("cash", "10.00")])
    paid_off = sale_of(ana, settings, 1, [sale_line(1, "20.00")], [("on_account", "20.00")])
    owing = sale_of(ana, settings, 2, [sale_line(1, "30.00")], [("on_account", "30.00")])
    for cmd in (cash, paid_off):
        await harness.send_and_settle(cmd, key=str(ana.customer_id))
    await harness.send_and_settle(
        record_payment(chain_id=CHAIN, customer=ana, settings=settings, at=day(1), amount=None),
        key=str(ana.customer_id),
    )
    await harness.send_and_settle(owing, key=str(ana.customer_id))
    waiting = sale_of(bob, settings, 0, [sale_line(1, "15.00")], [("on_account", "15.00")])
    await harness.send_and_settle(waiting, key=str(bob.customer_id))
    await harness.send(  # pays the sale off, but loyalty has not answered
        record_payment(chain_id=CHAIN, customer=bob, settings=settings, at=day(1), amount=None),
        key=str(bob.customer_id),
    )
    anonymous = sale_of(None, settings, 0, [sale_line(1, "5.00")], [("cash", "5.00")])
    await harness.send(anonymous, key=str(anonymous.sale_id))

    async def flags() -> dict[uuid.UUID, bool]:
        async with harness.sf() as session:
            rows = await session.execute(sa.text("SELECT sale_id, settled FROM sales"))
            return {r.sale_id: r.settled for r in rows}

    expected = {
        cash.sale_id: True,
        paid_off.sale_id: True,
        owing.sale_id: False,
        waiting.sale_id: False,
        anonymous.sale_id: True,  # recorded paid in full (never read by a customer's command)
    }
    assert await flags() == expected
    await alembic_to(MIGRATIONS_DIR, fresh_database_url, "downgrade", "0003")
    await alembic_to(MIGRATIONS_DIR, fresh_database_url, "upgrade", "head")
    assert await flags() == {**expected, anonymous.sale_id: False}
