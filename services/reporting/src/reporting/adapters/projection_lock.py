"""The projection lock: live handlers hold it shared for their batch's transaction, the rebuild
takes it exclusively to swap its rebuilt tables in while no batch is half-way.

A transaction-level lock is held until the transaction ends, so a batch takes it once: its
`servicekit.sql.Tx` (the fast path) or the session remembers the transaction that took it.
Inside a savepoint (the consumer's slow path) it is taken again every time, since rolling the
savepoint back releases what was taken in it. The live handlers' lock goes through
`servicekit.sql` (asyncpg on the batch's connection, in its transaction or savepoint): it is a
statement of every batch."""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from servicekit import sql

PROJECTION_LOCK = zlib.crc32(b"reporting-projection")


_HELD_BY = "reporting.projection_lock"

_SHARED = "SELECT pg_advisory_xact_lock_shared($1::bigint)"


async def hold_shared(db: sql.Db) -> None:
    if isinstance(db, sql.Tx):
        # a consumer batch's fast path (no savepoints): taken once for the transaction
        if not db.info.get(_HELD_BY):
            await sql.execute(db, _SHARED, PROJECTION_LOCK)
            db.info[_HELD_BY] = True
        return
    session = db
    nested = session.in_nested_transaction()
    transaction = session.get_transaction()
    if not nested and transaction is not None and session.info.get(_HELD_BY) is transaction:
        return
    await sql.execute(session, _SHARED, PROJECTION_LOCK)
    if not nested:
        # the session's transaction as of the statement (a session a consumer's `Tx` made for
        # this batch begins its own with its first statement)
        session.info[_HELD_BY] = session.get_transaction()


async def hold_exclusive(conn: AsyncConnection) -> None:
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PROJECTION_LOCK)))
