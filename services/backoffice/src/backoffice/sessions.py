"""The browser session: an encrypted, authenticated cookie that holds the user's gateway token.

Why a cookie and not a server-side store: the back office keeps no database, and a cookie
works the same with one process or several behind a load balancer, and across restarts. The
cookie is Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key derived from
`BACKOFFICE_SESSION_SECRET`, so the browser can neither read the token nor change a field; it is
HttpOnly (no script reads it), SameSite=Lax (not sent on cross-site POSTs; still sent when a
link in an email is followed) and Secure with the `__Host-` prefix unless the cookie_secure
setting is off for local http.

Every session, signed in or not, carries its own CSRF token (`security.py` checks it on every
POST); signing in starts a new session, so a token seen before sign-in is worthless after.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

#: Bumped when the cookie's fields change: older cookies are then simply not accepted.
VERSION = 1


@dataclass(frozen=True)
class User:
    """The signed-in staff member, as `POST /v1/sessions` described them."""

    user_id: str
    email: str
    name: str
    role: str  # "manager" | "customer_service"
    chain_id: str

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"


@dataclass
class Session:
    """What the cookie carries. `dirty` marks a session whose cookie must be (re)written."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token: str | None = None
    user: User | None = None
    #: Unix time after which the session is over (the token's expiry or the max age).
    expires: float = 0.0
    #: The chain's currency and time zone when the API told us (see i18n.ChainProfile).
    currency: str | None = None
    timezone: str | None = None
    dirty: bool = False

    @property
    def signed_in(self) -> bool:
        return self.token is not None and self.user is not None and time.time() < self.expires

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "csrf": self.csrf,
            "token": self.token,
            "user": None if self.user is None else self.user.__dict__,
            "exp": self.expires,
            "cur": self.currency,
            "tz": self.timezone,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session | None:
        if data.get("v") != VERSION or not isinstance(data.get("csrf"), str):
            return None
        user = data.get("user")
        return cls(
            csrf=data["csrf"],
            token=data.get("token"),
            user=User(**user) if isinstance(user, dict) else None,
            expires=float(data.get("exp") or 0.0),
            currency=data.get("cur"),
            timezone=data.get("tz"),
        )


class SessionCodec:
    """Encrypts sessions into cookie values and back; anything forged, altered, older than
    `max_age` or unreadable decodes to None (the caller starts a new anonymous session)."""

    def __init__(self, secret: str, *, secure: bool, max_age: int) -> None:
        # derived, not the secret itself: the same secret may never key anything else by accident
        digest = hashlib.sha256(b"vip-credit backoffice session v1\x00" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.secure = secure
        self.max_age = max_age
        # the __Host- prefix makes the browser refuse the cookie unless it is Secure, for
        # path / and without a Domain: no sibling sub-domain can plant or overwrite it
        self.cookie_name = "__Host-bo_session" if secure else "bo_session"

    def encode(self, session: Session) -> str:
        return self._fernet.encrypt(json.dumps(session.to_json()).encode()).decode("ascii")

    def decode(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            raw = self._fernet.decrypt(value.encode("ascii"), ttl=self.max_age)
            data = json.loads(raw)
        except (InvalidToken, ValueError, UnicodeError):
            return None
        if not isinstance(data, dict):
            return None
        try:
            return Session.from_json(data)
        except (TypeError, ValueError):
            return None

    def set_cookie_header(self, session: Session) -> str:
        """The Set-Cookie value that stores `session`."""
        max_age = self.max_age
        if session.signed_in:
            max_age = max(1, min(max_age, int(session.expires - time.time())))
        parts = [
            f"{self.cookie_name}={self.encode(session)}",
            "Path=/",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)
