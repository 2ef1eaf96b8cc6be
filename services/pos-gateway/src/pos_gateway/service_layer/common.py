"""Helpers every use case shares: publishing through the outbox, loading rows, snapshots."""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.base import Message
from contracts.gateway.v1 import ChainSettingsSnapshot, CustomerSnapshot
from pos_gateway.adapters.repository import MasterData, TillLookup
from pos_gateway.domain.errors import not_found
from pos_gateway.domain.money import fmt_money
from servicekit.logging import correlation_id_var
from servicekit.outbox import enqueue_message
from servicekit.sql import Db

_CORRELATION_NAMESPACE = uuid.UUID("0b8f4e5e-6f0c-4b8e-9a55-3c2f6d1e7a10")


def correlation_id() -> uuid.UUID:
    """The HTTP request's correlation id as a UUID (clients may send any string)."""
    value = correlation_id_var.get()
    if not value:
        return uuid.uuid4()
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(_CORRELATION_NAMESPACE, value)


async def publish(
    session: AsyncSession, payload: Message, *, key: str | uuid.UUID, chain_id: uuid.UUID
) -> None:
    """Write a message to the outbox in the caller's transaction (on its contract topic)."""
    await enqueue_message(
        session,
        payload.TOPIC,
        payload,
        chain_id=chain_id,
        key=key,
        correlation_id=correlation_id(),
    )


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(body: Any) -> str:
    return _sha256(canonical_json(body))


def request_hash(method: str, path: str, body: Any) -> str:
    return _sha256(f"{method} {path}\n{canonical_json(body)}")


def request_and_body_hash(method: str, path: str, body: Any) -> tuple[str, str]:
    """`request_hash` and `body_hash` of one request, its body's canonical JSON made once."""
    canonical = canonical_json(body)
    return _sha256(f"{method} {path}\n{canonical}"), _sha256(canonical)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def load_chain(session: AsyncSession, chain_id: uuid.UUID, *, lock: bool = False) -> Row[Any]:
    row = await MasterData(session).chain(chain_id, lock=lock)
    if row is None:
        raise not_found("chain")
    return row


def found_chain(found: TillLookup) -> Any:
    """The chain of a till lookup (`adapters.repository.till_lookup`), as `load_chain`."""
    if found.chain is None:
        raise not_found("chain")
    return found.chain


async def load_customer(
    session: Db, chain_id: uuid.UUID, customer_id: uuid.UUID, *, lock: bool = False
) -> Row[Any]:
    """The customer of this chain; another chain's customer is exactly as absent as none."""
    row = await MasterData(session).customer(chain_id, customer_id, lock=lock)
    if row is None:
        raise not_found("customer")
    return row


def settings_json(chain: Row[Any]) -> dict[str, Any]:
    """The chain's settings as `GET /v1/settings` shows them."""
    return {
        "credit_mode": chain.credit_mode,
        "max_payment_delay_days": chain.max_payment_delay_days,
        "overdue_discount": chain.overdue_discount,
        "block_credit_when_overdue": chain.block_credit_when_overdue,
        "reminder_repeat_days": chain.reminder_repeat_days,
        "bonus_rate_percent": fmt_money(chain.bonus_rate_percent, 2),
        "bonus_expiry_days": chain.bonus_expiry_days,
        "reminder_email": chain.reminder_email,
    }


def settings_snapshot(chain: Row[Any]) -> ChainSettingsSnapshot:
    return ChainSettingsSnapshot(
        credit_mode=chain.credit_mode,
        max_payment_delay_days=chain.max_payment_delay_days,
        overdue_discount=chain.overdue_discount,
        block_credit_when_overdue=chain.block_credit_when_overdue,
        reminder_repeat_days=chain.reminder_repeat_days,
        bonus_rate_percent=Decimal(chain.bonus_rate_percent).quantize(Decimal("0.01")),
        bonus_expiry_days=chain.bonus_expiry_days,
        timezone=chain.timezone,
        currency=chain.currency,
        minor_units=chain.minor_units,
        reminder_email=chain.reminder_email,
    )


def customer_snapshot(customer: Row[Any], minor_units: int) -> CustomerSnapshot:
    limit = customer.credit_limit
    return CustomerSnapshot(
        customer_id=customer.customer_id,
        name=customer.name,
        phone=customer.phone,
        email=customer.email,
        vip=customer.vip,
        bonus_accrual=customer.bonus_accrual,
        credit_limit=None if limit is None else Decimal(fmt_money(limit, minor_units) or "0"),
        max_payment_delay_days=customer.max_payment_delay_days,
        card_number=customer.card_number,
    )


def balances_json(balances: dict[str, Any] | None, minor_units: int) -> dict[str, Any] | None:
    if balances is None:
        return None
    return {
        "debt": fmt_money(balances.get("debt", "0"), minor_units),
        "advance": fmt_money(balances.get("advance", "0"), minor_units),
        "bonus_balance": fmt_money(balances.get("bonus_balance", "0"), minor_units),
    }


def customer_json(customer: Row[Any], balances: dict[str, Any], minor_units: int) -> dict[str, Any]:
    """Master data merged with the balances reporting holds (`GET /v1/customers/{id}`)."""
    debt = Decimal(str(balances.get("debt", "0")))
    limit = customer.credit_limit
    available = None if limit is None else max(Decimal(limit) - debt, Decimal(0))
    return {
        "customer_id": str(customer.customer_id),
        "name": customer.name,
        "phone": customer.phone,
        "email": customer.email,
        "vip": customer.vip,
        "card_number": customer.card_number,
        "bonus_accrual": customer.bonus_accrual,
        "credit_limit": fmt_money(limit, minor_units),
        "max_payment_delay_days": customer.max_payment_delay_days,
        "debt": fmt_money(debt, minor_units),
        "advance": fmt_money(str(balances.get("advance", "0")), minor_units),
        "bonus_balance": fmt_money(str(balances.get("bonus_balance", "0")), minor_units),
        "credit_available": fmt_money(available, minor_units),
        "overdue": bool(balances.get("overdue", False)),
    }
