"""PostgreSQL's side of reporting's projection per event of a sale (what `bench.projection_cpu`
does not see): the sale mix of `bench.projection_cpu` fed through reporting's real consumer in
batches of `--batch` after a warm-up that gives every customer their report sums (then ANALYZE,
as a long-running database has its statistics), and for the measured sales

- the CPU of the consumer's PostgreSQL backend process (`/proc/<pid>/stat`, utime + stime,
  read around each batch, in clock ticks: coarse; every statement, the commits included);
- when the server has `pg_stat_statements` loaded (`shared_preload_libraries`; devstack does
  not load it: pass `shared_preload_libraries=pg_stat_statements`,
  `pg_stat_statements.track=all` and `pg_stat_statements.track_planning=on` in
  `devstack.postgres.render_server_options` for the measure), the server time of each
  statement (`total_exec_time` + `total_plan_time`), those run inside trigger functions too:
  the projection's batch write (`projection_batch._WRITE_BATCH`, its triggers included) and
  the top statements, per event;
- `--explain N`: after the measure, `EXPLAIN (ANALYZE, BUFFERS)` of the batch write of N more
  batches (in a savepoint rolled back, then the write itself), the last plan to stderr and the
  mean time of each trigger and of the execution (`explained`).

    PYTHONPATH=tools .venv/bin/python -m bench.projection_pg --sales 300 --batch 10

`--revisions 0008,head`: a database migrated to each revision, fed the same batches, each batch
to every database in turn (the order reversed every other batch), so what else runs on the
machine weighs on each alike; `paired` compares the batch write's server time of the last
revision with the first's batch by batch (median difference and ratio). It compares schema and
trigger changes with the same Python code; `--ab-src DIR` runs the whole measure alternately
with reporting's code under DIR and this checkout's (`bench.inprocess.alternate`),
`--repeats` times each. PostgreSQL comes from `DATABASE_URL`, else devstack starts one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from bench.inprocess import alternate, bind_as_in_a_service, database_server, record
from bench.projection_cpu import SaleStream, _key

_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _cpu_ms(pids: list[int]) -> float:
    """utime + stime of these processes, in ms."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * _TICK_MS


def _explain_batch_writes(plans: list[str]) -> Any:
    """`projection_batch`'s `sql` with `fetch` also running `EXPLAIN (ANALYZE, BUFFERS)` of the
    batch write first (in a savepoint rolled back), its plan appended to `plans`."""
    from reporting.adapters import projection_batch
    from servicekit import sql

    class Explaining:
        def __getattr__(self, name: str) -> Any:
            return getattr(sql, name)

        async def fetch(self, db: Any, query: str, *args: Any) -> Any:
            if query == projection_batch._WRITE_BATCH:
                await sql.execute(db, "SAVEPOINT bench_explain")
                rows = await sql.fetch(db, "EXPLAIN (ANALYZE, BUFFERS) " + query, *args)
                plans.append("\n".join(r[0] for r in rows))
                await sql.execute(db, "ROLLBACK TO SAVEPOINT bench_explain")
            return await sql.fetch(db, query, *args)

    original = projection_batch.sql
    projection_batch.sql = Explaining()  # type: ignore[assignment]
    return original


@dataclass
class _Variant:
    """A database at one revision, the consumer writing to it, the superuser's connection."""

    name: str
    name_of: str
    engine: Any
    consumer: Any
    monitor: asyncpg.Connection
    pids: list[int] = field(default_factory=list)
    cpu_ms: float = 0.0
    #: the batch write's server time so far, after each batch
    write_ms: list[float] = field(default_factory=list)


async def _variant(server_url: str, revision: str) -> _Variant:
    from bench.revisions import _upgrade
    from reporting.service_layer.handlers import make_consumer
    from servicekit.db import ensure_database, make_engine, make_session_factory
    from servicekit.settings import with_database

    name = f"bench_reportpg_{secrets.token_hex(4)}"
    url = with_database(server_url, name)
    await ensure_database(url)
    await asyncio.to_thread(_upgrade, url, revision)
    engine = make_engine(url, pool_size=2)
    consumer = make_consumer()
    bind_as_in_a_service(consumer, make_session_factory(engine))
    # the superuser over the local socket (devstack trusts it): the extension and every
    # statement's figures
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    monitor = await asyncpg.connect(
        host=socket_dir, port=parts.port, user="postgres", database=name
    )
    return _Variant(name, revision, engine, consumer, monitor)


