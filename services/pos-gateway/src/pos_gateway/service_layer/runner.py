"""Runs a synchronous use case in one transaction, honouring `Idempotency-Key`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.domain.auth import Principal, derived_api_key, new_api_key
from pos_gateway.service_layer import idempotency
from pos_gateway.service_layer.ports import GatewayPorts


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


#: Makes the API key a request issues: (the key, its hash to store).
KeyIssuer = Callable[[], tuple[str, str]]


def key_issuer(
    gw: GatewayPorts, principal: Principal, idempotency_key: str | None, request_hash: str
) -> KeyIssuer:
    """How a request that issues an API key makes it: derived from the request when it has an
    `Idempotency-Key` (so its retry shows the same key, which is never stored), else random."""
    if not idempotency_key:
        return new_api_key
    secret = gw.settings.operator_token
    return lambda: derived_api_key(secret, principal.scope, idempotency_key, request_hash)


async def run_idempotent(
    gw: GatewayPorts,
    principal: Principal,
    idempotency_key: str | None,
    request_hash: str,
    work: Callable[[AsyncSession], Awaitable[Answer]],
    *,
    secret_field: str | None = None,
    issue: KeyIssuer | None = None,
) -> Answer:
    """The work and its stored answer commit together; a repeat returns the stored answer.

    A refusal (an exception) rolls everything back, the key row included: nothing recorded.
    `secret_field`: the answer's field holding an API key the work made with `issue`; it is
    stored empty and filled again from `issue` on a repeat (API keys are stored only as
    hashes, also in idempotency rows).
    """
    async with gw.session() as session, session.begin():
        if idempotency_key:
            earlier = await idempotency.claim(
                session, principal.scope, idempotency_key, request_hash
            )
            if earlier is not None and earlier.status_code is not None:
                body = earlier.response
                if secret_field and issue and isinstance(body, dict) and secret_field in body:
                    body = {**body, secret_field: issue()[0]}
                return Answer(earlier.status_code, body)
        answer = await work(session)
        if idempotency_key:
            stored = answer.body
            if secret_field and isinstance(stored, dict) and secret_field in stored:
                stored = {**stored, secret_field: None}
            await idempotency.store_response(
                session, principal.scope, idempotency_key, answer.status, stored
            )
        return answer
