"""How many SQL statements one sale of a known customer costs credit, per hop of the saga.

SQLAlchemy statement building and asyncpg round trips are most of credit's CPU (the benchmark's
profiles, docs/benchmarks/notes.md), so the count is a budget: a change that adds a statement
to the hot path shows here first. The batch's fixed cost (BEGIN, the inbox insert, COMMIT) is
included: one message per batch is the worst case."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from credit.testing import customer_snapshot, day, record_sale, sale_line, settings_snapshot

CHAIN = uuid.UUID("55555555-5555-5555-5555-555555555555")


@contextmanager
def counted(harness: Any) -> Iterator[list[str]]:
    """The statements credit's sessions send meanwhile (the harness's own outbox reads and
    the transaction's BEGIN/COMMIT, which asyncpg does not send as statements, excluded)."""
    engine = harness.sf.kw["bind"].sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().startswith("SELECT outbox.value"):
            seen.append(" ".join(statement.split())[:80])

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


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
    # the command: inbox, chain, customer lock, one read (seen before? and the ledger's
    # sales and entries), one write (sale, entries, operation, in flight), loyalty's command
    assert len(command_hop) == 6, command_hop
    # loyalty's answer: inbox, customer lock, the pending operation confirmed (one UPDATE
    # ... RETURNING), balances, the event, nothing parked
    assert len(confirm_hop) == 6, confirm_hop
    assert [
        e["customer_balances"]["debt"] for e in await harness.events("credit.SaleCompleted")
    ] == ["30.00", "60.00"]
