"""Loyalty's internal HTTP API (loopback only, not public): a customer's bonus ledger."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from loyalty.service_layer import queries
from servicekit.runtime import Runtime

router = APIRouter(prefix="/internal/v1/chains/{chain_id}", tags=["internal"])


@router.get("/customers/{customer_id}/bonus")
async def customer_bonus(chain_id: UUID, customer_id: UUID, request: Request) -> dict[str, Any]:
    """``{"balance", "deficit", "bonus_expiry_days", "entries": [...], "lots": [...]}``."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.session_factory() as session:
        return await queries.customer_bonus(session, chain_id, customer_id)
