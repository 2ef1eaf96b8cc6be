"""Bytes per request in each database table and Kafka topic, measured on a small run.

A stack of its own (devstack: one broker, PostgreSQL, the five services) gets the benchmark's
load mix (`bench.loadgen`; the mix it made is written down with the figures) at a modest
rate. Before and after, per database table: rows inserted (`pg_stat_user_tables`)
and its size with indexes and TOAST (`pg_total_relation_size`) over its live rows, giving rows
and bytes per request; per database: commits; the server's WAL bytes; per Kafka topic:
messages (end offsets) and bytes (the partitions' `.log` segment files). Then a snapshot of
reporting's read models is taken and measured. Written to `docs/capacity/measured-<label>.json`
for `python -m tools.capacity plan`.

Per-row sizes are taken from the whole table (size / live rows after `ANALYZE`), not from the
growth of its files, which moves in 8 KiB pages and counts dead row versions of the run's
updates that autovacuum would reuse.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.topics import ALL_TOPICS
from devstack.paths import repo_root
from devstack.procs import no_progress
from devstack.services import ServicePorts
from devstack.stack import Stack, purge_run_dir, start_stack
from servicekit.settings import with_database

#: the services' databases (each service derives its own from DATABASE_URL: `default_database`)
DATABASES = {
    "gateway": "gateway",
    "credit": "credit",
    "loyalty": "loyalty",
    "reporting": "reporting",
    "notifier": "notifier",
}
#: tables whose rows are deleted after a while: their steady size is that many hours of rows
TRANSIENT_HOURS = {
    "outbox": 24.0,  # sent rows, OUTBOX_KEEP_SENT_HOURS
    "idempotency_keys": 48.0,  # GATEWAY_IDEMPOTENCY_KEEP_HOURS
}


def _say(message: str) -> None:
    print(f"[capacity] {message}", file=sys.stderr, flush=True)


def _database_url(server_url: str, name: str) -> str:
    return with_database(server_url, name)


async def _table_stats(server_url: str) -> dict[str, Any]:
    """Per service: commits, and per table rows inserted, live rows and total bytes."""
    out: dict[str, Any] = {}
    for service, name in DATABASES.items():
        conn = await asyncpg.connect(_database_url(server_url, name))
        try:
            await conn.execute("ANALYZE")
            rows = await conn.fetch(
                """SELECT s.relname, s.n_tup_ins, c.reltuples,
                          pg_total_relation_size(s.relid) AS bytes
                   FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                   WHERE s.schemaname = 'public'"""
            )
            commits = await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
        finally:
            await conn.close()
        out[service] = {
            "database": name,
            "commits": int(commits),
            "database_bytes": int(size),
            "tables": {
                r["relname"]: {
                    "inserted": int(r["n_tup_ins"]),
                    "live_rows": max(0, int(r["reltuples"])),
                    "bytes": int(r["bytes"]),
                }
                for r in rows
            },
        }
    return out


async def _wal_bytes(server_url: str) -> int:
    conn = await asyncpg.connect(server_url)
    try:
        return int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
    finally:
        await conn.close()


async def _topic_stats(stack: Stack) -> dict[str, dict[str, int]]:
    """Per topic: messages (sum of end offsets) and bytes of its partitions' segment files."""
    # the producer fetches a topic's metadata when asked for its partitions (a consumer
    # without a subscription knows none)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers)
    reader = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap_servers)
    await producer.start()
    await reader.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in ALL_TOPICS
            for p in sorted(await producer.partitions_for(t))
        ]
        ends = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
        await producer.stop()
    assert stack.infra.kafka is not None, "the measurement starts its own Kafka"
    roots = [
        stack.run_dir / ("kafka" if stack.infra.kafka.brokers == 1 else f"kafka-{n}") / "data"
        for n in range(1, stack.infra.kafka.brokers + 1)
    ]
    out: dict[str, dict[str, int]] = {}
    for topic in ALL_TOPICS:
        size = sum(f.stat().st_size for root in roots for f in root.glob(f"{topic}-*/*.log"))
        messages = sum(v for tp, v in ends.items() if tp.topic == topic)
        out[topic] = {"messages": int(messages), "bytes": int(size)}
    return out


