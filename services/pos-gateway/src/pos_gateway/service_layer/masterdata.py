"""Master data the gateway owns: chains, stores, terminals, keys, settings, customers, cards.

Every change is published on `masterdata.events.v1` through the outbox, in the transaction
that makes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.gateway.v1 import (
    CardBlocked,
    CardIssued,
    ChainRegistered,
    ChainSettingsChanged,
    CustomerRegistered,
    CustomerUpdated,
    StoreRegistered,
    TerminalRegistered,
)
from pos_gateway import schemas as s
from pos_gateway.adapters.internal_api import ZERO_BALANCES, ReportingClient
from pos_gateway.adapters.repository import ApiKeys, MasterData, TillLookup, till_lookup
from pos_gateway.domain.auth import KeyKind, Principal, new_api_key
from pos_gateway.domain.errors import GatewayError, invalid, not_found
from pos_gateway.domain.money import minor_units_of
from pos_gateway.domain.sales import check_money_scale
from pos_gateway.service_layer.common import (
    customer_json,
    customer_snapshot,
    found_chain,
    load_chain,
    load_customer,
    publish,
    settings_json,
    settings_snapshot,
)
from pos_gateway.service_layer.cursors import decode_cursor, encode_cursor
from pos_gateway.service_layer.runner import Answer, KeyIssuer
from servicekit.sql import Db

DEFAULT_SETTINGS: dict[str, Any] = {
    "credit_mode": "balance",
    "max_payment_delay_days": 30,
    "overdue_discount": "keep",
    "block_credit_when_overdue": False,
    "reminder_repeat_days": 7,
    "bonus_rate_percent": Decimal("10.00"),
    "bonus_expiry_days": None,
}


def _now() -> datetime:
    return datetime.now(UTC)


def _chain_id(principal: Principal) -> uuid.UUID:
    assert principal.chain_id is not None
    return principal.chain_id


# --------------------------------------------------------------------------- chains


async def register_chain(
    session: AsyncSession, body: s.ChainCreate, issue: KeyIssuer = new_api_key
) -> Answer:
    chain_id = uuid.uuid4()
    now = _now()
    await MasterData(session).insert_chain(
        chain_id=chain_id,
        name=body.name,
        currency=body.currency,
        minor_units=minor_units_of(body.currency),
        timezone=body.timezone,
        created_at=now,
        updated_at=now,
        **DEFAULT_SETTINGS,
    )
    token, key_hash = issue()
    await ApiKeys(session).insert(key_hash=key_hash, kind=KeyKind.ADMIN.value, chain_id=chain_id)
    chain = await load_chain(session, chain_id)
    await publish(
        session,
        ChainRegistered(
            chain_id=chain_id, name=body.name, settings=settings_snapshot(chain), registered_at=now
        ),
        key=chain_id,
        chain_id=chain_id,
    )
    return Answer(201, {"chain_id": str(chain_id), "admin_api_key": token})


async def register_store(
    session: AsyncSession, principal: Principal, body: s.StoreCreate
) -> Answer:
    chain_id = _chain_id(principal)
    master = MasterData(session)
    if await master.store_code_taken(chain_id, body.code):
        raise invalid("code", "a store with this code already exists")
    store_id = uuid.uuid4()
    now = _now()
    await master.insert_store(
        store_id=store_id, chain_id=chain_id, code=body.code, name=body.name, created_at=now
    )
    await publish(
        session,
        StoreRegistered(
            chain_id=chain_id, store_id=store_id, code=body.code, name=body.name, registered_at=now
        ),
        key=chain_id,
        chain_id=chain_id,
    )
    return Answer(201, {"store_id": str(store_id), "code": body.code, "name": body.name})


async def register_terminal(
    session: AsyncSession,
    principal: Principal,
    store_id: uuid.UUID,
    body: s.TerminalCreate,
    issue: KeyIssuer = new_api_key,
) -> Answer:
    chain_id = _chain_id(principal)
    master = MasterData(session)
    if not await master.store_exists(chain_id, store_id):
        raise not_found("store")
    terminal_id = uuid.uuid4()
    now = _now()
    await master.insert_terminal(
        terminal_id=terminal_id,
        chain_id=chain_id,
        store_id=store_id,
        name=body.name,
        created_at=now,
    )
    token, key_hash = issue()
    await ApiKeys(session).insert(
        key_hash=key_hash,
        kind=KeyKind.TERMINAL.value,
        chain_id=chain_id,
        store_id=store_id,
        terminal_id=terminal_id,
    )
    await publish(
        session,
        TerminalRegistered(
            chain_id=chain_id,
            store_id=store_id,
            terminal_id=terminal_id,
            name=body.name,
            registered_at=now,
        ),
        key=chain_id,
        chain_id=chain_id,
    )
    return Answer(201, {"terminal_id": str(terminal_id), "api_key": token})


# --------------------------------------------------------------------------- settings


async def get_settings(session: AsyncSession, principal: Principal) -> dict[str, Any]:
    return settings_json(await load_chain(session, _chain_id(principal)))


async def update_settings(
    session: AsyncSession, principal: Principal, body: s.SettingsUpdate
) -> dict[str, Any]:
    chain_id = _chain_id(principal)
    chain = await load_chain(session, chain_id, lock=True)
    # shown as "10.00": a rate with more digits would be silently rounded on every read
    check_money_scale([("bonus_rate_percent", body.bonus_rate_percent)], 2)
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if hasattr(value, "value"):
            value = value.value
        current = getattr(chain, name)
        if value != current:
            changes[name] = value
    if not changes:
        return settings_json(chain)
    now = _now()
    await MasterData(session).update_chain(chain_id, updated_at=now, **changes)
    chain = await load_chain(session, chain_id)
    await publish(
        session,
        ChainSettingsChanged(chain_id=chain_id, settings=settings_snapshot(chain), changed_at=now),
        key=chain_id,
        chain_id=chain_id,
    )
    return settings_json(chain)


# --------------------------------------------------------------------------- customers


async def _card_row(
    session: AsyncSession, chain_id: uuid.UUID, card_number: str
) -> Row[Any] | None:
    return await MasterData(session).card(chain_id, card_number)


async def _publish_customer(
    session: AsyncSession, chain: Row[Any], customer_id: uuid.UUID, *, registered: bool
) -> Row[Any]:
    customer = await load_customer(session, chain.chain_id, customer_id)
    snapshot = customer_snapshot(customer, chain.minor_units)
    now = _now()
    event: CustomerRegistered | CustomerUpdated
    if registered:
        event = CustomerRegistered(chain_id=chain.chain_id, customer=snapshot, registered_at=now)
    else:
        event = CustomerUpdated(chain_id=chain.chain_id, customer=snapshot, updated_at=now)
    await publish(session, event, key=customer_id, chain_id=chain.chain_id)
    return customer


async def create_customer(
    session: AsyncSession, principal: Principal, body: s.CustomerCreate
) -> Answer:
    chain = await load_chain(session, _chain_id(principal))
    check_money_scale([("credit_limit", body.credit_limit)], chain.minor_units)
    if body.card_number is not None and await _card_row(session, chain.chain_id, body.card_number):
        raise invalid("card_number", "this card number is already issued")
    customer_id = uuid.uuid4()
    now = _now()
    master = MasterData(session)
    await master.insert_customer(
        customer_id=customer_id,
        chain_id=chain.chain_id,
        name=body.name,
        phone=body.phone,
        email=body.email,
        vip=body.vip,
        bonus_accrual=body.bonus_accrual,
        credit_limit=body.credit_limit,
        max_payment_delay_days=body.max_payment_delay_days,
        card_number=body.card_number,
        created_at=now,
        updated_at=now,
    )
    if body.card_number is not None:
        await master.insert_card(
            chain_id=chain.chain_id,
            card_number=body.card_number,
            customer_id=customer_id,
            issued_at=now,
        )
    customer = await _publish_customer(session, chain, customer_id, registered=True)
    if body.card_number is not None:
        await _publish_card_issued(
            session, chain.chain_id, customer_id, body.card_number, None, now
        )
    # a customer registered this instant has no movements: zeros are the truth, not a guess
    return Answer(201, customer_json(customer, dict(ZERO_BALANCES), chain.minor_units))


async def _publish_card_issued(
    session: AsyncSession,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    card_number: str,
    previous: str | None,
    at: datetime,
) -> None:
    await publish(
        session,
        CardIssued(
            chain_id=chain_id,
            customer_id=customer_id,
            card_number=card_number,
            previous_card_number=previous,
            issued_at=at,
        ),
        key=customer_id,
        chain_id=chain_id,
    )


async def get_customer(
    read: Callable[[], AsyncSession],
    reporting: ReportingClient,
    principal: Principal,
    customer_id: uuid.UUID,
) -> dict[str, Any]:
    """The customer with its balances; `read` makes the read session, given back (and its
    connection) before reporting is asked, which may take a while under load."""
    async with read() as session:
        chain = await load_chain(session, _chain_id(principal))
        customer = await load_customer(session, chain.chain_id, customer_id)
    balances = await reporting.balances(chain.chain_id, customer_id)
    return customer_json(customer, balances, chain.minor_units)


async def patch_customer(
    session: AsyncSession,
    reporting: ReportingClient,
    principal: Principal,
    customer_id: uuid.UUID,
    body: s.CustomerPatch,
) -> dict[str, Any]:
    chain = await load_chain(session, _chain_id(principal))
    customer = await load_customer(session, chain.chain_id, customer_id, lock=True)
    check_money_scale([("credit_limit", body.credit_limit)], chain.minor_units)
    changes = {
        name: getattr(body, name)
        for name in body.model_fields_set
        if getattr(body, name) != getattr(customer, name)
    }
    if changes:
        await MasterData(session).update_customer(customer_id, updated_at=_now(), **changes)
        customer = await _publish_customer(session, chain, customer_id, registered=False)
    # read before commit: if reporting is down the change is refused whole (503), not half-done
    balances = await reporting.balances(chain.chain_id, customer_id)
    return customer_json(customer, balances, chain.minor_units)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_customers(
    session: AsyncSession,
    reporting: ReportingClient,
    principal: Principal,
    *,
    vip: bool | None,
    q: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    chain = await load_chain(session, _chain_id(principal))
    rows = await MasterData(session).customers_page(
        chain.chain_id,
        vip=vip,
        like=_like(q.strip()) if q else None,
        after=decode_cursor(cursor, str, uuid.UUID) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    balances = await reporting.balances_batch(chain.chain_id, [r.customer_id for r in page])
    items = [
        customer_json(r, balances.get(str(r.customer_id), dict(ZERO_BALANCES)), chain.minor_units)
        for r in page
    ]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(page[-1].name, str(page[-1].customer_id))
    return {"items": items, "next": next_cursor}


# --------------------------------------------------------------------------- cards


async def issue_card(
    session: AsyncSession, principal: Principal, customer_id: uuid.UUID, body: s.CardIssue
) -> Answer:
    chain = await load_chain(session, _chain_id(principal))
    customer = await load_customer(session, chain.chain_id, customer_id, lock=True)
    if await _card_row(session, chain.chain_id, body.card_number):
        raise invalid("card_number", "this card number is already issued")
    now = _now()
    previous = customer.card_number
    master = MasterData(session)
    if previous is not None:
        await master.block_card(chain.chain_id, previous, now, if_active=True)
    await master.insert_card(
        chain_id=chain.chain_id,
        card_number=body.card_number,
        customer_id=customer_id,
        issued_at=now,
    )
    await master.update_customer(customer_id, card_number=body.card_number, updated_at=now)
    await _publish_card_issued(
        session, chain.chain_id, customer_id, body.card_number, previous, now
    )
    await _publish_customer(session, chain, customer_id, registered=False)
    return Answer(201, {"customer_id": str(customer_id), "card_number": body.card_number})


async def block_card(session: AsyncSession, principal: Principal, card_number: str) -> Answer:
    chain = await load_chain(session, _chain_id(principal))
    card = await _card_row(session, chain.chain_id, card_number)
    if card is None:
        raise GatewayError("card_not_found", "no such card", status=404)
    answer = Answer(200, {"card_number": card_number, "blocked": True})
    if card.blocked:
        return answer
    now = _now()
    await load_customer(session, chain.chain_id, card.customer_id, lock=True)
    master = MasterData(session)
    await master.block_card(chain.chain_id, card_number, now)
    cleared = await master.clear_customer_card(card.customer_id, card_number, now)
    await publish(
        session,
        CardBlocked(
            chain_id=chain.chain_id,
            customer_id=card.customer_id,
            card_number=card_number,
            blocked_at=now,
        ),
        key=card.customer_id,
        chain_id=chain.chain_id,
    )
    if cleared:
        await _publish_customer(session, chain, card.customer_id, registered=False)
    return answer


def card_customer(found: TillLookup) -> Any:
    """The named card's customer; `card_not_found` / `card_blocked` as the till needs them."""
    if found.card is None:
        raise GatewayError("card_not_found", "no such card")
    if found.card.blocked:
        raise GatewayError("card_blocked", "this card is blocked")
    if found.card_owner is None:
        raise not_found("customer")
    return found.card_owner


