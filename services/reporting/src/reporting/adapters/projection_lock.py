"""The projection lock: live handlers hold it shared for their batch's transaction, the rebuild
takes it exclusively to swap its rebuilt tables in while no batch is half-way."""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

PROJECTION_LOCK = zlib.crc32(b"reporting-projection")


async def hold_shared(session: AsyncSession) -> None:
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock_shared(PROJECTION_LOCK)))


async def hold_exclusive(conn: AsyncConnection) -> None:
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PROJECTION_LOCK)))
