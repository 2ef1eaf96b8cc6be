"""Where a till operation's time goes between the services, hop by hop, from the timestamps its
transactions left in the gateway's, credit's and loyalty's databases (one PostgreSQL server, so
one clock).

Every message of a till operation carries the HTTP request's correlation id in its envelope, and
each outbox row is written by the transaction that handled the message before it, so its
`created_at` (`now()`) is that transaction's start. A card sale leaves:

    gateway: RecordSale      created_at = the request's transaction start
    credit:  ApplyBonuses    created_at = credit's transaction for the command
    loyalty: BonusesApplied  created_at = loyalty's transaction
    credit:  SaleCompleted   created_at = credit's transaction for loyalty's answer
    gateway: operations.completed_at = the outcome stored (the waiting request is woken then)

A hop (`credit -> loyalty`) is the time from one transaction's start to the next one's: the
first transaction's work and commit, its relay publishing the row, Kafka, and the next
consumer's fetch, decode and wait for a connection. Rows a transaction writes together (loyalty's
answer and its movements) count once. Operations are grouped by the path they took
(`gateway>credit>loyalty>credit>gateway`). For each path: every hop's p50 and p99, and its mean
over the path's slowest 5% (by the whole path) against its mean over all, which names the hop
that makes the tail. Besides, per service, the relay's delay: a row's `sent_at` (marked after
Kafka acknowledged it) minus its `created_at`.

Not in the figures: the HTTP request before the gateway's transaction, and the wake-up and
answer after the outcome is stored (the load generator's latency holds both).
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bench.loadgen import percentile
from contracts.gateway.v1 import (
    RecordAdvance,
    RecordDebtPayment,
    RecordRefund,
    RecordReturn,
    RecordSale,
)
from servicekit.settings import with_database

#: the services that write a till operation's messages, and their databases
DATABASES = {"gateway": "gateway", "credit": "credit", "loyalty": "loyalty"}

#: the gateway's command types and the payload field that is the operation's id there
_OPERATION_ID = {
    RecordSale.TYPE: "sale_id",
    RecordDebtPayment.TYPE: "payment_id",
    RecordAdvance.TYPE: "payment_id",
    RecordRefund.TYPE: "refund_id",
    RecordReturn.TYPE: "return_id",
}

#: the correlation id from the row's headers (the relay's, written with every envelope), and
#: the payload decoded only for the gateway's commands: a dead letter's row carries the
#: original bytes, which need not be JSON
_ROWS = (
    "SELECT headers->>'correlation_id' AS corr, type, created_at, sent_at,"
    " CASE WHEN type = ANY($3::text[]) THEN convert_from(value, 'UTF8')::jsonb->'payload' END"
    " AS payload FROM outbox WHERE created_at >= $1 AND created_at < $2"
)
_COMPLETED = (
    "SELECT operation_id::text AS id, chain_id::text AS chain, completed_at FROM operations"
    " WHERE created_at >= $1 AND created_at < $2 AND completed_at IS NOT NULL"
)

TAIL_SHARE = 0.05


@dataclass(frozen=True)
class Row:
    service: str
    corr: str
    type: str
    created_at: datetime
    sent_at: datetime | None
    payload: dict[str, Any] | None = None


async def read(
    database_url: str,
    since: datetime,
    until: datetime,
    databases: dict[str, str] | None = None,
) -> tuple[list[Row], dict[tuple[str, str], datetime]]:
    """The outbox rows of the three databases (`DATABASES` unless given) written in
    [since, until), and the gateway's completed operations begun then, by (chain id,
    operation id)."""
    rows: list[Row] = []
    completed: dict[tuple[str, str], datetime] = {}
    for service, name in (databases or DATABASES).items():
        conn = await asyncpg.connect(with_database(database_url, name))
        try:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            commands = list(_OPERATION_ID) if service == "gateway" else []
            for r in await conn.fetch(_ROWS, since, until, commands):
                if r["corr"] is None:  # not an envelope (a dead letter): no operation's hop
                    continue
                rows.append(
                    Row(service, r["corr"], r["type"], r["created_at"], r["sent_at"], r["payload"])
                )
            if service == "gateway":
                for r in await conn.fetch(_COMPLETED, since, until):
                    completed[(r["chain"], r["id"])] = r["completed_at"]
        finally:
            await conn.close()
    return rows, completed


def timelines(
    rows: list[Row], completed: dict[tuple[str, str], datetime]
) -> list[list[tuple[str, datetime]]]:
    """Per till operation the gateway sent and stored an outcome for: its transactions in
    order as (service, start), one per service and start, ending with ("gateway", the outcome
    stored)."""
    by_corr: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_corr[row.corr].append(row)
    out: list[list[tuple[str, datetime]]] = []
    for corr_rows in by_corr.values():
        command = next(
            (r for r in corr_rows if r.service == "gateway" and r.type in _OPERATION_ID), None
        )
        if command is None or command.payload is None:
            continue
        op_id = command.payload.get(_OPERATION_ID[command.type])
        done = completed.get((str(command.payload.get("chain_id")), str(op_id)))
        if done is None:
            continue
        steps = sorted({(r.created_at, r.service) for r in corr_rows if r.created_at <= done})
        out.append([(service, at) for at, service in steps] + [("gateway", done)])
    return out


def _ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


def _summary(values: list[float]) -> dict[str, float | None]:
    def pct(q: float) -> float | None:
        found = percentile(values, q)
        return None if found is None else round(found, 1)

    return {"p50": pct(50), "p99": pct(99)}


def breakdown(rows: list[Row], completed: dict[tuple[str, str], datetime]) -> dict[str, Any]:
    """The figures described in the module's docstring, as JSON."""
    paths: dict[str, list[list[float]]] = defaultdict(list)
    for steps in timelines(rows, completed):
        path = ">".join(service for service, _ in steps)
        paths[path].append([_ms(x, y) for (_, x), (_, y) in itertools.pairwise(steps)])
    result: dict[str, Any] = {"operations": sum(len(v) for v in paths.values()), "paths": {}}
    for path, hops in sorted(paths.items(), key=lambda kv: -len(kv[1])):
        totals = [sum(h) for h in hops]
        tail_n = max(1, round(len(hops) * TAIL_SHARE))
        tail = sorted(hops, key=sum)[-tail_n:]
        result["paths"][path] = {
            "n": len(hops),
            "total_ms": _summary(totals),
            "tail_n": tail_n,
            "hops": [
                {
                    "hop": name,
                    **_summary([h[i] for h in hops]),
                    "mean": round(statistics.fmean(h[i] for h in hops), 1),
                    "tail_mean": round(statistics.fmean(h[i] for h in tail), 1),
                }
                for i, name in enumerate(
                    f"{a} -> {b}" for a, b in itertools.pairwise(path.split(">"))
                )
            ],
        }
    relay: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.sent_at is not None:
            relay[row.service].append(_ms(row.created_at, row.sent_at))
    result["relay_ms"] = {service: _summary(v) for service, v in sorted(relay.items())}
    return result


async def measure(
    database_url: str,
    since: datetime,
    until: datetime,
    databases: dict[str, str] | None = None,
) -> dict[str, Any]:
    rows, completed = await read(database_url, since, until, databases)
    return breakdown(rows, completed)
