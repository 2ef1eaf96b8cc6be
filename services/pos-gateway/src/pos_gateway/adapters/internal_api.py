"""Clients of the internal read APIs: reporting (balances, open sales, reports), notifier, and
credit (its own debt and advance, where an answer must not lag behind the read models).

Internal paths are prefixed `/internal/v1/chains/{chain_id}` so no call can cross chains. When
a service is unreachable or fails, the gateway answers `503 unavailable`: it never invents
zeros for balances it could not read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import httpx

from pos_gateway.adapters.internal_http import InternalHttpTransport
from pos_gateway.domain.errors import GatewayError

log = logging.getLogger(__name__)

ZERO_BALANCES: dict[str, Any] = {
    "debt": "0",
    "advance": "0",
    "bonus_balance": "0",
    "overdue": False,
}


def unavailable(service: str) -> GatewayError:
    return GatewayError("unavailable", f"{service} is unavailable; try again shortly")


class InternalClient:
    """One internal service: a base URL, a timeout, and chain-scoped paths."""

    service = "internal service"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if transport is None and base_url.startswith("http://"):
            transport = InternalHttpTransport()
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def chain_path(chain_id: UUID, path: str) -> str:
        return f"/internal/v1/chains/{chain_id}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        chain_id: UUID,
        path: str,
        *,
        params: httpx.QueryParams | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._client.request(
                method,
                self.chain_path(chain_id, path),
                params=params,
                json=json,
                headers=dict(headers or {}),
            )
        except httpx.HTTPError as exc:
            log.warning("%s call failed: %s", self.service, type(exc).__name__)
            raise unavailable(self.service) from exc
        if response.status_code >= 500:
            log.warning("%s answered %d", self.service, response.status_code)
            raise unavailable(self.service)
        return response

    async def get_json(self, chain_id: UUID, path: str, **kw: Any) -> Any:
        response = await self.request("GET", chain_id, path, **kw)
        return self._json(response)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            log.warning("%s answered %d", self.service, response.status_code)
            raise unavailable(self.service)
        try:
            return response.json()
        except ValueError as exc:
            raise unavailable(self.service) from exc


class CreditClient(InternalClient):
    service = "credit"

    async def debt_and_advance(self, chain_id: UUID, customer_id: UUID) -> dict[str, Any]:
        """Credit's own view: current even while reporting's read model lags behind."""
        data = await self.get_json(chain_id, f"customers/{customer_id}/credit")
        # 404: credit has never seen the customer, so it owes nothing and has no advance
        if not isinstance(data, dict):
            return {"debt": "0", "advance": "0"}
        return {"debt": data["debt"], "advance": data["advance"]}


class ReportingClient(InternalClient):
    service = "reporting"

    async def balances(self, chain_id: UUID, customer_id: UUID) -> dict[str, Any]:
        data = await self.get_json(chain_id, f"customers/{customer_id}/balances")
        # 404: reporting has not seen the customer yet, so it has no movements of it either
        return dict(data) if isinstance(data, dict) else dict(ZERO_BALANCES)

    async def balances_batch(
        self, chain_id: UUID, customer_ids: Sequence[UUID]
    ) -> dict[str, dict[str, Any]]:
        if not customer_ids:
            return {}
        response = await self.request(
            "POST",
            chain_id,
            "balances:batch",
            json={"customer_ids": [str(c) for c in customer_ids]},
        )
        data = self._json(response)
        items = (data or {}).get("items", {}) if isinstance(data, dict) else {}
        return {str(c): dict(items.get(str(c)) or ZERO_BALANCES) for c in customer_ids}

    async def open_sales(self, chain_id: UUID, customer_id: UUID, mode: str) -> list[Any]:
        data = await self.get_json(
            chain_id,
            f"customers/{customer_id}/open-sales",
            params=httpx.QueryParams({"mode": mode}),
        )
        if not isinstance(data, dict):
            return []
        return list(data.get("open_sales") or [])


class NotifierClient(InternalClient):
    service = "notifier"
