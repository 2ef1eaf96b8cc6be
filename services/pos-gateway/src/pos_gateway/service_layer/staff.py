"""Staff accounts: users of a chain, signing in for a Bearer token, signing out.

A user's token is stored as its SHA-256 only (like API keys) and is checked against the
database on every request, so deleting a user (which deletes its tokens too) ends them at
once on every gateway instance. Failed sign-ins are counted per email in PostgreSQL, so the
limit holds across instances: after `login_max_failures` failures within
`login_failure_window_seconds` the email is locked for `login_lockout_seconds`, doubled for
every further failure up to `login_lockout_max_seconds` (429 + Retry-After meanwhile; the
password is not even checked). Unknown emails are counted the same way, so neither the
answer nor its time tells whether an email has an account.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway import schemas as s
from pos_gateway.adapters.repository import Staff
from pos_gateway.domain import passwords
from pos_gateway.domain.auth import Principal, Role, new_session_token
from pos_gateway.domain.errors import GatewayError, invalid, not_found
from pos_gateway.service_layer import idempotency
from pos_gateway.service_layer.common import load_chain
from pos_gateway.service_layer.cursors import decode_cursor, encode_cursor
from pos_gateway.service_layer.ports import GatewayPorts
from pos_gateway.service_layer.runner import Answer

T = TypeVar("T")

WRONG_CREDENTIALS = "wrong email or password"


def _now() -> datetime:
    return datetime.now(UTC)


def email_key(email: str) -> str:
    """Emails are compared case-insensitively (and without surrounding blanks)."""
    return email.strip().lower()


async def _in_thread(gw: GatewayPorts, work: Callable[[], T]) -> T:
    """Run password hashing in a worker thread, at most `hashing_concurrency` at once
    per process: each one holds 64 MiB and a core for ~0.1 s."""
    assert gw.hashing is not None, "the gateway has not started"
    async with gw.hashing:
        return await asyncio.to_thread(work)


def _chain_id(principal: Principal) -> uuid.UUID:
    assert principal.chain_id is not None
    return principal.chain_id


def _user_fields(row: Row[Any]) -> dict[str, Any]:
    """Who a user is, as every answer naming one starts."""
    return {"user_id": str(row.user_id), "email": row.email, "name": row.name, "role": row.role}


def user_json(row: Row[Any]) -> dict[str, Any]:
    return {**_user_fields(row), "created_at": row.created_at.isoformat()}


def _chain_json(chain: Row[Any]) -> dict[str, Any]:
    return {
        "chain_id": str(chain.chain_id),
        "name": chain.name,
        "currency": chain.currency,
        "timezone": chain.timezone,
    }


def _session_user(row: Row[Any]) -> dict[str, Any]:
    return {**_user_fields(row), "chain_id": str(row.chain_id)}


# --------------------------------------------------------------------------- users


async def create_user(
    gw: GatewayPorts,
    principal: Principal,
    body: s.UserCreate,
    idempotency_key: str | None,
    request_hash: str,
) -> Answer:
    """`POST /v1/users`. The request hash leaves the password out (a fast hash of it must not
    be stored next to the keys): a retry with the key is checked against the user's argon2
    hash instead, and another password is `409 idempotency_conflict` like any other change."""
    chain_id = _chain_id(principal)
    password_hash = await _in_thread(gw, lambda: passwords.hash_password(body.password))
    async with gw.session() as session, session.begin():
        if idempotency_key:
            earlier = await idempotency.claim(
                session, principal.scope, idempotency_key, request_hash
            )
            if earlier is not None and earlier.status_code is not None:
                stored = await Staff(session).password_hash(uuid.UUID(earlier.response["user_id"]))
                same = stored is not None and await _in_thread(
                    gw, lambda: passwords.verify_password(stored, body.password)
                )
                if not same:
                    raise GatewayError(
                        "idempotency_conflict",
                        "this Idempotency-Key was used with a different request",
                    )
                return Answer(earlier.status_code, earlier.response)
        key = email_key(body.email)
        staff = Staff(session)
        if await staff.live_user_id(key) is not None:
            raise _email_taken()
        user_id = uuid.uuid4()
        try:
            row = await staff.insert_user(
                user_id=user_id,
                chain_id=chain_id,
                email=body.email.strip(),
                email_key=key,
                name=body.name,
                role=body.role.value,
                password_hash=password_hash,
                created_at=_now(),
            )
        except IntegrityError as exc:  # the same email created concurrently
            raise _email_taken() from exc
        answer = Answer(201, user_json(row))
        if idempotency_key:
            await idempotency.store_response(
                session, principal.scope, idempotency_key, answer.status, answer.body
            )
        return answer


def _email_taken() -> GatewayError:
    return invalid("email", "a user with this email already exists")


async def list_users(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The chain's users (deleted ones are gone), by email."""
    after = decode_cursor(cursor, str, uuid.UUID) if cursor else None
    rows = await Staff(session).users_page(_chain_id(principal), after, limit + 1)
    page = rows[:limit]
    nxt = encode_cursor(page[-1].email_key, str(page[-1].user_id)) if len(rows) > limit else None
    return {"items": [user_json(r) for r in page], "next": nxt}


