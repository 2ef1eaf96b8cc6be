"""The ledgers' triggers (migration 0006) add a movement the projection inserts to its
customer's sums, reading none of the customer's earlier movements: what an insert costs does
not grow with the customer's history. Before 0006 every insert recomputed the customer's whole
ledger from all their movements. That the sums stay right is `test_summaries_equal_reports`'s
part (randomized, against the reports summed from the movements); this is about the work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from reporting_helpers import rows_read
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reporting.adapters import tables as t

pytestmark = pytest.mark.integration

CHAIN = uuid.uuid4()
START = datetime(2025, 1, 10, 12, tzinfo=UTC)


def _movement(customer_id: uuid.UUID, at: datetime, *, bonus: bool = False) -> dict[str, Any]:
    """A sale's credit movement (goods 10, paid 4) or an accrual's bonus movement (+1)."""
    return {
        "message_id": uuid.uuid4(),
        "seq": 0,
        "chain_id": CHAIN,
        "customer_id": customer_id,
        "at": at,
        "kind": "bonus_accrued" if bonus else "sale",
        "description": "x",
        "goods": Decimal(0 if bonus else 10),
        "payments": Decimal(0 if bonus else 4),
        "bonus_change": Decimal(1 if bonus else 0),
        "bonus_kind": "accrued" if bonus else None,
    }


async def _movements_read(conn: AsyncConnection) -> int:
    return await rows_read(conn, "rm_movements")


async def _insert(conn: AsyncConnection, row: dict[str, Any]) -> int:
    """Insert one movement (its own statement, as the projection does); the rows of
    `rm_movements` its triggers read."""
    before = await _movements_read(conn)
    await conn.execute(sa.insert(t.movements).values(**row))
    return await _movements_read(conn) - before


@pytest.mark.parametrize("bonus", [False, True], ids=["credit ledger", "bonus ledger"])
async def test_a_new_movement_is_added_without_reading_the_customers_history(
    engine: AsyncEngine, bonus: bool
) -> None:
    customer = uuid.uuid4()
    history = [_movement(customer, START + timedelta(days=9 * n), bonus=bonus) for n in range(40)]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(t.movements), history)  # one statement: recomputed
        now = START + timedelta(days=9 * 40)
        # the newest month, then a month between (neither is older than the first month)
        assert await _insert(conn, _movement(customer, now, bonus=bonus)) == 0
        assert (
            await _insert(conn, _movement(customer, START + timedelta(days=95), bonus=bonus)) == 0
        )
        # a movement older than the customer's first month is recomputed from the movements
        older = await _insert(conn, _movement(customer, START - timedelta(days=60), bonus=bonus))
        assert older >= len(history)
        totals = t.credit_totals if not bonus else t.bonus_totals
        column = totals.c.net if not bonus else totals.c.balance
        total = await conn.scalar(sa.select(column).where(totals.c.customer_id == customer))
    assert total == (Decimal(-6) if not bonus else Decimal(1)) * 43
