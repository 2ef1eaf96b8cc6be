"""The lifecycle of chains', stores' and terminals' keys (api.md, "Chains, stores, terminals,
keys"): list the chains (operator), replace a chain's lost or leaked admin key (operator),
list the stores with their terminals (admin), replace a terminal's key or revoke the terminal
(admin).

A key is refused (`401`) as soon as its `revoked_at` is set: authentication reads the key row
on every request and keeps no cache, so "from then on" holds on every gateway instance at the
commit. A terminal is revoked when none of its keys is active any more; its `revoked_at` is when
its last key was revoked (derived from its keys: the terminal has no column for it). Its past
operations stay wherever they are: nothing of them is touched.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.adapters import tables as t
from pos_gateway.domain.auth import KeyKind, Principal, new_api_key
from pos_gateway.domain.errors import invalid, not_found
from pos_gateway.service_layer.common import load_chain
from pos_gateway.service_layer.runner import Answer, KeyIssuer


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def encode_cursor(*position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The position a `next` cursor of this API holds, or `422` naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        if not (isinstance(position, list) and len(position) == size
                and all(isinstance(p, str) and "\x00" not in p for p in position)):
            raise ValueError(position)
        return position
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise invalid("cursor", "not a cursor this API returned") from exc


# --------------------------------------------------------------------------- chains (operator)


async def list_chains(session: AsyncSession, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """Every chain, oldest first."""
    c = t.chains.c
    query = sa.select(c.chain_id, c.name, c.currency, c.timezone, c.created_at)
    if cursor:
        created, chain_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(created), uuid.UUID(chain_id))
        except ValueError as exc:
            raise invalid("cursor", "not a cursor this API returned") from exc
        query = query.where(sa.tuple_(c.created_at, c.chain_id) > sa.tuple_(
            sa.literal(after[0]), sa.literal(after[1])))
    rows = (await session.execute(
        query.order_by(c.created_at, c.chain_id).limit(limit + 1))).all()
    page = rows[:limit]
    items = [
        {"chain_id": str(r.chain_id), "name": r.name, "currency": r.currency,
         "timezone": r.timezone, "created_at": _iso(r.created_at)}
        for r in page
    ]
    nxt = None
    if len(rows) > limit:
        nxt = encode_cursor(page[-1].created_at.isoformat(), str(page[-1].chain_id))
    return {"items": items, "next": nxt}


async def replace_admin_key(
    session: AsyncSession, chain_id: uuid.UUID, issue: KeyIssuer = new_api_key
) -> Answer:
    """A new admin key; every earlier admin key of the chain is revoked in the same commit."""
    # the chain's row lock orders two replacements: the second revokes the first's new key
    await load_chain(session, chain_id, lock=True)
    await session.execute(
        sa.update(t.api_keys)
        .where(t.api_keys.c.chain_id == chain_id, t.api_keys.c.kind == KeyKind.ADMIN.value,
               t.api_keys.c.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    token, key_hash = issue()
    await session.execute(
        sa.insert(t.api_keys).values(
            key_hash=key_hash, key_id=uuid.uuid4(), kind=KeyKind.ADMIN.value, chain_id=chain_id
        )
    )
    return Answer(201, {"admin_api_key": token})


# --------------------------------------------------------------------------- stores (admin)


def _chain_of(principal: Principal) -> uuid.UUID:
    assert principal.chain_id is not None
    return principal.chain_id


def _terminal_revoked_at() -> Any:
    """Per terminal: null while one of its keys is active, else when the last was revoked."""
    k = t.api_keys.c
    return (
        sa.select(
            k.terminal_id,
            sa.case(
                (sa.func.count().filter(k.revoked_at.is_(None)) > 0, sa.null()),
                else_=sa.func.max(k.revoked_at),
            ).label("revoked_at"),
        )
        .where(k.kind == KeyKind.TERMINAL.value)
        .group_by(k.terminal_id)
        .subquery()
    )


async def list_stores(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The chain's stores by code, each with every terminal it ever had."""
    chain_id = _chain_of(principal)
    st = t.stores.c
    query = sa.select(st.store_id, st.code, st.name).where(st.chain_id == chain_id)
    if cursor:
        code, store_id = decode_cursor(cursor, 2)
        try:
            after_id = uuid.UUID(store_id)
        except ValueError as exc:
            raise invalid("cursor", "not a cursor this API returned") from exc
        query = query.where(sa.tuple_(st.code, st.store_id) > sa.tuple_(
            sa.literal(code), sa.literal(after_id)))
    rows = (await session.execute(query.order_by(st.code, st.store_id).limit(limit + 1))).all()
    page = rows[:limit]
    terminals: dict[uuid.UUID, list[dict[str, Any]]] = {r.store_id: [] for r in page}
    if page:
        revoked = _terminal_revoked_at()
        tm = t.terminals.c
        for r in (await session.execute(
            sa.select(tm.store_id, tm.terminal_id, tm.name, tm.created_at, revoked.c.revoked_at)
            .outerjoin(revoked, revoked.c.terminal_id == tm.terminal_id)
            .where(tm.chain_id == chain_id, tm.store_id.in_(list(terminals)))
            .order_by(tm.created_at, tm.terminal_id)
        )).all():
            terminals[r.store_id].append({
                "terminal_id": str(r.terminal_id), "name": r.name,
                "created_at": _iso(r.created_at), "revoked_at": _iso(r.revoked_at),
            })
    items = [
        {"store_id": str(r.store_id), "code": r.code, "name": r.name,
         "terminals": terminals[r.store_id]}
        for r in page
    ]
    nxt = encode_cursor(page[-1].code, str(page[-1].store_id)) if len(rows) > limit else None
    return {"items": items, "next": nxt}


