"""Reads of the bonus ledger for the internal HTTP API (tests and debugging)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import format_money
from loyalty.adapters import repository as repo


async def customer_bonus(
    session: AsyncSession, chain_id: UUID, customer_id: UUID
) -> dict[str, Any]:
    """Balance, every ledger entry in the order recorded, and the open lots of one customer.

    A customer loyalty never saw (or of another chain) has a zero balance and no entries.
    """
    chain = await repo.get_chain_settings(session, chain_id)
    minor = chain.minor_units if chain is not None else repo.DEFAULT_MINOR_UNITS
    expiry_days = chain.bonus_expiry_days if chain is not None else None
    balance, deficit, movements, lots = await repo.read_bonus(session, chain_id, customer_id)

    def money(value: Decimal) -> str:
        return format_money(value, minor)

    def opt(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "chain_id": str(chain_id),
        "customer_id": str(customer_id),
        "balance": money(balance),
        "deficit": money(deficit),
        "bonus_expiry_days": expiry_days,
        "entries": [
            {
                "movement_id": str(m.movement_id),
                "kind": m.kind,
                "amount": money(m.amount),
                "at": m.at.isoformat(),
                "balance_after": money(m.balance_after),
                "operation_id": opt(m.operation_id),
                "payment_id": opt(m.payment_id),
                "sale_id": opt(m.sale_id),
                "store_id": opt(m.store_id),
                "lot_id": opt(m.lot_id),
                "recorded_at": m.recorded_at.isoformat(),
            }
            for m in movements
        ],
        "lots": [
            {
                "lot_id": str(lot["lot_id"]),
                "at": lot["at"].isoformat(),
                "amount": money(lot["amount"]),
                "remaining": money(lot["remaining"]),
                "expires_at": (
                    None
                    if expiry_days is None
                    else (lot["at"] + timedelta(days=expiry_days)).isoformat()
                ),
            }
            for lot in lots
        ],
    }