async def _snapshot_bytes(stack: Stack) -> dict[str, Any]:
    """Take a snapshot of reporting's read models and measure its schema."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reporting.snapshot",
        env=stack.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"snapshot failed: {err.decode(errors='replace')[-500:]}")
    conn = await asyncpg.connect(_database_url(stack.database_url, "reporting"))
    try:
        row = await conn.fetchrow(
            "SELECT schema_name, row_counts FROM snapshots ORDER BY snapshot_id DESC LIMIT 1"
        )
        size = await conn.fetchval(
            """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relkind = 'r'""",
            row["schema_name"],
        )
    finally:
        await conn.close()
    return {
        "schema": row["schema_name"],
        "bytes": int(size),
        "row_counts": json.loads(row["row_counts"]),
    }


async def _wait_drained(stack: Stack, limit: float = 120.0) -> None:
    from bench.pipeline import Scraper

    scraper = Scraper(stack)
    try:
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if sum((await scraper.consumer_lag()).values()) == 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await scraper.close()


def _per_request(
    before: dict[str, Any], after: dict[str, Any], requests: int, sales: int
) -> dict[str, Any]:
    """The run's deltas as per-request and per-sale figures."""
    services: dict[str, Any] = {}
    for service, now in after["tables"].items():
        then = before["tables"][service]
        tables = {}
        for name, t in sorted(now["tables"].items()):
            inserted = t["inserted"] - then["tables"].get(name, {}).get("inserted", 0)
            per_row = t["bytes"] / t["live_rows"] if t["live_rows"] else 0.0
            tables[name] = {
                "rows_per_request": round(inserted / requests, 4),
                "bytes_per_row": round(per_row, 1),
                "bytes_per_request": round(inserted / requests * per_row, 1),
                "transient_hours": TRANSIENT_HOURS.get(name),
            }
        services[service] = {
            "commits_per_request": round((now["commits"] - then["commits"]) / requests, 2),
            "tables": tables,
        }
    topics = {}
    for topic, now in after["topics"].items():
        then = before["topics"][topic]
        messages = now["messages"] - then["messages"]
        size = now["bytes"] - then["bytes"]
        topics[topic] = {
            "messages_per_request": round(messages / requests, 4),
            "bytes_per_message": round(size / messages, 1) if messages else 0.0,
        }
    return {
        "requests": requests,
        "sales": sales,
        "wal_bytes_per_request": round((after["wal"] - before["wal"]) / requests, 1),
        "services": services,
        "topics": topics,
    }


async def _measure(
    stack: Stack, *, rate: float, seconds: float, customers: int, stores: int
) -> dict[str, Any]:
    from bench.loadgen import LoadGenerator

    gen = LoadGenerator(stack.gateway_url, stack.operator_token)
    try:
        _say(f"set-up: 1 chain, {stores} stores, {customers} customers")
        await gen.setup(
            chains=1, stores_per_chain=stores, customers_per_chain=customers, probes_per_chain=4
        )
        await gen.run_step(min(rate, 5.0), 4.0)  # warm-up: first sales, first bonus
        await gen.settle(60)
        await _wait_drained(stack)
        before = {
            "tables": await _table_stats(stack.database_url),
            "wal": await _wal_bytes(stack.database_url),
            "topics": await _topic_stats(stack),
        }
        _say(f"load: {rate:g} requests/s for {seconds:g} s")
        stats, _, _ = await gen.run_step(rate, seconds)
        await gen.settle(120)
        await _wait_drained(stack)
        await asyncio.sleep(2.0)  # the relays' last round
        after = {
            "tables": await _table_stats(stack.database_url),
            "wal": await _wal_bytes(stack.database_url),
            "topics": await _topic_stats(stack),
        }
    finally:
        await gen.close()
    requests = len(stats.records)
    sales = sum(1 for r in stats.records if r.kind.startswith("sale"))
    result = _per_request(before, after, requests, sales)
    result["snapshot"] = await _snapshot_bytes(stack)
    result["snapshot"]["bytes_per_request"] = round(
        result["snapshot"]["bytes"] / max(1, requests + 20), 1
    )  # 20: the warm-up's
    result["mix"] = {
        kind: sum(1 for r in stats.records if r.kind == kind)
        for kind in sorted({r.kind for r in stats.records})
    }
    return result


def measure(
    *, label: str, rate: float, seconds: float, customers: int, stores: int, out_dir: Path
) -> Path:
    """Run the measurement on a stack of its own (stopped and purged by PID at the end)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "KAFKA_BROKERS")
        and not k.endswith("_DATABASE_URL")
    }
    env["GATEWAY_RATE_LIMIT_PER_SECOND"] = "1000000"
    env["GATEWAY_RATE_LIMIT_BURST"] = "1000000"
    env["REPORTING_SNAPSHOT_INTERVAL_SECONDS"] = "0"  # the one snapshot is taken by hand
    name = f"capacity-{secrets.token_hex(3)}"
    _say(f"starting a stack of its own in .run/{name}/")
    # a JVM and five services starting on a busy shared machine may need minutes
    stack = start_stack(
        name,
        ports=ServicePorts.free(),
        env=env,
        use_env=False,
        infra_timeout=600.0,
        ready_timeout=600.0,
        kafka_brokers=1,
        progress=no_progress,
    )
    try:
        result = asyncio.run(
            _measure(stack, rate=rate, seconds=seconds, customers=customers, stores=stores)
        )
    finally:
        stack.stop(progress=no_progress)
        purge_run_dir(stack.run_dir)
    result["label"] = label
    result["taken_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    result["command"] = (
        f"make capacity-measure CAPACITY_ARGS='--label {label} --rate {rate:g} "
        f"--seconds {seconds:g}'"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"measured-{label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    _say(f"wrote {path.relative_to(repo_root()) if path.is_relative_to(repo_root()) else path}")
    return path
