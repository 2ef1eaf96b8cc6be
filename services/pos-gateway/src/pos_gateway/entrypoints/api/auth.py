"""Bearer keys, checked per route: operator, chain admin, terminal, and staff users' tokens.

Missing or unknown key: 401. A key of the wrong kind: 403. Terminal keys are rate limited
(a token bucket per key, in this process): 429 with Retry-After.

An API key is read on every request, so a revoked one is refused from its commit on, on every
instance; the sale route alone may take a terminal key from the process's `KeyCache`, and its
first statement then checks the key again (`authenticate_checked_later`).

A staff token (`POST /v1/sessions`) is looked up on every request like an API key, so a
deleted user's tokens answer 401 at once on every instance. A manager's token acts as the
chain admin key (`KeyKind.ADMIN`); a customer-service token (`KeyKind.CUSTOMER_SERVICE`) only
passes the dependencies that name that kind: `BackOfficeKey` and `ChainReader`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pos_gateway.adapters.repository import ApiKeys, Staff
from pos_gateway.bootstrap import Gateway
from pos_gateway.domain.auth import (
    KeyKind,
    Principal,
    Role,
    hash_key,
    is_operator_token,
    is_session_token,
)
from pos_gateway.domain.errors import GatewayError, invalid
from pos_gateway.service_layer.idempotency import MAX_KEY_LENGTH
from servicekit.logging import chain_id_var

_bearer = HTTPBearer(
    auto_error=False,
    description="An operator, chain admin or terminal key, or a staff token from POST /v1/sessions",
)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def gateway_dependency(request: Request) -> Gateway:
    """`gateway` for `Depends`: FastAPI runs a plain function dependency in its thread pool
    (a hop to a worker thread and back on every request), a coroutine in the event loop."""
    return gateway(request)


class TokenBucket:
    """Requests per key: `rate` per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when allowed; otherwise the seconds to wait."""
        now = time.monotonic()
        tokens, last = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._state[key] = (tokens - 1, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1 - tokens) / self.rate if self.rate > 0 else 60.0


class KeyCache:
    """Terminal keys this process has read (`api_keys` rows by key hash: a row never changes
    but for its `revoked_at`), for the routes whose first statement checks the key again
    (`authenticate_checked_later`). At most `size` keys: the oldest is forgotten first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._rows: dict[str, _KeyRow] = {}

    def get(self, key_hash: str) -> _KeyRow | None:
        return self._rows.get(key_hash)

    def put(self, key_hash: str, row: _KeyRow) -> None:
        if len(self._rows) >= self.size and key_hash not in self._rows:
            del self._rows[next(iter(self._rows))]
        self._rows[key_hash] = row

    def forget(self, key_hash: str) -> None:
        self._rows.pop(key_hash, None)


