"""How many SQL statements loyalty's answer to one sale costs (``ApplyBonuses``).

SQLAlchemy statement building and asyncpg round trips are most of loyalty's CPU (the
benchmark's profiles), so the count is a budget: a change that adds a statement to the hot
path shows here first. The batch's fixed cost (the outbox rows; `ApplyBonuses` keeps no
inbox row) is included: one message per batch is the worst case."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import uuid4

from contracts.loyalty.v1 import BonusesApplied
from servicekit.testing import counted_statements

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from conftest import Harness


async def test_a_sale_that_spends_and_accrues_costs_loyalty_a_fixed_number_of_statements(
    loyalty: Harness, engine: AsyncEngine
) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "200.00")]))  # the customer and a lot
    with counted_statements(engine) as seen:
        await loyalty.feed(loyalty.apply(spend="5.00", cash=[(uuid4(), "30.00")]))
    # no inbox row (`NO_INBOX_FOR`), the customer's lock with the chain's settings, one read
    # under it (answered before?, the payments that accrued already, the open lots), one write
    # (movements, the new lot, the spent lot, the balance, the accrual, the operation, and the
    # outbox rows)
    assert len(seen) == 3, "\n".join(seen)
    assert not any("INTO inbox" in statement for statement in seen), "\n".join(seen)
    assert seen[-1].startswith("WITH _outbox_rows AS (INSERT INTO outbox"), seen[-1]
    *_, answer = await loyalty.outbox(BonusesApplied.TYPE)
    assert (answer.spent, answer.accrued, answer.balance_after) == (
        Decimal("5.00"),
        Decimal("3.00"),
        Decimal("18.00"),
    )
