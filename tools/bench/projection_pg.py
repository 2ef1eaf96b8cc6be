"""PostgreSQL's side of reporting's projection per event of a sale (what `bench.projection_cpu`
does not see): the sale mix of `bench.projection_cpu` fed through reporting's real consumer in
batches of `--batch`, and for the measured sales

- the CPU of the consumer's PostgreSQL backend processes (`/proc/<pid>/stat`, utime + stime,
  read around the measured part: every statement the consumer sends, the commits included);
- when the server has `pg_stat_statements` loaded (`shared_preload_libraries`; devstack does
  not load it), the server time of each statement (`total_exec_time` + `total_plan_time`),
  those run inside trigger functions too (`pg_stat_statements.track = all`): the projection's
  batch write (`projection_batch._WRITE_BATCH`, its triggers included) and the top statements,
  per event.

    PYTHONPATH=tools .venv/bin/python -m bench.projection_pg --sales 200 --batch 5

`--ab-src DIR` runs it alternately with reporting's code under DIR and this checkout's
(`bench.inprocess.alternate`), `--repeats` times each. PostgreSQL comes from `DATABASE_URL`,
else devstack starts one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
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


async def _measure(
    server_url: str,
    sales: int,
    customers: int,
    warmup: int,
    batch: int,
    top: int,
    explain: int = 0,
) -> dict[str, Any]:
    from reporting.entrypoints.app import MIGRATIONS_DIR
    from reporting.service_layer.handlers import make_consumer
    from servicekit.db import make_engine, make_session_factory, prepare_database
    from servicekit.settings import with_database

    stream = SaleStream(customers, seed=14)
    setup = stream.setup()
    events = [(n >= warmup, *e) for n in range(warmup + sales + explain) for e in stream.sale(n)]
    name = f"bench_reportpg_{secrets.token_hex(4)}"
    url = with_database(server_url, name)
    await prepare_database(MIGRATIONS_DIR, url)
    engine = make_engine(url, pool_size=2)
    consumer = make_consumer()
    bind_as_in_a_service(consumer, make_session_factory(engine))
    topics = set(consumer.topics)
    offset = 0
    for model in setup:
        await consumer.process_records([record(model, _key(model), offset)])
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
    for i in range(0, len(warm), batch):
        await consumer.process_records(warm[i : i + batch])

    # the superuser over the local socket (devstack trusts it): the extension and every
    # statement's figures
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    monitor = await asyncpg.connect(
        host=socket_dir, port=parts.port, user="postgres", database=name
    )
    try:
        stats = await monitor.fetchval(
            "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"
        )
        if stats:
            await monitor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await monitor.execute("SELECT pg_stat_statements_reset()")
        pids = [
            r["pid"]
            for r in await monitor.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        ]
        cpu_before = _cpu_ms(pids)
        for i in range(0, len(hot), batch):
            await consumer.process_records(hot[i : i + batch])
        cpu = _cpu_ms(pids) - cpu_before
        n_sales = sum(kind == "SaleCompleted" for _, kind, r in mine if r in hot)
        out: dict[str, Any] = {
            "events": len(hot),
            "sales": n_sales,
            "backend_cpu_ms_per_event": round(cpu / len(hot), 4),
        }
        if stats:
            rows = await monitor.fetch(
                "SELECT query, toplevel, calls, total_exec_time + total_plan_time AS ms,"
                " total_plan_time AS plan_ms"
                " FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)"
                " ORDER BY ms DESC",
                name,
            )
            top_level = sum(r["ms"] for r in rows if r["toplevel"])
            write = [r for r in rows if r["toplevel"] and "ANY($14::uuid[])" in r["query"]]
            write_ms = sum(r["ms"] for r in write)
            out["server_ms_per_event"] = round(top_level / len(hot), 4)
            out["batch_write_ms_per_event"] = round(write_ms / len(hot), 4)
            out["batch_write_ms_per_call"] = round(
                write_ms / max(1, sum(r["calls"] for r in write)), 4
            )
            out["top"] = [
                {
                    "ms_per_event": round(r["ms"] / len(hot), 4),
                    "plan_ms_per_event": round(r["plan_ms"] / len(hot), 4),
                    "calls": r["calls"],
                    "toplevel": r["toplevel"],
                    "query": " ".join(r["query"].split())[:160],
                }
                for r in rows[:top]
            ]
        if explain:
            from reporting.adapters import projection_batch

            plans: list[str] = []
            original = _explain_batch_writes(plans)
            for i in range(0, len(extra), batch):
                await consumer.process_records(extra[i : i + batch])
            projection_batch.sql = original
            print(plans[-1], file=sys.stderr)
    finally:
        await monitor.close()
        await engine.dispose()
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
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=20, help="sales before the measure")
    parser.add_argument("--batch", type=int, default=5, help="events per consumed batch")
    parser.add_argument("--top", type=int, default=15, help="statements listed")
    parser.add_argument(
        "--explain",
        type=int,
        default=0,
        metavar="N",
        help="after the measure, EXPLAIN ANALYZE the batch write of N more batches (the"
        " last one's plan to stderr)",
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
