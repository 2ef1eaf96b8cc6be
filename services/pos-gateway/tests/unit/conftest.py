"""A client of the gateway's request models behind its problem handlers, without a database:
what the API answers for a body before any handler runs (validation, limits, problem shape)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from pos_gateway import schemas as s
from pos_gateway.domain.errors import GatewayError
from pos_gateway.entrypoints.api.problems import install_problem_handlers


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """POST /sales, /customers, /payments, /returns and PUT /settings validate their body as
    the API does (a valid one answers 200); GET /refused raises a GatewayError."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/sales")
    async def sale(body: s.SaleCreate) -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/customers")
    async def customer(body: s.CustomerCreate) -> dict[str, str]:
        return {"credit_limit": str(body.credit_limit)}

    @app.post("/payments")
    async def payment(body: s.DebtPaymentCreate) -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/returns")
    async def returned(body: s.ReturnCreate) -> dict[str, str]:
        return {"ok": "yes"}

    @app.put("/settings")
    async def settings(body: s.SettingsUpdate) -> dict[str, object]:
        return body.model_dump(mode="json", exclude_unset=True)

    @app.get("/refused")
    async def refused() -> None:
        raise GatewayError("card_blocked", "this card is blocked")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
