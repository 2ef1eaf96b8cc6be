"""The repository's plain-SQL statements (`servicekit.sql`) keep what SQLAlchemy's did: a
customer's update sets only the values given, a sale's lines and payments come back exactly
(Decimal amounts, UUIDs, non-ASCII names), and an operation's row reads as attributes."""

from __future__ import annotations

import uuid
from decimal import Decimal

from credit.adapters.repository import OperationRecord, Repository
from credit.domain.model import Entry, EntryKind, Method
from credit.testing import day, line, pay
from credit.testing import sale as make_sale

CHAIN = uuid.UUID("66666666-6666-6666-6666-666666666666")


async def test_update_customer_sets_only_the_values_it_is_given(harness):
    customer, operation = uuid.uuid4(), uuid.uuid4()
    async with harness.sf() as session, session.begin():
        repo = Repository(session)
        assert await repo.lock_customer(customer, CHAIN) is not None  # created on first sight
        await repo.update_customer(customer, in_flight=operation, bonus_balance=Decimal("5.50"))
        await repo.update_customer(customer, debt=Decimal("12.3456"))
        row = await repo.lock_customer(customer, CHAIN)
        assert row is not None
        assert (row.in_flight, row.bonus_balance) == (operation, Decimal("5.5000"))
        await repo.update_customer(customer, in_flight=None)
        row = await repo.lock_customer(customer, CHAIN)
        assert row is not None
        assert (row.in_flight, row.bonus_balance) == (None, Decimal("5.5000"))
    assert await harness.count("customers") == 1


async def test_a_recorded_sale_reads_back_as_it_was_written(harness):
    customer = uuid.uuid4()
    sold = make_sale(
        [line(1, "19.99", name="Pâine și lapte", discount="1.01"), line(2, "0.01", quantity="3")],
        [pay("cash", "10.00"), pay("on_account", "10.00")],
        at=0,
    )
    entry = Entry(
        operation_id=sold.sale_id,
        kind=EntryKind.GOODS,
        amount=Decimal("10.00"),
        at=day(0),
        sale_id=sold.sale_id,
        line_no=1,
        payment_id=sold.payments[1].payment_id,
        method=Method("on_account"),
        quantity=Decimal("1"),
    )
    async with harness.sf() as session, session.begin():
        repo = Repository(session)
        await repo.lock_customer(customer, CHAIN)
        await repo.record_operation(
            OperationRecord(
                operation_id=sold.sale_id,
                kind="sale",
                chain_id=CHAIN,
                customer_id=customer,
                status="pending",
                outcome_type="credit.SaleCompleted",
                outcome={"note": "ünïcode", "amount": "10.00"},
                meta={"settled": [], "timezone": "UTC", "minor_units": 2},
                correlation_id=uuid.uuid4(),
                sale=sold,
                entries=[entry],
                in_flight=sold.sale_id,
            )
        )
        ledger, known = await repo.load_for_command(
            chain_id=CHAIN, customer_id=customer, seen=(sold.sale_id, "sale")
        )
        op = await repo.lock_customer_and_claim_pending(customer, CHAIN, sold.sale_id, "confirmed")
    assert known
    [back] = ledger.sales.values()
    assert (back.lines, back.payments, back.due_date) == (sold.lines, sold.payments, sold.due_date)
    assert [(e.kind, e.amount, e.payment_id, e.quantity) for e in ledger.entries] == [
        (EntryKind.GOODS, Decimal("10.00"), entry.payment_id, Decimal("1"))
    ]
    assert op is not None
    assert (op.status, op.customer_id, op.outcome["note"], op.meta["timezone"]) == (
        "confirmed",
        customer,
        "ünïcode",
        "UTC",
    )
