"""Rebuild the read models from the newest snapshot plus the log since, and swap them in, while
the service keeps running.

0. Take the newest snapshot (`reporting.service_layer.snapshots`; none: the log from its
   beginning) and check that the log still holds every message after it: when retention has
   dropped messages the snapshot does not cover (the log of a partition now starts after the
   snapshot's offset), refuse with `RebuildRefused` and change nothing.
1. Copy the snapshot's read models and inbox into fresh tables in a scratch schema (same
   definitions, own inbox so duplicates in the log are skipped exactly as live), capture the
   end offsets, then replay each partition from the snapshot's offset, printing progress.
2. Catch up: whatever the live consumer processed that the replay has not (its inbox records
   topic, partition and offset) is fetched from Kafka and replayed too.
3. Swap, in one transaction holding the projection lock exclusively (live handlers hold it
   shared, so no live batch is half-way): replay the last such messages, copy the scratch
   inbox into the live one (so the live consumer skips what the replay already applied), move
   the live tables out and the rebuilt ones in. Then drop the old tables.

`--dry-run` stops before the swap and keeps the scratch schema; `--verify` compares the
rebuilt tables with the live ones row by row before swapping and prints the differences;
`--from-log` ignores the snapshots (only possible while the log still starts at offset 0).
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

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from reporting.adapters import projection_lock
from reporting.adapters.rebuild_schemas import RebuildSchemas
from reporting.config import Settings
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.service_layer.handlers import make_consumer
from reporting.service_layer.projection import TOPICS, projection_lock_enabled
from reporting.service_layer.snapshots import Snapshot, copy_snapshot_into, newest_snapshot
from servicekit.db import make_engine, make_session_factory, prepare_database
from servicekit.kafkasecurity import client_options

log = logging.getLogger(__name__)


class RebuildRefused(Exception):  # noqa: N818 - a refusal, said to the operator as it is
    """The log no longer holds what a rebuild needs: retention dropped messages that the newest
    snapshot does not cover (or there is no snapshot). Nothing was changed."""


@dataclass
class RebuildResult:
    replayed: int
    total: int
    scratch_schema: str
    swapped: bool
    differences: dict[str, int] = field(default_factory=dict)
    #: the snapshot it started from (None: the log from its beginning) and its rows copied
    snapshot_id: int | None = None
    snapshot_rows: int = 0


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


async def _log_bounds(
    consumer: AIOKafkaConsumer, bootstrap: str, topics: Sequence[str], options: Mapping[str, Any]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(log start offset, end offset) of every partition of the topics; the partitions are
    assigned to `consumer`."""
    tps = await _partitions(bootstrap, topics, options)
    if not tps:
        return {}, {}
    consumer.assign(tps)
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    return begin, end


def _gaps(
    begin: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    start: dict[TopicPartition, int],
) -> list[str]:
    """Partitions whose log cannot continue from `start`: retention dropped messages before it
    could be read, or the log ends before it (a snapshot of another cluster's log)."""
    problems = []
    for tp in sorted(begin, key=lambda t: (t.topic, t.partition)):
        if begin[tp] > start[tp]:
            problems.append(
                f"{tp.topic}[{tp.partition}] starts at offset {begin[tp]}, "
                f"the rebuild needs it from {start[tp]}"
            )
        elif end[tp] < start[tp]:
            problems.append(
                f"{tp.topic}[{tp.partition}] ends at offset {end[tp]}, before "
                f"{start[tp]}: another log than the snapshot's"
            )
    return problems


def _refusal(snapshot: Snapshot | None, problems: list[str]) -> RebuildRefused:
    shown = "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    if snapshot is None:
        return RebuildRefused(
            "cannot rebuild: there is no snapshot of the read models and the log no longer starts "
            f"at offset 0 ({shown}). Retention (KAFKA_RETENTION_DAYS) has dropped messages that "
            "nothing else holds. The live read models are untouched; take a snapshot now "
            "(python -m reporting.snapshot) so that a later rebuild can start from it."
        )
    return RebuildRefused(
        f"cannot rebuild from {snapshot.describe()}: it is older than what the log still holds "
        f"({shown}). Retention (KAFKA_RETENTION_DAYS) has dropped messages the snapshot does not "
        "contain. The live read models are untouched. Restore a newer snapshot of reporting's "
        "database (docs/operations.md, 'Rebuilding reporting'), or keep the live read models "
        "and take a snapshot now (python -m reporting.snapshot)."
    )


