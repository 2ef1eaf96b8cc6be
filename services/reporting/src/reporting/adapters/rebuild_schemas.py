"""The rebuild's statements (`reporting.entrypoints.rebuild` says when and in which transaction
they run): the scratch schema the log is replayed into, what the live inbox holds that the
scratch one does not, the row-by-row comparison of two schemas' read models, and the swap of
the rebuilt tables into `public`. Every method works on the caller's connection and in its
transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporting.adapters.tables import READ_MODEL_TABLES, metadata
from servicekit.schema import messaging_tables, positions_table


class RebuildSchemas:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def create_schema(self, schema: str) -> None:
        await self.conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    async def create_scratch_tables(self) -> None:
        """The read-model tables, the inbox, outbox and positions, empty, in the connection's
        schema (the scratch engine's `search_path`)."""
        scratch_md = sa.MetaData()
        messaging_tables(scratch_md)
        positions_table(scratch_md)
        await self.conn.run_sync(metadata.create_all)
        await self.conn.run_sync(scratch_md.create_all)

    async def missing_from_scratch(self, schema: str, consumer: str) -> list[tuple[str, int, int]]:
        """The (topic, partition, offset) of every message the live consumer took that the
        scratch inbox of `schema` does not hold, in that order."""
        rows = await self.conn.execute(
            sa.text(
                f"""SELECT l.topic, l.partition, l."offset" FROM public.inbox l
                    WHERE l.consumer = :c AND NOT EXISTS (
                        SELECT 1 FROM "{schema}".inbox s
                        WHERE s.consumer = l.consumer AND s.message_id = l.message_id)
                    ORDER BY l.topic, l.partition, l."offset" """
            ),
            {"c": consumer},
        )
        return [(r.topic, r.partition, r.offset) for r in rows]

    async def differences(self, left: str, right: str) -> dict[str, int]:
        """Rows present in one schema's read-model table but not the other's, per table."""
        differences: dict[str, int] = {}
        for table in READ_MODEL_TABLES:
            cols = ", ".join(f'"{c.name}"' for c in table.columns)
            count = await self.conn.scalar(
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

    async def swap_in(self, schema: str, old: str) -> None:
        """Copy the scratch inbox into the live one (so the live consumer skips what the replay
        applied), then move the live read-model tables into `old` and the rebuilt ones from
        `schema` into `public`."""
        await self.conn.execute(
            sa.text(
                f"""INSERT INTO public.inbox SELECT * FROM "{schema}".inbox
                    ON CONFLICT DO NOTHING"""
            )
        )
        await self.conn.execute(sa.text(f'CREATE SCHEMA "{old}"'))
        for table in READ_MODEL_TABLES:
            await self.conn.execute(
                sa.text(f'ALTER TABLE public."{table.name}" SET SCHEMA "{old}"')
            )
            await self.conn.execute(
                sa.text(f'ALTER TABLE "{schema}"."{table.name}" SET SCHEMA public')
            )

    async def drop_schema(self, schema: str) -> None:
        await self.conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
