"""API keys and staff tokens: random 32-byte url-safe tokens, only their SHA-256 is stored.

Three kinds of API key (operator, chain admin, terminal), and the tokens staff users get from
`POST /v1/sessions`: a manager's token acts as the chain admin key, a customer-service token
(`KeyKind.CUSTOMER_SERVICE`) only on the routes that allow that role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID


class KeyKind(StrEnum):
    OPERATOR = "operator"
    #: the chain admin key, and a manager's token
    ADMIN = "admin"
    TERMINAL = "terminal"
    #: a customer-service user's token
    CUSTOMER_SERVICE = "customer_service"


class Role(StrEnum):
    """The role of a staff user (api.md "Staff accounts")."""

    MANAGER = "manager"
    CUSTOMER_SERVICE = "customer_service"

    @property
    def kind(self) -> KeyKind:
        """The kind of key a token of this role acts as."""
        return KeyKind.ADMIN if self is Role.MANAGER else KeyKind.CUSTOMER_SERVICE


#: Staff tokens start with this; "." is not in the base64url alphabet of API keys, so a token
#: says which table holds it and authentication reads only that one.
SESSION_TOKEN_PREFIX = "st."


@dataclass(frozen=True)
class Principal:
    """Who is calling: the kind of key, and the chain/store/terminal it belongs to."""

    kind: KeyKind
    #: idempotency keys are scoped to this (one value per API key)
    scope: str
    chain_id: UUID | None = None
    store_id: UUID | None = None
    terminal_id: UUID | None = None
    #: set for a staff user's token: who it is (tasks record who completed them)
    user_id: UUID | None = None
    user_name: str | None = None
    role: Role | None = None
    #: the SHA-256 of the staff token used (signing out ends that token)
    token_hash: str | None = None
    #: set when the API key was found in this process's cache of keys, not read for this
    #: request: its hash, which the request's first statement must find still active
    #: (`service_layer.idempotency.claim_then_look_up`), so a revoked key is refused at once
    unchecked_key_hash: str | None = None


def new_api_key() -> tuple[str, str]:
    """A fresh key and the hash to store (the key itself is shown once and never stored)."""
    token = secrets.token_urlsafe(32)
    return token, hash_key(token)


def new_session_token() -> tuple[str, str]:
    """A fresh staff token and the hash to store."""
    token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_key(token)


def is_session_token(token: str) -> bool:
    return token.startswith(SESSION_TOKEN_PREFIX)


def derived_api_key(secret: str, *parts: str) -> tuple[str, str]:
    """A key that is the same every time it is derived from the same parts, and the hash to
    store. A request with an `Idempotency-Key` that issues a key gets it this way (keyed by the
    gateway's secret, from the caller's scope, its Idempotency-Key and the request): a retry is
    answered with the same key again without the key ever being stored. Unpredictable to
    anyone without the secret, like a random one."""
    message = "\n".join(("api-key", *parts)).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    return token, hash_key(token)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_operator_token(presented: str, operator_token: str) -> bool:
    """Constant-time comparison, so timing does not reveal how much of the token matched."""
    if not operator_token:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), operator_token.encode("utf-8"))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