# --------------------------------------------------------------------------- terminals (admin)


async def _terminal(
    session: AsyncSession, principal: Principal, terminal_id: uuid.UUID
) -> Row[Any]:
    """The chain's terminal, locked (another chain's is exactly as absent as none)."""
    row = (await session.execute(
        sa.select(t.terminals)
        .where(t.terminals.c.chain_id == _chain_of(principal),
               t.terminals.c.terminal_id == terminal_id)
        .with_for_update()
    )).first()
    if row is None:
        raise not_found("terminal")
    return row


async def _active_keys(session: AsyncSession, terminal_id: uuid.UUID) -> int:
    return int(await session.scalar(
        sa.select(sa.func.count()).where(t.api_keys.c.terminal_id == terminal_id,
                                         t.api_keys.c.revoked_at.is_(None))
    ) or 0)


async def replace_terminal_key(
    session: AsyncSession, principal: Principal, terminal_id: uuid.UUID,
    issue: KeyIssuer = new_api_key,
) -> Answer:
    """The terminal's new key; its old key is revoked in the same commit. A revoked terminal
    stays revoked: it is `404`, as a terminal that can take no key."""
    terminal = await _terminal(session, principal, terminal_id)
    if not await _active_keys(session, terminal_id):
        raise not_found("terminal (it was deleted)")
    await session.execute(
        sa.update(t.api_keys)
        .where(t.api_keys.c.terminal_id == terminal_id, t.api_keys.c.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    token, key_hash = issue()
    await session.execute(
        sa.insert(t.api_keys).values(
            key_hash=key_hash, key_id=uuid.uuid4(), kind=KeyKind.TERMINAL.value,
            chain_id=terminal.chain_id, store_id=terminal.store_id, terminal_id=terminal_id,
        )
    )
    return Answer(201, {"terminal_id": str(terminal_id), "api_key": token})


async def revoke_terminal(
    session: AsyncSession, principal: Principal, terminal_id: uuid.UUID
) -> Answer:
    """Revoke the terminal's key for good; asked again, the same answer."""
    await _terminal(session, principal, terminal_id)
    await session.execute(
        sa.update(t.api_keys)
        .where(t.api_keys.c.terminal_id == terminal_id, t.api_keys.c.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    revoked_at = await session.scalar(
        sa.select(sa.func.max(t.api_keys.c.revoked_at))
        .where(t.api_keys.c.terminal_id == terminal_id)
    )
    return Answer(200, {"terminal_id": str(terminal_id), "revoked_at": _iso(revoked_at)})
