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

from sqlalchemy.engine import Row

from pos_gateway.adapters.repository import IdempotencyKeys, TillLookup, claim_and_till_lookup
from pos_gateway.domain.errors import GatewayError
from servicekit.sql import Db

MAX_KEY_LENGTH = 255


async def claim(session: Db, scope: str, key: str, request_hash: str) -> Any | None:
    """None when this request owns the key now; the earlier request's row otherwise."""
    keys = IdempotencyKeys(session)
    if await keys.insert(scope, key, request_hash):
        return None
    return await _earlier(keys, scope, key, request_hash)


async def claim_then_look_up(
    session: Db,
    scope: str,
    key: str,
    request_hash: str,
    chain_id: UUID,
    *,
    card_number: str | None = None,
    customer_id: UUID | None = None,
    lock_name: str | None = None,
    api_key_hash: str | None = None,
) -> tuple[Row[Any] | None, TillLookup | None]:
    """`claim`, then (when this request owns the key now) the till lookup of a till operation
    (`adapters.repository.till_lookup`), in one statement: (None, what was found), or (the
    earlier request's row, None). `api_key_hash`: the caller's API key, taken from the cache
    of keys (`Principal.unchecked_key_hash`), checked by the same statement: `401
    unauthorized` unless it is still active (the caller rolls back what the statement did)."""
    claimed = await claim_and_till_lookup(
        session,
        (scope, key, request_hash),
        chain_id,
        card_number=card_number,
        customer_id=customer_id,
        lock_name=lock_name,
        api_key_hash=api_key_hash,
    )
    if not claimed.key_active:
        raise GatewayError("unauthorized", "unknown API key")
    if claimed.found is not None:
        return None, claimed.found
    return await _earlier(IdempotencyKeys(session), scope, key, request_hash), None


async def _earlier(keys: IdempotencyKeys, scope: str, key: str, request_hash: str) -> Any:
    """The earlier request's key row (its columns as attributes)."""
    row = await keys.get(scope, key)
    if row.request_hash != request_hash:
        raise GatewayError(
            "idempotency_conflict",
            "this Idempotency-Key was used with a different request",
        )
    return row


async def store_response(
    session: Db, scope: str, key: str, status_code: int, response: Any
) -> None:
    await IdempotencyKeys(session).update(scope, key, status_code=status_code, response=response)


async def link_operation(
    session: Db, scope: str, key: str, chain_id: UUID, kind: str, operation_id: UUID
) -> None:
    await IdempotencyKeys(session).update(
        scope, key, chain_id=chain_id, operation_kind=kind, operation_id=operation_id
    )


async def purge(session: Db, keep: timedelta) -> int:
    """Forget keys older than `keep` (the API promises at least 24 hours)."""
    return await IdempotencyKeys(session).delete_created_before(datetime.now(UTC) - keep)
