"""What `bench.ledger_triggers` and `bench.open_debt_triggers` share: two databases migrated to
two revisions of reporting, the same statements run on both alternately (the order switched
every customer), and the median wall time per revision and kind, printed every few rounds.

Wall time of one statement on an otherwise idle server: PostgreSQL's own work for it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from reporting.entrypoints.app import MIGRATIONS_DIR
from servicekit.db import ensure_database, plain_url, run_migrations
from servicekit.settings import with_database

#: one measured statement, made (not yet awaited) from (connection, customer, round, customer's
#: index, kind): its arguments are built before the clock starts
Step = Callable[[asyncpg.Connection, uuid.UUID, int, int, str], Awaitable[Any]]


async def alternate_revisions(
    server: str,
    *,
    name: str,
    revisions: Sequence[str],
    kinds: Sequence[str],
    rounds: int,
    customers: int,
    every: int,
    label: str,
    step: Step,
) -> list[dict[str, Any]]:
    """A database per revision on `server`; per round, `step` for every customer, revision
    and kind; a row of medians (`<revision>_<kind>_ms`) after the first round and every
    `every` rounds, `label` holding how many rounds have run."""
    conns: dict[str, asyncpg.Connection] = {}
    for revision in revisions:
        url = with_database(server, f"bench_{name}_{revision}_{uuid.uuid4().hex[:6]}")
        await ensure_database(url)
        await asyncio.to_thread(run_migrations, MIGRATIONS_DIR, url, revision)
        conns[revision] = await asyncpg.connect(plain_url(url))
    ids = [uuid.uuid4() for _ in range(customers)]
    rows: list[dict[str, Any]] = []
    try:
        for n_round in range(rounds):
            spent: dict[tuple[str, str], list[float]] = {
                (r, k): [] for r in revisions for k in kinds
            }
            for n, customer in enumerate(ids):
                order = revisions if n % 2 else tuple(reversed(revisions))
                for revision in order:
                    for kind in kinds:
                        statement = step(conns[revision], customer, n_round, n, kind)
                        started = time.perf_counter()
                        await statement
                        spent[(revision, kind)].append((time.perf_counter() - started) * 1000)
            if n_round == 0 or (n_round + 1) % every == 0:
                row: dict[str, Any] = {label: n_round + 1}
                for (revision, kind), values in spent.items():
                    row[f"{revision}_{kind}_ms"] = round(statistics.median(values), 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for conn in conns.values():
            await conn.close()
    return rows
