"""How many SQL statements one sale of a known customer costs credit, per hop of the saga.

SQLAlchemy statement building and asyncpg round trips are most of credit's CPU (the benchmark's
profiles, docs/benchmarks/notes.md), so the count is a budget: a change that adds a statement
to the hot path shows here first. The batch's fixed cost (BEGIN, COMMIT; the commands keep no
inbox row) is included: one message per batch is the worst case."""

from __future__ import annotations

import uuid
from typing import Any

from credit.testing import (
    customer_snapshot,
    day,
    one_line_sale,
    record_payment,
    record_sale,
    sale_line,
    settings_snapshot,
)
from servicekit.testing import counted_statements

CHAIN = uuid.UUID("55555555-5555-5555-5555-555555555555")


def counted(harness: Any) -> Any:
    """The statements credit's sessions send meanwhile (the harness's own outbox reads
    excluded)."""
    return counted_statements(harness.sf.kw["bind"], ignore="SELECT outbox.value")


async def test_a_known_customers_sale_costs_credit_a_fixed_number_of_statements(harness):
    customer = customer_snapshot()
    settings = settings_snapshot()
    key = str(customer.customer_id)

    def sale(n: int) -> Any:
        return record_sale(
            chain_id=CHAIN,
            customer=customer,
            settings=settings,
            sold_at=day(n),
            lines=[sale_line(1, "50.00")],
            payments=[("cash", "20.00"), ("on_account", "30.00")],
        )

    await harness.send(sale(0), key=key)  # the first sight creates the customer's row
    await harness.settle()
    with counted(harness) as command_hop:
        await harness.send(sale(1), key=key)
    with counted(harness) as confirm_hop:
        assert await harness.answer_loyalty() == 1
    # the command (no inbox row: `NO_INBOX_FOR`): the chain's snapshot with the customer's
    # lock, one read (seen before? and the ledger's sales and entries), one write (sale,
    # entries, operation, in flight, and loyalty's command to the outbox)
    assert len(command_hop) == 3, command_hop
    assert not any("INTO inbox" in str(st) for st in command_hop), command_hop
    # loyalty's answer (no inbox row: `NO_INBOX_FOR`): the customer's lock with the pending
    # operation confirmed (one UPDATE ... RETURNING), the balances with the operation in flight
    # cleared, the next parked command taken (none here) and the event to the outbox in one
    # statement
    assert len(confirm_hop) == 2, confirm_hop
    assert command_hop[-1].startswith("WITH _outbox_rows AS (INSERT INTO outbox"), command_hop
    assert confirm_hop[-1].startswith("WITH _outbox_rows AS (INSERT INTO outbox"), confirm_hop
    assert [
        e["customer_balances"]["debt"] for e in await harness.events("credit.SaleCompleted")
    ] == ["30.00", "60.00"]


async def test_a_payment_that_settles_a_sale_costs_a_fixed_number_of_statements(harness):
    """A payment of part of a sale's debt, then of the rest. Confirming the one that brings the
    sale to zero costs four statements more: the ledger read that finds the sales it settled,
    their overdue marks' lock, marking them `settled` (so later commands no longer read them:
    migration 0004), and the outbox rows of what it settled, emitted after the write that
    carried the payment's outcome."""
    customer = customer_snapshot()
    settings = settings_snapshot()
    key = str(customer.customer_id)
    await harness.send(
        one_line_sale(CHAIN, customer, settings, "50.00"),
        key=key,
    )
    await harness.settle()
    hops: dict[str, tuple[list[str], list[str]]] = {}
    for name, amount in (("part", "20.00"), ("rest", "30.00")):
        with counted(harness) as command_hop:
            await harness.send(
                record_payment(
                    chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount=amount
                ),
                key=key,
            )
        with counted(harness) as confirm_hop:
            await harness.settle()
        hops[name] = ([str(st) for st in command_hop], [str(st) for st in confirm_hop])
    assert [len(hops["part"][0]), len(hops["part"][1])] == [3, 2], hops["part"]
    assert [len(hops["rest"][0]), len(hops["rest"][1])] == [3, 6], hops["rest"]
    marked = [st for st in hops["rest"][1] if st.startswith("UPDATE sales SET settled")]
    assert len(marked) == 1
    assert not any(st.startswith("UPDATE sales SET settled") for st in hops["part"][1])
    credit = await harness.credit(CHAIN, customer.customer_id)
    assert credit is not None and credit["debt"] == "0.00"