def _scratch_engine(url: str, schema: str) -> AsyncEngine:
    from servicekit.settings import to_asyncpg_url

    return create_async_engine(
        to_asyncpg_url(url),
        pool_size=2,
        connect_args={"server_settings": {"search_path": schema}},
    )


async def _create_scratch(live: AsyncEngine, scratch: AsyncEngine, schema: str) -> None:
    async with live.begin() as conn:
        await RebuildSchemas(conn).create_schema(schema)
    async with scratch.begin() as conn:
        await RebuildSchemas(conn).create_scratch_tables()


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


async def compare_schemas(conn: AsyncConnection, left: str, right: str) -> dict[str, int]:
    """Rows present in one schema's read-model table but not the other's, per table."""
    return await RebuildSchemas(conn).differences(left, right)


async def _newest_snapshot(live: AsyncEngine, consumer_group: str) -> Snapshot | None:
    async with live.connect() as conn:
        return await newest_snapshot(conn, consumer_group)


def _log_reader(settings: Settings, options: Mapping[str, Any]) -> AIOKafkaConsumer:
    """The consumer the replay reads the log with: a group of its own, nothing committed."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.consumer_group}-rebuild-{secrets.token_hex(4)}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )


def _scratch_consumer(settings: Settings, topics: Sequence[str], scratch: AsyncEngine) -> Any:
    """The service's own consumer (same handlers, same inbox), writing into the scratch schema."""
    consumer = make_consumer(settings.consumer_group, topics)
    consumer.bind(make_session_factory(scratch))
    consumer.retry_backoff_seconds = 0.5
    return consumer


