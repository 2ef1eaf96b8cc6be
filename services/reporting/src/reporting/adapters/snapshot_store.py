"""The statements of the read-model snapshots (`reporting.service_layer.snapshots` says when
and in which transaction they run): the `snapshots` catalog, the schema `rm_snapshot_<id>`
holding a copy of every read-model table and of the projection's inbox, and the copy of a
snapshot's rows into another schema's tables. Every method works on the caller's connection and
in its transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

#: Held (session-level) by the instance taking a snapshot, so two never take one at once.
SNAPSHOT_LOCK = zlib.crc32(b"reporting-snapshot")

_SELECT = (
    "SELECT snapshot_id, schema_name, consumer, taken_at, positions, row_counts, seconds "
    "FROM public.snapshots"
)


class SnapshotStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # ----------------------------------------------------------------------- the lock

    async def try_lock(self) -> bool:
        """The session-level snapshot lock, or False when another process holds it."""
        return bool(await self.conn.scalar(sa.select(sa.func.pg_try_advisory_lock(SNAPSHOT_LOCK))))

    async def unlock(self) -> None:
        await self.conn.execute(sa.select(sa.func.pg_advisory_unlock(SNAPSHOT_LOCK)))

    # ----------------------------------------------------------------------- the catalog

    async def rows(self) -> Sequence[Any]:
        """Every snapshot's catalog row, newest first."""
        return (await self.conn.execute(sa.text(_SELECT + " ORDER BY snapshot_id DESC"))).all()

    async def newest_row(self, consumer: str) -> Any:
        return (
            await self.conn.execute(
                sa.text(_SELECT + " WHERE consumer = :c ORDER BY snapshot_id DESC LIMIT 1"),
                {"c": consumer},
            )
        ).first()

    async def now(self) -> datetime:
        """The transaction's start (`now()`)."""
        taken_at: datetime = await self.conn.scalar(sa.text("SELECT now()"))
        return taken_at

    async def add(self, consumer: str, taken_at: datetime) -> int:
        """A new catalog row, to be filled in by `finish`; its snapshot id."""
        return int(
            await self.conn.scalar(
                sa.text(
                    "INSERT INTO public.snapshots (schema_name, consumer, taken_at, "
                    "positions, row_counts, seconds) VALUES "
                    "('', :c, :t, '[]', '{}', 0) RETURNING snapshot_id"
                ),
                {"c": consumer, "t": taken_at},
            )
        )

    async def finish(
        self,
        snapshot_id: int,
        schema: str,
        positions: list[dict[str, Any]],
        counts: dict[str, int],
        seconds: float,
    ) -> None:
        await self.conn.execute(
            sa.text(
                "UPDATE public.snapshots SET schema_name = :s, positions = :p, "
                "row_counts = :r, seconds = :sec WHERE snapshot_id = :id"
            ).bindparams(
                sa.bindparam("p", type_=JSONB),
                sa.bindparam("r", type_=JSONB),
            ),
            {"s": schema, "p": positions, "r": counts, "sec": seconds, "id": snapshot_id},
        )

    async def drop(self, snapshot_id: int, schema: str) -> None:
        """The snapshot's schema and catalog row."""
        await self.conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await self.conn.execute(
            sa.text("DELETE FROM public.snapshots WHERE snapshot_id = :id"), {"id": snapshot_id}
        )

    # ----------------------------------------------------------------------- taking one

    async def create_schema(self, schema: str) -> None:
        await self.conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    async def copy_table(self, schema: str, table: str) -> int:
        """A copy of `public.<table>` in `schema`; the rows copied."""
        result = await self.conn.execute(
            sa.text(f'CREATE TABLE "{schema}"."{table}" AS SELECT * FROM public."{table}"')
        )
        return max(0, result.rowcount)

    async def copy_inbox(self, schema: str, table: str, consumer: str) -> int:
        """A copy of the consumer's inbox rows as `<schema>.<table>`; the rows copied."""
        result = await self.conn.execute(
            sa.text(
                f'CREATE TABLE "{schema}".{table} AS SELECT * FROM public.inbox WHERE consumer = :c'
            ),
            {"c": consumer},
        )
        return max(0, result.rowcount)

    async def positions(self, consumer: str) -> list[dict[str, Any]]:
        """The consumer's positions: (topic, partition, next_offset) each, in that order."""
        return [
            {"topic": r.topic, "partition": r.partition, "next_offset": r.next_offset}
            for r in await self.conn.execute(
                sa.text(
                    "SELECT topic, partition, next_offset FROM public.consumer_positions "
                    "WHERE consumer = :c ORDER BY topic, partition"
                ),
                {"c": consumer},
            )
        ]

    # ----------------------------------------------------------------------- restoring one

    async def table_columns(self, schema: str, table: str) -> list[str]:
        rows = await self.conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position"
            ),
            {"s": schema, "t": table},
        )
        return [r.column_name for r in rows]

    async def copy_rows(self, source: str, target: str, table: str, columns: list[str]) -> int:
        """Insert `columns` of every row of `<source>.<table>` into `<target>.<table>`; the rows
        copied."""
        cols = ", ".join(f'"{c}"' for c in columns)
        result = await self.conn.execute(
            sa.text(
                f'INSERT INTO "{target}"."{table}" ({cols}) SELECT {cols} FROM "{source}"."{table}"'
            )
        )
        return max(0, result.rowcount)

    async def count(self, schema: str, table: str) -> int:
        made = await self.conn.scalar(sa.text(f'SELECT count(*) FROM "{schema}"."{table}"'))
        return int(made or 0)
