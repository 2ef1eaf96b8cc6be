"""What reporting's open-debt triggers cost PostgreSQL per sale, as customers' open debt grows.

`rm_open_debt` (`reporting.adapters.open_debt`) is kept by statement-level triggers on
`rm_sales`, `rm_sale_lines` and `rm_customers`. Up to revision 0006 every statement touching
them recomputed each customer it touched from all the customer's open lines, twice for a sale
(once for the sale, once for its lines); from 0007 only a statement touching an open line
(owed > 0) recomputes; from 0008 a sale on account recomputes its customer once (by its lines'
trigger). This migrates a database per revision (`--revisions`, 0006, 0007 and head unless
told), and stores the same sales into each, alternating, one statement per sale with its
lines (as the projection stores a `SaleCompleted`): per customer and round, one sale on
account (it stays open) and one paid in full. It prints the median wall time of the
statement (its triggers included) per revision and kind, every few rounds of open sales
(`bench.revisions`):

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.open_debt_triggers \\
        --rounds 40 --customers 200

Wall time of one statement on an otherwise idle server: PostgreSQL's own work for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from bench.revisions import alternate_revisions

REVISIONS = ("0006", "0007", "head")
#: a sale and its three lines of 10.00, each owing $6: one statement
_SALE = (
    "WITH sale AS (INSERT INTO rm_sales"
    " (sale_id, chain_id, customer_id, store_id, sold_at, due_date, total)"
    " VALUES ($1, $2, $3, $4, $5, $7, 30))"
    " INSERT INTO rm_sale_lines"
    " (sale_id, line_no, chain_id, customer_id, name, quantity, amount, owed)"
    " SELECT $1, n, $2, $3, 'Item', 1, 10, $6 FROM generate_series(1, 3) AS n"
)


async def _run(
    server: str, revisions: tuple[str, ...], rounds: int, customers: int, every: int
) -> list[dict[str, Any]]:
    chain, store = uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    owed = {"on_account": Decimal(10), "paid": Decimal(0)}

    def sale(
        conn: asyncpg.Connection, customer: uuid.UUID, n_round: int, n: int, kind: str
    ) -> Awaitable[Any]:
        at = start + timedelta(days=n_round, minutes=n)
        due = date(2026, 1, 1) + timedelta(days=(at - start).days + 30)
        return conn.execute(_SALE, uuid.uuid4(), chain, customer, store, at, owed[kind], due)

    return await alternate_revisions(
        server,
        name="open_debt",
        revisions=revisions,
        kinds=tuple(owed),
        rounds=rounds,
        customers=customers,
        every=every,
        label="open_sales_per_customer",
        step=sale,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.open_debt_triggers")
    parser.add_argument("--rounds", type=int, default=40, help="open sales built per customer")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="print every this many rounds")
    parser.add_argument(
        "--revisions", default=",".join(REVISIONS), help="comma-separated, alembic's names"
    )
    args = parser.parse_args(argv)
    server = os.environ["DATABASE_URL"]
    revisions = tuple(r.strip() for r in args.revisions.split(",") if r.strip())
    asyncio.run(_run(server, revisions, args.rounds, args.customers, args.every))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