async def _measure(
    server_url: str,
    sales: int,
    customers: int,
    warmup: int,
    batch: int,
    top: int,
    explain: int = 0,
    revisions: tuple[str, ...] = ("head",),
) -> dict[str, Any]:
    """The measure on a database per revision (`revisions`), fed the same batches, each batch
    to every database in turn (the order reversed every other batch): what else runs on the
    machine meanwhile weighs on each alike."""
    stream = SaleStream(customers, seed=14)
    setup = stream.setup()
    events = [(n >= warmup, *e) for n in range(warmup + sales + explain) for e in stream.sale(n)]
    variants = {r: await _variant(server_url, r) for r in revisions}
    topics = set(next(iter(variants.values())).consumer.topics)
    offset = 0
    for model in setup:
        for v in variants.values():
            await v.consumer.process_records([record(model, _key(model), offset)])
        offset += 1
    mine: list[tuple[bool, str, Any]] = []
    for measured, kind, model in events:
        rec = record(model, _key(model), offset)
        offset += 1
        if rec.topic in topics:
            mine.append((measured, kind, rec))
    warm = [r for measured, _, r in mine if not measured]
    hot = [r for measured, _, r in mine if measured]
    extra = hot[len(hot) - explain * batch :] if explain else []
    hot = hot[: len(hot) - len(extra)]
    order = list(variants.values())
    for i in range(0, len(warm), batch):
        for v in order:
            await v.consumer.process_records(warm[i : i + batch])

    out: dict[str, Any] = {}
    try:
        any_monitor = order[0].monitor
        stats = await any_monitor.fetchval(
            "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"
        )
        for v in order:
            # planner statistics as a long-running database has them (the plans cached by
            # the consumer's connection, its trigger functions' too, are made again)
            await v.monitor.execute("ANALYZE")
            if stats:
                await v.monitor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            v.pids = [
                r["pid"]
                for r in await v.monitor.fetch(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    v.name,
                )
            ]
        if stats:
            await any_monitor.execute("SELECT pg_stat_statements_reset()")
        for n, i in enumerate(range(0, len(hot), batch)):
            for v in order if n % 2 == 0 else reversed(order):
                before = _cpu_ms(v.pids)
                await v.consumer.process_records(hot[i : i + batch])
                v.cpu_ms += _cpu_ms(v.pids) - before
                if stats:
                    v.write_ms.append(await _write_ms(v))
        n_sales = sum(kind == "SaleCompleted" for _, kind, r in mine if r in hot)
        for revision, v in variants.items():
            out[revision] = await _figures(v, len(hot), n_sales, stats, top)
        if stats and len(order) > 1:
            out["paired"] = _paired(order)
        if explain:
            from reporting.adapters import projection_batch

            for v in order:
                plans: list[str] = []
                original = _explain_batch_writes(plans)
                for i in range(0, len(extra), batch):
                    await v.consumer.process_records(extra[i : i + batch])
                projection_batch.sql = original
                print(f"-- {v.name_of}\n{plans[-1]}", file=sys.stderr)
                out.setdefault(v.name_of, {})["explained"] = _explained(plans)
    finally:
        for v in order:
            await v.monitor.close()
            await v.engine.dispose()
    return out if len(revisions) > 1 else out[revisions[0]]


_WRITE_MS = (
    "SELECT coalesce(sum(total_exec_time + total_plan_time), 0) FROM pg_stat_statements"
    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND toplevel"
    " AND query LIKE '%ANY($14::uuid[])%'"
)


async def _write_ms(v: _Variant) -> float:
    ms: float = await v.monitor.fetchval(_WRITE_MS, v.name)
    return ms


def _paired(variants: list[_Variant]) -> dict[str, Any]:
    """The batch write's server time per batch of the last variant against the first's, batch
    by batch (both wrote the same batch one after the other): the median of the differences
    and of the ratios, robust to what else ran on the machine meanwhile."""
    first, last = variants[0], variants[-1]

    def per_batch(v: _Variant) -> list[float]:
        return [b - a for a, b in zip([0.0, *v.write_ms], v.write_ms, strict=False)]

    pairs = [(a, b) for a, b in zip(per_batch(first), per_batch(last), strict=True) if a > 0]
    return {
        f"{first.name_of}_ms_per_batch": round(statistics.median(a for a, _ in pairs), 4),
        f"{last.name_of}_ms_per_batch": round(statistics.median(b for _, b in pairs), 4),
        "median_difference_ms": round(statistics.median(b - a for a, b in pairs), 4),
        "median_ratio": round(statistics.median(b / a for a, b in pairs), 4),
        "batches": len(pairs),
    }


