"""Rebuild the read models from the log and swap them in, while the service keeps running.

1. Capture the end offsets of the topics, then replay them from offset 0 with a fresh consumer
   group into fresh tables in a scratch schema (same definitions, own inbox so duplicates in
   the log are skipped exactly as live), printing progress.
2. Catch up: whatever the live consumer processed that the replay has not (its inbox records
   topic, partition and offset) is fetched from Kafka and replayed too.
3. Swap, in one transaction holding the projection lock exclusively (live handlers hold it
   shared, so no live batch is half-way): replay the last such messages, copy the scratch
   inbox into the live one (so the live consumer skips what the replay already applied), move
   the live tables out and the rebuilt ones in. Then drop the old tables.

`--dry-run` stops before the swap and keeps the scratch schema; `--verify` compares the
rebuilt tables with the live ones row by row before swapping and prints the differences.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from reporting.adapters.tables import READ_MODEL_TABLES, metadata
from reporting.config import Settings
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.service_layer.projection import (
    PROJECTION_LOCK,
    TOPICS,
    make_consumer,
    projection_lock_enabled,
)
from servicekit.db import make_engine, make_session_factory, prepare_database
from servicekit.kafkasecurity import client_options
from servicekit.schema import messaging_tables

log = logging.getLogger(__name__)


@dataclass
class RebuildResult:
    replayed: int
    total: int
    scratch_schema: str
    swapped: bool
    differences: dict[str, int] = field(default_factory=dict)


def _say(message: str) -> None:
    print(f"[rebuild] {message}", file=sys.stderr, flush=True)


async def _partitions(
    bootstrap: str, topics: Sequence[str], options: Mapping[str, Any]
) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="reporting-rebuild", **options
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if not d.get("error_code")
        for p in sorted(d["partitions"], key=lambda p: p["partition"])
    ]


async def _end_offsets(
    consumer: AIOKafkaConsumer, bootstrap: str, topics: Sequence[str], options: Mapping[str, Any]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    tps = await _partitions(bootstrap, topics, options)
    if not tps:
        return {}, {}
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    return begin, end


def _scratch_engine(url: str, schema: str) -> AsyncEngine:
    from servicekit.settings import to_asyncpg_url

    return create_async_engine(
        to_asyncpg_url(url),
        pool_size=2,
        connect_args={"server_settings": {"search_path": schema}},
    )


async def _create_scratch(live: AsyncEngine, scratch: AsyncEngine, schema: str) -> None:
    async with live.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scratch_md = sa.MetaData()
    messaging_tables(scratch_md)
    async with scratch.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(scratch_md.create_all)


async def _fetch(
    bootstrap: str, wanted: Sequence[tuple[str, int, int]], options: Mapping[str, Any]
) -> list[ConsumerRecord[Any, Any]]:
    """The records at these exact (topic, partition, offset) coordinates, in that order."""
    if not wanted:
        return []
    by_tp: dict[TopicPartition, set[int]] = {}
    for topic, partition, offset in wanted:
        by_tp.setdefault(TopicPartition(topic, partition), set()).add(offset)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **options
    )
    await consumer.start()
    found: dict[tuple[str, int, int], ConsumerRecord[Any, Any]] = {}
    try:
        consumer.assign(list(by_tp))
        for tp, offsets in by_tp.items():
            for offset in sorted(offsets):
                if (tp.topic, tp.partition, offset) in found:
                    continue
                consumer.seek(tp, offset)
                batch = await consumer.getmany(tp, timeout_ms=5000, max_records=500)
                for rec in batch.get(tp, []):
                    found[(rec.topic, rec.partition, rec.offset)] = rec
    finally:
        await consumer.stop()
    return [found[w] for w in sorted(wanted, key=lambda w: (w[0], w[1], w[2])) if w in found]


async def _missing_from_scratch(
    conn: AsyncConnection, schema: str, consumer_name: str
) -> list[tuple[str, int, int]]:
    rows = await conn.execute(
        sa.text(
            f"""SELECT l.topic, l.partition, l."offset" FROM public.inbox l
                WHERE l.consumer = :c AND NOT EXISTS (
                    SELECT 1 FROM "{schema}".inbox s
                    WHERE s.consumer = l.consumer AND s.message_id = l.message_id)
                ORDER BY l.topic, l.partition, l."offset" """
        ),
        {"c": consumer_name},
    )
    return [(r.topic, r.partition, r.offset) for r in rows]


async def compare_schemas(conn: AsyncConnection, left: str, right: str) -> dict[str, int]:
    """Rows present in one schema's read-model table but not the other's, per table."""
    differences: dict[str, int] = {}
    for table in READ_MODEL_TABLES:
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        count = await conn.scalar(
            sa.text(
                f"""SELECT count(*) FROM (
                    (SELECT {cols} FROM "{left}"."{table.name}"
                     EXCEPT ALL SELECT {cols} FROM "{right}"."{table.name}")
                    UNION ALL
                    (SELECT {cols} FROM "{right}"."{table.name}"
                     EXCEPT ALL SELECT {cols} FROM "{left}"."{table.name}")) d"""
            )
        )
        if count:
            differences[table.name] = int(count)
    return differences


async def rebuild(
    settings: Settings,
    *,
    topics: Sequence[str] = TOPICS,
    dry_run: bool = False,
    verify: bool = False,
    progress_interval: float | None = None,
) -> RebuildResult:
    await prepare_database(MIGRATIONS_DIR, settings.database_url)
    schema = f"rm_rebuild_{secrets.token_hex(4)}"
    live = make_engine(settings.database_url, pool_size=2)
    scratch = _scratch_engine(settings.database_url, schema)
    group = f"{settings.consumer_group}-rebuild-{secrets.token_hex(4)}"
    options = client_options(settings)  # TLS / SASL as the service itself connects
    kafka = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    token = projection_lock_enabled.set(False)
    interval = (
        progress_interval
        if progress_interval is not None
        else settings.rebuild_progress_interval_seconds
    )
    try:
        await _create_scratch(live, scratch, schema)
        consumer = make_consumer(settings.consumer_group, topics)
        consumer.bind(make_session_factory(scratch))
        consumer.retry_backoff_seconds = 0.5
        await kafka.start()
        try:
            begin, end = await _end_offsets(
                kafka, settings.kafka_bootstrap_servers, topics, options
            )
            total = sum(max(0, end[tp] - begin[tp]) for tp in end)
            _say(f"replaying {total} records of {', '.join(topics)} into schema {schema}")
            replayed = 0
            last = time.monotonic()
            pending = {tp for tp in end if end[tp] > begin[tp]}
            while pending:
                batches = await kafka.getmany(
                    *pending, timeout_ms=1000, max_records=settings.rebuild_batch_size
                )
                records: list[ConsumerRecord[Any, Any]] = []
                for tp, recs in batches.items():
                    records.extend(r for r in recs if r.offset < end[tp])
                if records:
                    await consumer.process_records(records)
                    replayed += len(records)
                for tp in list(pending):
                    if await kafka.position(tp) >= end[tp]:
                        pending.discard(tp)
                if time.monotonic() - last >= interval:
                    last = time.monotonic()
                    pct = 100.0 * replayed / total if total else 100.0
                    _say(f"{replayed}/{total} records ({pct:.0f}%)")
            _say(f"{replayed}/{total} records (100%)")
        finally:
            await kafka.stop()

        async with live.connect() as conn:
            tail = await _missing_from_scratch(conn, schema, settings.consumer_group)
        if tail:
            _say(f"catching up {len(tail)} records the live consumer took meanwhile")
            await consumer.process_records(
                await _fetch(settings.kafka_bootstrap_servers, tail, options)
            )

        result = RebuildResult(replayed, total, schema, swapped=False)
        if verify:
            async with live.connect() as conn:
                result.differences = await compare_schemas(conn, "public", schema)
            _say(f"differences with the live tables: {result.differences or 'none'}")
        if dry_run:
            _say(f"dry run: rebuilt tables left in schema {schema}")
            return result
        await _swap(live, schema, settings, consumer)
        result.swapped = True
        _say("rebuilt read models swapped in")
        return result
    finally:
        projection_lock_enabled.reset(token)
        await scratch.dispose()
        await live.dispose()


async def _swap(live: AsyncEngine, schema: str, settings: Settings, consumer: Any) -> None:
    old = f"{schema}_old"
    for attempt in range(1, 4):
        try:
            async with live.begin() as conn:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PROJECTION_LOCK)))
                tail = await _missing_from_scratch(conn, schema, settings.consumer_group)
                if tail:
                    records = await _fetch(
                        settings.kafka_bootstrap_servers, tail, client_options(settings)
                    )
                    await consumer.process_records(records)
                await conn.execute(
                    sa.text(
                        f"""INSERT INTO public.inbox SELECT * FROM "{schema}".inbox
                            ON CONFLICT DO NOTHING"""
                    )
                )
                await conn.execute(sa.text(f'CREATE SCHEMA "{old}"'))
                for table in READ_MODEL_TABLES:
                    await conn.execute(
                        sa.text(f'ALTER TABLE public."{table.name}" SET SCHEMA "{old}"')
                    )
                    await conn.execute(
                        sa.text(f'ALTER TABLE "{schema}"."{table.name}" SET SCHEMA public')
                    )
            break
        except sa_exc.DBAPIError as exc:  # a deadlock with a live batch: that batch or we retry
            if attempt == 3:
                raise
            _say(f"swap attempt {attempt} failed ({type(exc.orig).__name__}); retrying")
            await asyncio.sleep(1)
    async with live.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{old}" CASCADE'))
        await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m reporting.rebuild",
        description="Rebuild reporting's read models from the topics and swap them in.",
    )
    parser.add_argument("--dry-run", action="store_true", help="keep the rebuilt tables aside")
    parser.add_argument("--verify", action="store_true", help="compare with the live tables")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(rebuild(Settings(), dry_run=args.dry_run, verify=args.verify))
    if args.verify and result.differences:
        sys.exit(1)

