"""What reporting's ledger triggers cost PostgreSQL per movement, as customers' histories grow.

`rm_movements` has statement-level triggers keeping the Payment-Balance and Bonus statistics
sums per customer (`reporting.adapters.credit_ledger`). Revision 0005's recomputed a
customer's ledger from every movement they ever had on every insert; 0006's add the new
movements to the rows they change. This migrates two databases, one to 0005 and one to head,
and inserts the same movements into both, alternating, one statement each as the projection
does: per customer and month, one credit movement (a sale) and one bonus movement (an
accrual). It prints the median wall time of the INSERT (its triggers included) per revision
and kind, every few months of history (`bench.revisions`):

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.ledger_triggers \\
        --months 36 --customers 300

Wall time of one statement on an otherwise idle server: PostgreSQL's own work for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.revisions import alternate_revisions

REVISIONS = ("0005", "head")
_INSERT = (
    "INSERT INTO rm_movements (message_id, seq, chain_id, customer_id, at, kind, description,"
    " goods, payments, bonus_kind, bonus_change) VALUES ($1, 0, $2, $3, $4, 'sale', 'x', $5,"
    " $6, $7, $8)"
)


async def _run(server: str, months: int, customers: int, every: int) -> list[dict[str, Any]]:
    chain = uuid.uuid4()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    values = {"credit": (10, 4, None, 0), "bonus": (0, 0, "accrued", 1)}

    def insert(
        conn: asyncpg.Connection, customer: uuid.UUID, month: int, n: int, kind: str
    ) -> Awaitable[Any]:
        at = start + timedelta(days=30 * month, minutes=n)
        return conn.execute(_INSERT, uuid.uuid4(), chain, customer, at, *values[kind])

    return await alternate_revisions(
        server,
        name="ledger",
        revisions=REVISIONS,
        kinds=tuple(values),
        rounds=months,
        customers=customers,
        every=every,
        label="months_of_history",
        step=insert,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_triggers")
    parser.add_argument("--months", type=int, default=24, help="months of history built")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--every", type=int, default=6, help="print every this many months")
    args = parser.parse_args(argv)
    server = os.environ["DATABASE_URL"]
    asyncio.run(_run(server, args.months, args.customers, args.every))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