async def _start_positions(
    kafka: AIOKafkaConsumer,
    settings: Settings,
    topics: Sequence[str],
    options: Mapping[str, Any],
    snapshot: Snapshot | None,
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Step 0: (where the replay starts, where it ends) in every partition: the snapshot's
    offsets (none: 0) up to the log's end; `RebuildRefused` when the log no longer holds that."""
    begin, end = await _log_bounds(kafka, settings.kafka_bootstrap_servers, topics, options)
    start = {
        tp: snapshot.positions.get((tp.topic, tp.partition), 0) if snapshot else 0 for tp in begin
    }
    problems = _gaps(begin, end, start)
    if problems:
        raise _refusal(snapshot, problems)
    return start, end


async def _copy_snapshot(live: AsyncEngine, snapshot: Snapshot | None, schema: str) -> int:
    """Step 1, first half: the snapshot's rows into the scratch tables; how many were copied."""
    if snapshot is None:
        _say("no snapshot: replaying the log from its beginning")
        return 0
    async with live.begin() as conn:
        copied = await copy_snapshot_into(conn, snapshot, schema)
    _say(f"starting from {snapshot.describe()}: {copied} rows copied into {schema}")
    return copied


async def _replay(
    kafka: AIOKafkaConsumer,
    consumer: Any,
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    *,
    what: str,
    batch_size: int,
    interval: float,
) -> tuple[int, int]:
    """Step 1, second half: every partition's records from `start` to before `end` through
    `consumer`, printing progress every `interval` seconds; (records replayed, records)."""
    for tp, offset in start.items():
        kafka.seek(tp, offset)
    total = sum(max(0, end[tp] - start[tp]) for tp in end)
    _say(f"replaying {total} records of {what}")
    replayed = 0
    last = time.monotonic()
    pending = {tp for tp in end if end[tp] > start[tp]}
    while pending:
        batches = await kafka.getmany(*pending, timeout_ms=1000, max_records=batch_size)
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
    return replayed, total


async def _catch_up(
    live: AsyncEngine, schema: str, settings: Settings, consumer: Any, options: Mapping[str, Any]
) -> None:
    """Step 2: what the live consumer processed meanwhile that the replay has not."""
    async with live.connect() as conn:
        tail = await RebuildSchemas(conn).missing_from_scratch(schema, settings.consumer_group)
    if tail:
        _say(f"catching up {len(tail)} records the live consumer took meanwhile")
        await consumer.process_records(
            await _fetch(settings.kafka_bootstrap_servers, tail, options)
        )


async def rebuild(
    settings: Settings,
    *,
    topics: Sequence[str] = TOPICS,
    dry_run: bool = False,
    verify: bool = False,
    progress_interval: float | None = None,
    from_log: bool = False,
) -> RebuildResult:
    """Rebuild the read models from the newest snapshot (none, or `from_log`: from the log's
    beginning) and the log after it; raise `RebuildRefused` when the log no longer holds that."""
    await prepare_database(MIGRATIONS_DIR, settings.database_url)
    schema = f"rm_rebuild_{secrets.token_hex(4)}"
    live = make_engine(settings.database_url, pool_size=2)
    scratch = _scratch_engine(settings.database_url, schema)
    options = client_options(settings)  # TLS / SASL as the service itself connects
    kafka = _log_reader(settings, options)
    token = projection_lock_enabled.set(False)
    interval = (
        progress_interval
        if progress_interval is not None
        else settings.rebuild_progress_interval_seconds
    )
    try:
        snapshot = None if from_log else await _newest_snapshot(live, settings.consumer_group)
        consumer = _scratch_consumer(settings, topics, scratch)
        await kafka.start()
        try:
            start, end = await _start_positions(kafka, settings, topics, options, snapshot)
            await _create_scratch(live, scratch, schema)
            copied = await _copy_snapshot(live, snapshot, schema)
            since = "since the snapshot" if snapshot is not None else "from offset 0"
            replayed, total = await _replay(
                kafka,
                consumer,
                start,
                end,
                what=f"{', '.join(topics)} {since} into schema {schema}",
                batch_size=settings.rebuild_batch_size,
                interval=interval,
            )
        finally:
            await kafka.stop()
        await _catch_up(live, schema, settings, consumer, options)
        result = RebuildResult(
            replayed,
            total,
            schema,
            swapped=False,
            snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
            snapshot_rows=copied,
        )
        return await _verify_and_swap(live, schema, settings, consumer, result, verify, dry_run)
    finally:
        projection_lock_enabled.reset(token)
        await scratch.dispose()
        await live.dispose()


async def _verify_and_swap(
    live: AsyncEngine,
    schema: str,
    settings: Settings,
    consumer: Any,
    result: RebuildResult,
    verify: bool,
    dry_run: bool,
) -> RebuildResult:
    """Step 3: with `verify`, the differences with the live tables first; then the swap, unless
    a dry run leaves the rebuilt tables in the scratch schema."""
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


async def _swap(live: AsyncEngine, schema: str, settings: Settings, consumer: Any) -> None:
    old = f"{schema}_old"
    for attempt in range(1, 4):
        try:
            async with live.begin() as conn:
                await projection_lock.hold_exclusive(conn)
                schemas = RebuildSchemas(conn)
                tail = await schemas.missing_from_scratch(schema, settings.consumer_group)
                if tail:
                    records = await _fetch(
                        settings.kafka_bootstrap_servers, tail, client_options(settings)
                    )
                    await consumer.process_records(records)
                await schemas.swap_in(schema, old)
            break
        # a deadlock with a live batch: that batch or we retry (the tail's projection
        # statements go through servicekit.sql and fail with asyncpg's own errors)
        except (sa_exc.DBAPIError, asyncpg.PostgresError) as exc:
            if attempt == 3:
                raise
            cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
            _say(f"swap attempt {attempt} failed ({type(cause).__name__}); retrying")
            await asyncio.sleep(1)
    async with live.begin() as conn:
        await RebuildSchemas(conn).drop_schema(old)
        await RebuildSchemas(conn).drop_schema(schema)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m reporting.rebuild",
        description="Rebuild reporting's read models from the newest snapshot and the log "
        "since, and swap them in.",
    )
    parser.add_argument("--dry-run", action="store_true", help="keep the rebuilt tables aside")
    parser.add_argument("--verify", action="store_true", help="compare with the live tables")
    parser.add_argument(
        "--from-log",
        action="store_true",
        help="ignore the snapshots: replay the log from its beginning (refused "
        "once retention has dropped its first messages)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        result = asyncio.run(
            rebuild(Settings(), dry_run=args.dry_run, verify=args.verify, from_log=args.from_log)
        )
    except RebuildRefused as refused:
        _say(f"REFUSED: {refused}")
        sys.exit(2)
    if args.verify and result.differences:
        sys.exit(1)
