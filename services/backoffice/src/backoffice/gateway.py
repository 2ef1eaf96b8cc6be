"""The gateway's public API as the back office uses it: one HTTP client, errors as exceptions.

Every call carries the signed-in user's Bearer token; nothing here talks to an internal API.
Answers the pages can act on become exceptions the app renders (`app.py`):

- the gateway unreachable, timing out or answering 502/503/504 -> `GatewayUnavailable`
  (a friendly 503 page);
- 401 -> `SessionExpired` (the user signs in again);
- any other problem (403, 404, 409, 422, 429, 500) -> `ApiProblem`, with the 422 field errors,
  so a form can show each message next to its field.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)


class GatewayUnavailable(Exception):
    """The gateway did not answer, or answered that it (or a service behind it) is down."""


@dataclass
class ApiProblem(Exception):
    """An RFC 9457 problem answer of the gateway."""

    status: int
    code: str
    title: str = ""
    detail: str = ""
    #: field -> message (422 validation_error); the field as the API names it, e.g. `email`
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail or self.title}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiProblem:
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        errors: dict[str, str] = {}
        for item in body.get("errors") or []:
            if isinstance(item, dict) and item.get("field"):
                errors.setdefault(str(item["field"]), str(item.get("message") or ""))
        return cls(
            status=response.status_code,
            code=str(body.get("code") or f"http_{response.status_code}"),
            title=str(body.get("title") or response.reason_phrase or ""),
            detail=str(body.get("detail") or ""),
            errors=errors,
            retry_after=response.headers.get("retry-after"),
        )


class SessionExpired(ApiProblem):
    """401 from the gateway: the token is unknown, expired, or its user was deleted."""


_UNAVAILABLE = frozenset({502, 503, 504})


class Gateway:
    """One pooled HTTP client to the gateway for the whole process."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "vip-credit-backoffice"},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        accept: str | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """The gateway's answer (2xx), else the exception this module's docstring names."""
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if accept:
            headers["Accept"] = accept
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        clean = None
        if params:
            clean = {k: v for k, v in params.items() if v is not None and v != ""}
        try:
            response = await self._client.request(
                method, path, params=clean, json=json, headers=headers
            )
        except httpx.TransportError as exc:
            # connection refused, reset, DNS, timeouts: the page says "try again shortly"
            log.warning("gateway unreachable: %s %s: %s", method, path, type(exc).__name__)
            raise GatewayUnavailable(type(exc).__name__) from exc
        if response.status_code < 400:
            return response
        if response.status_code in _UNAVAILABLE:
            raise GatewayUnavailable(f"gateway answered {response.status_code}")
        problem = ApiProblem.from_response(response)
        if response.status_code == 401:
            raise SessionExpired(**problem.__dict__)
        if response.status_code >= 500:
            log.error("gateway answered %s for %s %s", response.status_code, method, path)
        raise problem


@dataclass
class Api:
    """The gateway seen with one user's token (made per request)."""

    gateway: Gateway
    token: str | None

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.gateway.request("GET", path, token=self.token, params=params)
        return response.json()

    async def csv(self, path: str, **params: Any) -> httpx.Response:
        return await self.gateway.request(
            "GET", path, token=self.token, params=params, accept="text/csv"
        )

    async def send(
        self, method: str, path: str, body: Any = None, *, idempotency_key: str | None = None
    ) -> Any:
        """A state-changing call. `idempotency_key` comes from the form (a retry of the same
        form submission is then answered, not applied, a second time); a fresh one otherwise."""
        response = await self.gateway.request(
            method,
            path,
            token=self.token,
            json=body,
            idempotency_key=idempotency_key or (str(uuid.uuid4()) if method == "POST" else None),
        )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
