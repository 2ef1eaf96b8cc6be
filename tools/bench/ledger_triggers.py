"""What reporting's ledger triggers cost PostgreSQL per movement, as customers' histories grow.

`rm_movements` has statement-level triggers keeping the Payment-Balance and Bonus statistics
sums per customer (`reporting.adapters.credit_ledger`). Revision 0005's recomputed a
customer's ledger from every movement they ever had on every insert; 0006's add the new
movements to the rows they change. This migrates two databases, one to 0005 and one to head,
and inserts the same movements into both, alternating, one statement each as the projection
does: per customer and month, one credit movement (a sale) and one bonus movement (an
accrual). It prints the median wall time of the INSERT (its triggers included) per revision
and kind, every few months of history:

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.ledger_triggers \\
        --months 36 --customers 300

Wall time of one statement on an otherwise idle server: PostgreSQL's own work for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config

import reporting
from servicekit.db import ensure_database, plain_url
from servicekit.settings import to_asyncpg_url, with_database

MIGRATIONS = Path(reporting.__file__).parent / "migrations"
REVISIONS = ("0005", "head")
_INSERT = (
    "INSERT INTO rm_movements (message_id, seq, chain_id, customer_id, at, kind, description,"
    " goods, payments, bonus_kind, bonus_change) VALUES ($1, 0, $2, $3, $4, 'sale', 'x', $5,"
    " $6, $7, $8)"
)


def _upgrade(url: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", to_asyncpg_url(url).replace("%", "%%"))
    command.upgrade(cfg, revision)


async def _run(server: str, months: int, customers: int, every: int) -> list[dict[str, Any]]:
    conns: dict[str, asyncpg.Connection] = {}
    for revision in REVISIONS:
        url = with_database(server, f"bench_ledger_{revision}_{uuid.uuid4().hex[:6]}")
        await ensure_database(url)
        await asyncio.to_thread(_upgrade, url, revision)
        conns[revision] = await asyncpg.connect(plain_url(url))
    chain = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(customers)]
    start = datetime(2024, 1, 1, tzinfo=UTC)

    async def insert(
        conn: asyncpg.Connection, customer: uuid.UUID, at: datetime, bonus: bool
    ) -> float:
        values = (0, 0, "accrued", 1) if bonus else (10, 4, None, 0)
        started = time.perf_counter()
        await conn.execute(_INSERT, uuid.uuid4(), chain, customer, at, *values)
        return (time.perf_counter() - started) * 1000

    rows: list[dict[str, Any]] = []
    try:
        for month in range(months):
            spent: dict[tuple[str, str], list[float]] = {
                (r, k): [] for r in REVISIONS for k in ("credit", "bonus")
            }
            for n, customer in enumerate(ids):
                at = start + timedelta(days=30 * month, minutes=n)
                order = REVISIONS if n % 2 else tuple(reversed(REVISIONS))
                for revision in order:
                    for kind in ("credit", "bonus"):
                        ms = await insert(conns[revision], customer, at, kind == "bonus")
                        spent[(revision, kind)].append(ms)
            if month == 0 or (month + 1) % every == 0:
                row: dict[str, Any] = {"months_of_history": month + 1}
                for (revision, kind), values in spent.items():
                    row[f"{revision}_{kind}_ms"] = round(statistics.median(values), 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for conn in conns.values():
            await conn.close()
    return rows


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
