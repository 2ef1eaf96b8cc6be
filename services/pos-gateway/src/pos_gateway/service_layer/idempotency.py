"""`Idempotency-Key`: the same key and body get the original answer; another body a 409.

The first request inserts the key row and keeps it locked until its transaction commits, so a
concurrent retry (blocked on the same primary key) continues only once the first is done, and
then reads its answer. Till operations store a reference to their operation instead of a
response, and a retry renders the operation's answer again from it (the same answer: a
completed or refused operation does not change); only a bonus cancellation stores its first
final answer, since its debt and advance are read from credit when answering.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.adapters import tables as t
from pos_gateway.domain.errors import GatewayError

MAX_KEY_LENGTH = 255


async def claim(
    session: AsyncSession, scope: str, key: str, request_hash: str
) -> Row[Any] | None:
    """None when this request owns the key now; the earlier request's row otherwise."""
    inserted = await session.execute(
        pg_insert(t.idempotency_keys)
        .values(scope=scope, key=key, request_hash=request_hash)
        .on_conflict_do_nothing()
        .returning(t.idempotency_keys.c.key)
    )
    if inserted.first() is not None:
        return None
    row = (
        await session.execute(
            sa.select(t.idempotency_keys).where(
                t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key
            )
        )
    ).one()
    if row.request_hash != request_hash:
        raise GatewayError(
            "idempotency_conflict",
            "this Idempotency-Key was used with a different request",
        )
    return row


async def store_response(
    session: AsyncSession, scope: str, key: str, status_code: int, response: Any
) -> None:
    await session.execute(
        sa.update(t.idempotency_keys)
        .where(t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)
        .values(status_code=status_code, response=response)
    )


async def link_operation(
    session: AsyncSession, scope: str, key: str, chain_id: UUID, kind: str, operation_id: UUID
) -> None:
    await session.execute(
        sa.update(t.idempotency_keys)
        .where(t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)
        .values(chain_id=chain_id, operation_kind=kind, operation_id=operation_id)
    )


async def purge(session: AsyncSession, keep: timedelta) -> int:
    """Forget keys older than `keep` (the API promises at least 24 hours)."""
    result = await session.execute(
        sa.delete(t.idempotency_keys).where(
            t.idempotency_keys.c.created_at < datetime.now(UTC) - keep
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
