"""Internal HTTP reads of the credit service (loopback only; for debugging and tests)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from credit.adapters.repository import Repository
from credit.service_layer.queries import customer_credit

router = APIRouter(prefix="/internal/v1/chains/{chain_id}", tags=["internal"])


@router.get("/customers/{customer_id}/credit")
async def get_customer_credit(chain_id: uuid.UUID, customer_id: uuid.UUID, request: Request) -> Any:
    """`{"customer_id", "credit_mode", "debt", "advance", "overdue", "overdue_amount",
    "open_sales": [{"sale_id", "sold_at", "due_date", "amount_owed", "overdue",
    "discount_revoked", "lines": [{"line_no", "name", "barcode", "amount_owed"}]}]}`."""
    runtime = request.app.state.runtime
    async with runtime.session_factory() as session, session.begin():
        body = await customer_credit(Repository(session), chain_id, customer_id)
    if body is None:
        return JSONResponse({"code": "not_found"}, status_code=404)
    return body
