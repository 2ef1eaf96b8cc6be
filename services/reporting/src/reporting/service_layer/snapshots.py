"""Snapshots of the read models, so reporting rebuilds from a snapshot plus the log after it
and the topics need not keep messages for ever.

A snapshot is a schema `rm_snapshot_<id>` in reporting's own database holding a copy of every
read-model table and of the projection's inbox, and a row in `snapshots` with the offsets it
covers: per topic-partition, the offset after the last message the projection had read
(`consumer_positions`). All of it is copied in ONE `REPEATABLE READ` transaction, so the copy
sees exactly the batches committed before it started: each batch writes its read-model rows,
its inbox rows and its position in one transaction of its own, so the copied tables reflect
every message below the copied positions, and the copied inbox says which messages above them
are already in (a message published twice, or applied by a rebuild ahead of the live consumer).
The live consumer is never blocked: the copy only reads.

Snapshots are taken on a schedule (`REPORTING_SNAPSHOT_INTERVAL_SECONDS`, by one instance at a
time), the newest `REPORTING_SNAPSHOT_KEEP` are kept, and `python -m reporting.snapshot` takes
or lists them by hand.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reporting.adapters.snapshot_store import SnapshotStore
from reporting.adapters.tables import DERIVED_TABLES, READ_MODEL_TABLES

log = logging.getLogger(__name__)

SCHEMA_PREFIX = "rm_snapshot_"
#: What a snapshot copies besides the read models.
INBOX_TABLE = "inbox"


@dataclass
class Snapshot:
    """One snapshot as the catalog lists it."""

    snapshot_id: int
    schema: str
    consumer: str
    taken_at: datetime
    #: (topic, partition) -> the offset after the last message the snapshot reflects
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(count for table, count in self.row_counts.items() if table != INBOX_TABLE)

    def describe(self) -> str:
        return (
            f"snapshot #{self.snapshot_id} taken {self.taken_at:%Y-%m-%d %H:%M:%S %Z} "
            f"({self.rows} read-model rows, {len(self.positions)} partitions)"
        )


def _row_to_snapshot(row: Any) -> Snapshot:
    positions = {(p["topic"], int(p["partition"])): int(p["next_offset"]) for p in row.positions}
    return Snapshot(
        snapshot_id=int(row.snapshot_id),
        schema=row.schema_name,
        consumer=row.consumer,
        taken_at=row.taken_at,
        positions=positions,
        row_counts={k: int(v) for k, v in row.row_counts.items()},
        seconds=float(row.seconds),
    )


async def list_snapshots(conn: AsyncConnection) -> list[Snapshot]:
    """Every snapshot, newest first."""
    return [_row_to_snapshot(row) for row in await SnapshotStore(conn).rows()]


async def newest_snapshot(conn: AsyncConnection, consumer: str) -> Snapshot | None:
    row = await SnapshotStore(conn).newest_row(consumer)
    return _row_to_snapshot(row) if row is not None else None


async def take_snapshot(
    engine: AsyncEngine, consumer: str, *, unless_newer_than: timedelta | None = None
) -> Snapshot | None:
    """Copy the read models, the inbox and the positions of `consumer` into a new snapshot.

    Returns None when another process is taking one right now, or (with `unless_newer_than`)
    when the newest snapshot is younger than that."""
    started = time.monotonic()
    async with engine.connect() as conn:
        if not await SnapshotStore(conn).try_lock():
            await conn.rollback()
            return None
        await conn.commit()  # the session lock stays; the copy needs a transaction of its own
        try:
            # The lock was taken before this transaction's first statement, so its view already
            # holds a snapshot that another process finished just before.
            copy = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with copy.begin():
                store = SnapshotStore(copy)
                taken_at = await store.now()
                if unless_newer_than is not None:
                    newest = await newest_snapshot(copy, consumer)
                    if newest is not None and taken_at - newest.taken_at < unless_newer_than:
                        return None
                snapshot_id = await store.add(consumer, taken_at)
                schema = f"{SCHEMA_PREFIX}{snapshot_id}"
                await store.create_schema(schema)
                counts: dict[str, int] = {}
                for table in READ_MODEL_TABLES:
                    counts[table.name] = await store.copy_table(schema, table.name)
                counts[INBOX_TABLE] = await store.copy_inbox(schema, INBOX_TABLE, consumer)
                positions = await store.positions(consumer)
                seconds = time.monotonic() - started
                await store.finish(snapshot_id, schema, positions, counts, seconds)
        finally:
            await conn.rollback()
            await SnapshotStore(conn).unlock()
            await conn.commit()
    snapshot = Snapshot(
        snapshot_id=snapshot_id,
        schema=schema,
        consumer=consumer,
        taken_at=taken_at,
        positions={(p["topic"], int(p["partition"])): int(p["next_offset"]) for p in positions},
        row_counts=counts,
        seconds=seconds,
    )
    log.info("took %s in %.1fs: %s", snapshot.describe(), seconds, json.dumps(counts))
    return snapshot


async def prune_snapshots(engine: AsyncEngine, keep: int) -> list[int]:
    """Drop all but the newest `keep` snapshots (at least one is always kept); return the ids
    dropped."""
    keep = max(1, keep)
    dropped: list[int] = []
    async with engine.connect() as conn:
        old = (await list_snapshots(conn))[keep:]
        await conn.rollback()
        for snapshot in old:
            async with conn.begin():
                await SnapshotStore(conn).drop(snapshot.snapshot_id, snapshot.schema)
            dropped.append(snapshot.snapshot_id)
    if dropped:
        log.info("dropped snapshots %s (keeping the newest %d)", dropped, keep)
    return dropped


async def copy_snapshot_into(conn: AsyncConnection, snapshot: Snapshot, schema: str) -> int:
    """Insert the snapshot's read-model rows and inbox into the same tables of `schema` (which
    exist, empty); return the read-model rows copied. Columns are matched by name: a column
    added by a later migration gets its default."""
    store = SnapshotStore(conn)
    copied = 0
    # derived tables are recomputed by their triggers as the base rows go in (and a snapshot
    # taken before they existed has none)
    base = [t.name for t in READ_MODEL_TABLES if t not in DERIVED_TABLES]
    for name in [*base, INBOX_TABLE]:
        source = await store.table_columns(snapshot.schema, name)
        target = set(await store.table_columns(schema, name))
        if not source:
            raise RuntimeError(f"{snapshot.describe()} has no table {name}")
        rows = await store.copy_rows(
            snapshot.schema, schema, name, [c for c in source if c in target]
        )
        if name != INBOX_TABLE:
            copied += rows
    for table in DERIVED_TABLES:  # what the triggers made of the copied rows
        copied += await store.count(schema, table.name)
    return copied
