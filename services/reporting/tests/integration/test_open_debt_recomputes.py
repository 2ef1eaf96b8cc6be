"""Open debt's triggers (migration 0007) recompute a customer only when a statement can have
changed their open debt, i.e. touched an open line (owed > 0). A sale paid in full, stored
with its lines in one statement as the projection stores it, reads none of the customer's
open lines; before 0007 it recomputed the customer twice (once for the sale, once for its
lines), each time from all their open lines. That the summary stays right is
`test_summaries_equal_reports`'s part (randomized, against the reports computed from the
lines); this is about the work. A sale on account, stored with its lines in one statement,
recomputes its customer once (migration 0008), not twice."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from reporting_helpers import rows_read
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reporting.adapters import tables as t

pytestmark = pytest.mark.integration

CHAIN = uuid.uuid4()
STORE = uuid.uuid4()
CUSTOMER = uuid.uuid4()
HISTORY = 12  # open sales of the customer before the one measured, two lines each


async def _lines_read(conn: AsyncConnection) -> int:
    return await rows_read(conn, "rm_sale_lines")


async def _sale(conn: AsyncConnection, owed: Decimal) -> tuple[uuid.UUID, int]:
    """A sale of two lines of 10.00 each owing `owed`, with its lines in one statement (as the
    projection writes a `SaleCompleted`); the rows of `rm_sale_lines` its triggers read."""
    sale_id = uuid.uuid4()
    before = await _lines_read(conn)
    await conn.execute(
        sa.text(
            "WITH sale AS (INSERT INTO rm_sales"
            " (sale_id, chain_id, customer_id, store_id, sold_at, due_date, total)"
            " VALUES (:sale, :chain, :customer, :store, :at, :due, 20))"
            " INSERT INTO rm_sale_lines"
            " (sale_id, line_no, chain_id, customer_id, name, quantity, amount, owed)"
            " SELECT :sale, n, :chain, :customer, 'Coat', 1, 10, :owed"
            " FROM generate_series(1, 2) AS n"
        ),
        {
            "sale": sale_id,
            "chain": CHAIN,
            "customer": CUSTOMER,
            "store": STORE,
            "at": datetime(2026, 11, 2, 12, tzinfo=UTC),
            "due": date(2026, 12, 2),
            "owed": owed,
        },
    )
    return sale_id, await _lines_read(conn) - before


async def _open_debt(conn: AsyncConnection) -> Decimal:
    owed = await conn.scalar(
        sa.select(sa.func.sum(t.open_debt.c.owed)).where(t.open_debt.c.customer_id == CUSTOMER)
    )
    return Decimal(owed or 0)


async def test_a_sale_paid_in_full_reads_none_of_the_customers_open_lines(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        for _ in range(HISTORY):
            await _sale(conn, Decimal(10))
        assert await _open_debt(conn) == 20 * HISTORY
        sales_before = await rows_read(conn, "rm_sales")
        paid, read = await _sale(conn, Decimal(0))
        # the sale's own two lines, looked up by their sale; none of the 24 open ones
        assert read <= 2
        # and its own row, by its key: not the customer's other 12 sales
        assert await rows_read(conn, "rm_sales") - sales_before <= 1
        # a return of a paid line: its debt stays nothing, nobody is recomputed (the update
        # reads the one line it changes)
        before = await _lines_read(conn)
        line = t.sale_lines.c
        await conn.execute(
            sa.update(t.sale_lines)
            .where(line.chain_id == CHAIN, line.sale_id == paid, line.line_no == 1)
            .values(returned_quantity=1)
        )
        assert await _lines_read(conn) - before == 1
        # a revoked discount changes no due date, store or customer: nobody is recomputed
        before = await _lines_read(conn)
        await conn.execute(
            sa.update(t.sales)
            .where(t.sales.c.customer_id == CUSTOMER)
            .values(discount_revoked=t.sales.c.discount_revoked + 1)
        )
        assert await _lines_read(conn) - before == 0
        assert await _open_debt(conn) == 20 * HISTORY


async def test_a_sale_on_account_recomputes_its_customer_once(engine: AsyncEngine) -> None:
    """The other side of the test above: what does change open debt is recomputed (the
    customer's open lines are read), and the summary has the new debt. Once: the sale's
    trigger leaves lines written by its own statement to the lines' trigger (migration 0008;
    with 0007's triggers the customer's 26 open lines were read twice)."""
    open_lines = 2 * (HISTORY + 1)
    async with engine.begin() as conn:
        for _ in range(HISTORY):
            await _sale(conn, Decimal(10))
        _, read = await _sale(conn, Decimal(10))
        # one recompute, and the sale's own two lines looked up by their sale
        assert open_lines <= read <= open_lines + 2
        assert await _open_debt(conn) == 20 * (HISTORY + 1)


async def test_open_lines_stored_before_their_sale_count_when_the_sale_comes(
    engine: AsyncEngine,
) -> None:
    """Lines an earlier statement stored (of the same transaction, so the same `xmin` as the
    sale's) are not the sale statement's own: the sale's trigger recomputes its customer."""
    sale_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(t.sale_lines),
            [
                {
                    "sale_id": sale_id,
                    "line_no": n,
                    "chain_id": CHAIN,
                    "customer_id": CUSTOMER,
                    "name": "Coat",
                    "quantity": 1,
                    "amount": 10,
                    "owed": 10,
                }
                for n in (1, 2)
            ],
        )
        # no sale yet: the lines are in nobody's open debt (open debt is per store and due date)
        assert await _open_debt(conn) == 0
        await conn.execute(
            sa.insert(t.sales).values(
                sale_id=sale_id,
                chain_id=CHAIN,
                customer_id=CUSTOMER,
                store_id=STORE,
                sold_at=datetime(2026, 11, 2, 12, tzinfo=UTC),
                due_date=date(2026, 12, 2),
                total=20,
            )
        )
        assert await _open_debt(conn) == 20