def _explained(plans: list[str]) -> dict[str, float]:
    """The mean over the plans of the execution time and of each trigger's time (ms)."""
    sums: dict[str, float] = defaultdict(float)
    for plan in plans:
        for line in plan.splitlines():
            if found := re.match(r"Trigger (\S+) on \S+: time=([0-9.]+)", line):
                sums[found.group(1)] += float(found.group(2))
            elif found := re.match(r"(Planning|Execution) Time: ([0-9.]+)", line):
                sums[found.group(1).lower()] += float(found.group(2))
    return {name: round(total / len(plans), 4) for name, total in sums.items()}


async def _figures(v: _Variant, events: int, sales: int, stats: bool, top: int) -> dict[str, Any]:
    """A variant's figures per event (the consumer's statements: not the superuser's, who
    asks for them)."""
    out: dict[str, Any] = {
        "events": events,
        "sales": sales,
        "backend_cpu_ms_per_event": round(v.cpu_ms / events, 4),
    }
    if not stats:
        return out
    rows = await v.monitor.fetch(
        "SELECT query, toplevel, calls, total_exec_time + total_plan_time AS ms,"
        " total_plan_time AS plan_ms"
        " FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)"
        " AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        " ORDER BY ms DESC",
        v.name,
    )
    top_level = sum(r["ms"] for r in rows if r["toplevel"])
    write = [r for r in rows if r["toplevel"] and "ANY($14::uuid[])" in r["query"]]
    write_ms = sum(r["ms"] for r in write)
    out["server_ms_per_event"] = round(top_level / events, 4)
    out["batch_write_ms_per_event"] = round(write_ms / events, 4)
    out["batch_write_ms_per_call"] = round(write_ms / max(1, sum(r["calls"] for r in write)), 4)
    out["top"] = [
        {
            "ms_per_event": round(r["ms"] / events, 4),
            "plan_ms_per_event": round(r["plan_ms"] / events, 4),
            "calls": r["calls"],
            "toplevel": r["toplevel"],
            "query": " ".join(r["query"].split())[:160],
        }
        for r in rows[:top]
    ]
    return out


def _one(args: argparse.Namespace) -> None:
    with database_server() as server:
        result = asyncio.run(
            _measure(
                server,
                args.sales,
                args.customers,
                args.warmup,
                args.batch,
                args.top,
                args.explain,
                tuple(args.revisions.split(",")),
            )
        )
    print(json.dumps(result))


def _ab(args: argparse.Namespace) -> None:
    passed = [
        f"--sales={args.sales}",
        f"--customers={args.customers}",
        f"--warmup={args.warmup}",
        f"--batch={args.batch}",
        "--top=0",
    ]
    runs = alternate(
        "bench.projection_pg",
        passed,
        args.ab_src,
        ("reporting",),
        args.repeats,
        libs=("servicekit", "contracts"),
    )
    out: dict[str, Any] = {}
    for variant, results in runs.items():
        out[variant] = {
            key: {
                "median": round(statistics.median(r[key] for r in results), 4),
                "runs": [r[key] for r in results],
            }
            for key, value in results[0].items()
            if isinstance(value, float)
        }
    print(json.dumps(out, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projection_pg")
    parser.add_argument("--sales", type=int, default=200, help="sales measured")
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument(
        "--warmup",
        type=int,
        default=300,
        help="sales before the measure (every customer has had a few: their report sums"
        " exist, as in a running stack)",
    )
    parser.add_argument("--batch", type=int, default=10, help="events per consumed batch")
    parser.add_argument("--top", type=int, default=15, help="statements listed")
    parser.add_argument(
        "--explain",
        type=int,
        default=0,
        metavar="N",
        help="after the measure, EXPLAIN ANALYZE the batch write of N more batches (the"
        " last one's plan to stderr)",
    )
    parser.add_argument(
        "--revisions",
        default="head",
        help="comma-separated: a database migrated to each, fed the same batches in turn",
    )
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.ab_src:
        _ab(args)
    else:
        _one(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
