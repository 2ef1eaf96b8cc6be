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

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.adapters.repository import ApiKeys, MasterData
from pos_gateway.domain.auth import KeyKind, Principal, new_api_key
from pos_gateway.domain.errors import not_found
from pos_gateway.service_layer.common import load_chain
from pos_gateway.service_layer.cursors import decode_cursor, encode_cursor
from pos_gateway.service_layer.runner import Answer, KeyIssuer


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --------------------------------------------------------------------------- chains (operator)


async def list_chains(session: AsyncSession, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """Every chain, oldest first."""
    after = decode_cursor(cursor, datetime.fromisoformat, uuid.UUID) if cursor else None
    rows = await MasterData(session).chains_page(after, limit + 1)
    page = rows[:limit]
    items = [
        {
            "chain_id": str(r.chain_id),
            "name": r.name,
            "currency": r.currency,
            "timezone": r.timezone,
            "created_at": _iso(r.created_at),
        }
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
    keys = ApiKeys(session)
    await keys.revoke_admin_keys(chain_id, _now())
    token, key_hash = issue()
    await keys.insert(key_hash=key_hash, kind=KeyKind.ADMIN.value, chain_id=chain_id)
    return Answer(201, {"admin_api_key": token})


# --------------------------------------------------------------------------- stores (admin)


def _chain_of(principal: Principal) -> uuid.UUID:
    assert principal.chain_id is not None
    return principal.chain_id


async def list_stores(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The chain's stores by code, each with every terminal it ever had."""
    chain_id = _chain_of(principal)
    after = decode_cursor(cursor, str, uuid.UUID) if cursor else None
    master = MasterData(session)
    rows = await master.stores_page(chain_id, after, limit + 1)
    page = rows[:limit]
    terminals: dict[uuid.UUID, list[dict[str, Any]]] = {r.store_id: [] for r in page}
    if page:
        for r in await master.terminals_of(chain_id, terminals):
            terminals[r.store_id].append(
                {
                    "terminal_id": str(r.terminal_id),
                    "name": r.name,
                    "created_at": _iso(r.created_at),
                    "revoked_at": _iso(r.revoked_at),
                }
            )
    items = [
        {
            "store_id": str(r.store_id),
            "code": r.code,
            "name": r.name,
            "terminals": terminals[r.store_id],
        }
        for r in page
    ]
    nxt = encode_cursor(page[-1].code, str(page[-1].store_id)) if len(rows) > limit else None
    return {"items": items, "next": nxt}


# --------------------------------------------------------------------------- terminals (admin)


async def _terminal(
    session: AsyncSession, principal: Principal, terminal_id: uuid.UUID
) -> Row[Any]:
    """The chain's terminal, locked (another chain's is exactly as absent as none)."""
    row = await MasterData(session).lock_terminal(_chain_of(principal), terminal_id)
    if row is None:
        raise not_found("terminal")
    return row


async def replace_terminal_key(
    session: AsyncSession,
    principal: Principal,
    terminal_id: uuid.UUID,
    issue: KeyIssuer = new_api_key,
) -> Answer:
    """The terminal's new key; its old key is revoked in the same commit. A revoked terminal
    stays revoked: it is `404`, as a terminal that can take no key."""
    terminal = await _terminal(session, principal, terminal_id)
    keys = ApiKeys(session)
    if not await keys.active_terminal_keys(terminal_id):
        raise not_found("terminal (it was deleted)")
    await keys.revoke_terminal_keys(terminal_id, _now())
    token, key_hash = issue()
    await keys.insert(
        key_hash=key_hash,
        kind=KeyKind.TERMINAL.value,
        chain_id=terminal.chain_id,
        store_id=terminal.store_id,
        terminal_id=terminal_id,
    )
    return Answer(201, {"terminal_id": str(terminal_id), "api_key": token})


async def revoke_terminal(
    session: AsyncSession, principal: Principal, terminal_id: uuid.UUID
) -> Answer:
    """Revoke the terminal's key for good; asked again, the same answer."""
    await _terminal(session, principal, terminal_id)
    keys = ApiKeys(session)
    await keys.revoke_terminal_keys(terminal_id, _now())
    revoked_at = await keys.terminal_revoked_at(terminal_id)
    return Answer(200, {"terminal_id": str(terminal_id), "revoked_at": _iso(revoked_at)})