async def lookup_card(
    read_one: Callable[[], AbstractAsyncContextManager[Db]],
    reporting: ReportingClient,
    principal: Principal,
    card_number: str,
) -> dict[str, Any]:
    """ "Calculate" at the till: the card's customer, balances and open sales. `read_one` gives
    the one statement of the lookup its connection, given back before reporting is asked."""
    async with read_one() as db:
        found = await till_lookup(db, _chain_id(principal), card_number=card_number)
    chain = found_chain(found)
    try:
        customer = card_customer(found)
    except GatewayError as exc:
        if exc.code == "card_not_found":
            raise GatewayError("card_not_found", exc.detail, status=404) from None
        raise GatewayError("card_blocked", exc.detail, status=403) from None
    balances = await reporting.balances(chain.chain_id, customer.customer_id)
    open_sales: list[Any] = []
    if chain.credit_mode != "balance":
        open_sales = await reporting.open_sales(
            chain.chain_id, customer.customer_id, chain.credit_mode
        )
    full = customer_json(customer, balances, chain.minor_units)
    return {
        "customer_id": full["customer_id"],
        "name": full["name"],
        "vip": full["vip"],
        "debt": full["debt"],
        "advance": full["advance"],
        "bonus_balance": full["bonus_balance"],
        "credit_limit": full["credit_limit"],
        "credit_available": full["credit_available"],
        "overdue": full["overdue"],
        "open_sales": open_sales,
    }