async def delete_user(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID
) -> dict[str, Any]:
    """The user can no longer sign in, and every token it has answers 401 from now on."""
    now = _now()
    staff = Staff(session)
    row = await staff.mark_deleted(_chain_id(principal), user_id, now)
    if row is None:
        raise not_found("user")
    await staff.delete_tokens_of(user_id)
    return {**_session_user(row), "deleted_at": now.isoformat()}


# --------------------------------------------------------------------------- sessions


def _rate_limited(locked_until: datetime, now: datetime) -> GatewayError:
    wait = max(1, math.ceil((locked_until - now).total_seconds()))
    return GatewayError(
        "rate_limited",
        "too many failed sign-ins for this email; wait before trying again",
        headers={"Retry-After": str(wait)},
    )


def lockout_seconds(failures: int, max_failures: int, base: float, cap: float) -> float:
    """How long an email is locked after its `failures`-th failure in a row (0: not locked)."""
    if failures < max_failures:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - max_failures, 32)))


async def _count_failure(gw: GatewayPorts, key: str) -> None:
    cfg = gw.settings
    now = _now()
    forget_before = now - timedelta(seconds=cfg.login_failure_window_seconds)
    async with gw.session() as session, session.begin():
        staff = Staff(session)
        failures = await staff.count_failure(key, now, forget_before)
        wait = lockout_seconds(
            failures,
            cfg.login_max_failures,
            cfg.login_lockout_seconds,
            cfg.login_lockout_max_seconds,
        )
        if wait > 0:
            await staff.lock_email(key, now + timedelta(seconds=wait))


async def sign_in(gw: GatewayPorts, body: s.SessionCreate) -> Answer:
    """`POST /v1/sessions`: a Bearer token for the user, or the same 401 for a wrong email or
    a wrong password (both after one argon2 check), or 429 while the email is locked."""
    key = email_key(body.email)
    now = _now()
    async with gw.read() as session:
        staff = Staff(session)
        locked_until = await staff.locked_until(key)
        if locked_until is not None and locked_until > now:
            raise _rate_limited(locked_until, now)
        user = await staff.live_user(key)
    stored = user.password_hash if user is not None else passwords.dummy_hash()
    matches = await _in_thread(gw, lambda: passwords.verify_password(stored, body.password))
    if user is None or not matches:
        await _count_failure(gw, key)
        raise GatewayError("unauthorized", WRONG_CREDENTIALS)
    rehashed = None
    if passwords.needs_rehash(user.password_hash):
        rehashed = await _in_thread(gw, lambda: passwords.hash_password(body.password))
    token, token_hash = new_session_token()
    expires_at = _now() + timedelta(seconds=gw.settings.session_ttl_seconds)
    async with gw.session() as session, session.begin():
        staff = Staff(session)
        # deleted between the check and now: no token for it
        if not await staff.lock_live_user(user.user_id):
            raise GatewayError("unauthorized", WRONG_CREDENTIALS)
        await staff.insert_token(
            token_hash=token_hash,
            user_id=user.user_id,
            chain_id=user.chain_id,
            created_at=_now(),
            expires_at=expires_at,
        )
        await staff.forget_failures(key)
        if rehashed is not None:
            await staff.set_password_hash(user.user_id, rehashed)
        chain = await load_chain(session, user.chain_id)
    return Answer(
        201,
        {
            "access_token": token,
            "expires_at": expires_at.isoformat(),
            "user": _session_user(user),
            "chain": _chain_json(chain),
        },
    )


async def current_session(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    """`GET /v1/sessions/current`: who the token belongs to, its chain, when it expires."""
    token_hash = _token_hash(principal)
    row = await Staff(session).token_user(token_hash)
    if row is None:
        raise GatewayError("unauthorized", "this token is not valid")
    chain = await load_chain(session, row.chain_id)
    return {
        "expires_at": row.expires_at.isoformat(),
        "user": _session_user(row),
        "chain": _chain_json(chain),
    }


async def sign_out(session: AsyncSession, principal: Principal) -> None:
    """The token answers 401 from now on (the user's other tokens stay valid)."""
    await Staff(session).delete_token(_token_hash(principal))


def _token_hash(principal: Principal) -> str:
    if principal.token_hash is None:
        raise GatewayError("forbidden", "this needs a staff user's token (from POST /v1/sessions)")
    return principal.token_hash


async def purge(session: AsyncSession, failure_window: timedelta) -> int:
    """Delete expired tokens and sign-in failures that no longer count."""
    now = _now()
    return await Staff(session).purge(now, now - failure_window)


__all__ = ["Role", "create_user", "delete_user", "list_users", "sign_in", "sign_out"]