#: what authentication uses of an `api_keys` row
_KeyRow = tuple[KeyKind, str, Any, Any, Any]  # kind, key_id, chain_id, store_id, terminal_id


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The caller's key, read from the database on every request: a key replaced or revoked
    (`service_layer/keys.py`) is refused from its commit on, on every instance. Keep it so: a
    cache of keys added here must forget a key within 1 s (api.md); the cache the sale route
    uses (`authenticate_checked_later`) needs no such delay: its first statement checks the
    key again."""
    return await _authenticate(request, credentials, None)


async def authenticate_checked_later(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """`authenticate` without the key's read when this process has read the terminal key
    before (`KeyCache`): the principal then carries the key's hash
    (`Principal.unchecked_key_hash`), and the route's first statement refuses the request
    (401, rolled back) unless the key is still active then, so a revoked key is refused from
    its commit on, on every instance, as by `authenticate`. Only for routes that pass the
    principal to such a statement (`service_layer.idempotency.claim_then_look_up`), which
    take a terminal key: any other key is refused as by `require(KeyKind.TERMINAL)`, in the
    same dependency (`TerminalKeyCheckedLater`; one dependency fewer per request)."""
    principal = await _authenticate(
        request, credentials, getattr(request.app.state, "key_cache", None)
    )
    return _of_kind(principal, _TERMINAL)


async def _authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    cache: KeyCache | None,
) -> Principal:
    gw = gateway(request)
    if credentials is None or not credentials.credentials:
        raise GatewayError("unauthorized", "an Authorization: Bearer key is required")
    token = credentials.credentials
    if is_operator_token(token, gw.settings.operator_token):
        return Principal(KeyKind.OPERATOR, scope="operator")
    if is_session_token(token):
        return await _staff_principal(gw, token)
    key_hash = hash_key(token)
    row = cache.get(key_hash) if cache is not None else None
    cached = row is not None
    if row is None:
        row = await _read_key(gw, key_hash)
        if row is None:
            raise GatewayError("unauthorized", "unknown API key")
        if cache is not None and row[0] is KeyKind.TERMINAL:
            cache.put(key_hash, row)
    kind, key_id, chain_id, store_id, terminal_id = row
    principal = Principal(
        kind,
        scope=f"key:{key_id}",
        chain_id=chain_id,
        store_id=store_id,
        terminal_id=terminal_id,
        unchecked_key_hash=key_hash if cached else None,
    )
    if chain_id is not None:
        # every log line of the rest of this request carries the chain (the request runs in a
        # context of its own, so this never leaks into another request)
        chain_id_var.set(str(chain_id))
    if principal.kind is KeyKind.TERMINAL:
        limiter: TokenBucket | None = getattr(request.app.state, "rate_limiter", None)
        wait = limiter.take(principal.scope) if limiter is not None else 0.0
        if wait > 0:
            if cache is not None and cached and await _read_key(gw, key_hash) is None:
                # a revoked key is refused as such, not rate limited
                cache.forget(key_hash)
                raise GatewayError("unauthorized", "unknown API key")
            raise GatewayError(
                "rate_limited",
                "too many requests from this terminal",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    if cached:
        # until the route runs the statement that checks it: a refusal before that (a header
        # or the body) is answered 401 if the key is revoked (`refused_unchecked_key`)
        request.state.unchecked_key_hash = key_hash
    return principal


async def refused_unchecked_key(request: Request) -> GatewayError | None:
    """For a request refused before its route checked the key it took from the cache (its
    Idempotency-Key header, its body): `401 unauthorized` when that key is no longer active,
    as `authenticate` would have answered; None otherwise."""
    key_hash: str | None = getattr(request.state, "unchecked_key_hash", None)
    if key_hash is None:
        return None
    request.state.unchecked_key_hash = None
    if await _read_key(gateway(request), key_hash) is not None:
        return None
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    if cache is not None:
        cache.forget(key_hash)
    return GatewayError("unauthorized", "unknown API key")


async def _read_key(gw: Gateway, key_hash: str) -> _KeyRow | None:
    async with gw.read_one() as db:
        row = await ApiKeys(db).active(key_hash)
    if row is None:
        return None
    return (
        KeyKind(row["kind"]),
        str(row["key_id"]),
        row["chain_id"],
        row["store_id"],
        row["terminal_id"],
    )


async def _staff_principal(gw: Gateway, token: str) -> Principal:
    async with gw.read() as session:
        row = await Staff(session).live_token_user(hash_key(token))
    if row is None:
        raise GatewayError("unauthorized", "unknown or expired token")
    role = Role(row.role)
    chain_id_var.set(str(row.chain_id))
    return Principal(
        role.kind,
        # idempotency keys are the user's, whichever of its tokens sends them
        scope=f"user:{row.user_id}",
        chain_id=row.chain_id,
        user_id=row.user_id,
        user_name=row.name,
        role=role,
        token_hash=hash_key(token),
    )


def _of_kind(principal: Principal, allowed: frozenset[KeyKind]) -> Principal:
    """`principal`, if its kind is one of `allowed`; else `403 forbidden`."""
    if principal.kind not in allowed:
        if principal.kind is KeyKind.CUSTOMER_SERVICE:
            raise GatewayError("forbidden", "the customer_service role may not do this")
        names = sorted(k.value for k in allowed if k is not KeyKind.CUSTOMER_SERVICE)
        raise GatewayError("forbidden", f"this needs a {' or '.join(names)} key")
    return principal


_TERMINAL = frozenset({KeyKind.TERMINAL})


def require(
    *kinds: KeyKind, authenticator: Callable[..., Awaitable[Principal]] = authenticate
) -> Callable[..., Awaitable[Principal]]:
    allowed = frozenset(kinds)

    async def dependency(principal: Principal) -> Principal:
        return _of_kind(principal, allowed)

    # the parameter's dependency is `authenticator`, a local name: given in the signature
    # itself (FastAPI resolves a string annotation in the module's globals)
    dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "principal",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[Principal, Depends(authenticator)],
            )
        ],
        return_annotation=Principal,
    )
    return dependency


async def _staff_user(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if principal.user_id is None:
        raise GatewayError("forbidden", "this needs a staff user's token (POST /v1/sessions)")
    return principal


OperatorKey = Annotated[Principal, Depends(require(KeyKind.OPERATOR))]
#: the chain admin key or a manager's token
AdminKey = Annotated[Principal, Depends(require(KeyKind.ADMIN))]
TerminalKey = Annotated[Principal, Depends(require(KeyKind.TERMINAL))]
#: a terminal key that may come from the process's `KeyCache`: only for a route whose first
#: statement checks it again (`authenticate_checked_later`)
TerminalKeyCheckedLater = Annotated[Principal, Depends(authenticate_checked_later)]
#: what customer service may do too (api.md "Staff accounts"): reading customers, reports,
#: statements and tasks, completing tasks, revoking an offered discount, cancelling accruals
BackOfficeKey = Annotated[Principal, Depends(require(KeyKind.ADMIN, KeyKind.CUSTOMER_SERVICE))]
#: the till reads of a chain: its admin (and staff) and its terminals
ChainReader = Annotated[
    Principal, Depends(require(KeyKind.ADMIN, KeyKind.TERMINAL, KeyKind.CUSTOMER_SERVICE))
]
#: any signed-in staff user (its own session)
StaffUser = Annotated[Principal, Depends(_staff_user)]


def _check_key(value: str | None) -> str | None:
    if value is not None and not (0 < len(value) <= MAX_KEY_LENGTH):
        raise invalid("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    return value


async def optional_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", description="Repeats with the same key get the same answer"
        ),
    ] = None,
) -> str | None:
    return _check_key(idempotency_key)


async def required_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required: a retry with the same key and body gets the original answer",
        ),
    ] = None,
) -> str:
    if idempotency_key is None:
        raise invalid("Idempotency-Key", "the Idempotency-Key header is required")
    checked = _check_key(idempotency_key)
    assert checked is not None
    return checked


OptionalIdempotencyKey = Annotated[str | None, Depends(optional_idempotency_key)]
RequiredIdempotencyKey = Annotated[str, Depends(required_idempotency_key)]
