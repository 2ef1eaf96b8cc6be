"""Runs a synchronous use case in one transaction, honouring `Idempotency-Key`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.bootstrap import Gateway
from pos_gateway.domain.auth import Principal
from pos_gateway.service_layer import idempotency


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


async def run_idempotent(
    gw: Gateway,
    principal: Principal,
    idempotency_key: str | None,
    request_hash: str,
    work: Callable[[AsyncSession], Awaitable[Answer]],
) -> Answer:
    """The work and its stored answer commit together; a repeat returns the stored answer.

    A refusal (an exception) rolls everything back, the key row included: nothing recorded.
    """
    async with gw.session() as session, session.begin():
        if idempotency_key:
            earlier = await idempotency.claim(
                session, principal.scope, idempotency_key, request_hash
            )
            if earlier is not None and earlier.status_code is not None:
                return Answer(earlier.status_code, earlier.response)
        answer = await work(session)
        if idempotency_key:
            await idempotency.store_response(
                session, principal.scope, idempotency_key, answer.status, answer.body
            )
        return answer
