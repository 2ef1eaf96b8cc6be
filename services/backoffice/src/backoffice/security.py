"""The session, CSRF and security headers, as one plain ASGI middleware around the whole app.

- The session is read from its cookie (or a new anonymous one is made) and put on
  `request.state.session`; when a route changed it, the response stores it again.
- Every POST (and any other unsafe method) must carry the session's CSRF token, in the form
  field `csrf_token` or the `X-CSRF-Token` header (htmx sends the header): checked here, before
  any route runs, so no route can forget it. Without it: 403 and nothing happens.
- Every response gets the security headers: a Content-Security-Policy that allows scripts and
  styles only from this origin (no inline script, no eval), no framing, no sniffing, and pages
  are not cached (they hold customers' data).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backoffice.sessions import Session, SessionCodec
from servicekit.asgi import answer_unless_started, replaying

CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
#: Forms here are a few fields: a larger body is refused before it is read in full.
MAX_FORM_BYTES = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
#: paths that neither need nor get a session cookie
_NO_SESSION_PREFIXES = ("/static/", "/health/", "/metrics")

Refusal = Callable[[Request, str], Awaitable[Response]]
Crash = Callable[[Request, BaseException], Awaitable[Response]]


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            if name in jar:
                return jar[name].value
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class SecurityMiddleware:
    """Session in, CSRF checked, headers out (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, codec: SessionCodec, refuse: Refusal, crash: Crash) -> None:
        self.app = app
        self.codec = codec
        self.refuse = refuse
        self.crash = crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        uses_session = not path.startswith(_NO_SESSION_PREFIXES)
        session = self.codec.decode(_cookie(scope, self.codec.cookie_name))
        if session is None:
            session = Session(dirty=uses_session)
        scope.setdefault("state", {})["session"] = session

        async def send_with_headers(message: Message) -> None:
            await send(self._with_headers(message, scope, path, uses_session))

        async def crash_page(exc: Exception) -> ASGIApp:
            return await self.crash(Request(scope), exc)

        async def run(app_receive: Receive) -> None:
            # an unexpected error becomes a page here, inside this middleware, so it gets the
            # security headers too (Starlette's own 500 handler sits outside every middleware)
            await answer_unless_started(self.app, scope, app_receive, send_with_headers, crash_page)

        if scope["method"] in SAFE_METHODS:
            await run(receive)
            return

        body, too_large = await _read_body(receive)
        if too_large or not _csrf_matches(scope, body, session):
            reason = "too_large" if too_large else "csrf"
            response = await self.refuse(Request(scope), reason)
            await response(scope, receive, send_with_headers)
            return
        await run(replaying(body, receive))

    def _with_headers(
        self, message: Message, scope: Scope, path: str, uses_session: bool
    ) -> Message:
        """The response's start with the security headers (in place of any the app set), no
        caching but for static files, and the session's cookie when a route changed it."""
        if message["type"] != "http.response.start":
            return message
        headers = [
            (k, v)
            for k, v in message.get("headers", [])
            if k.lower() not in {h for h, _ in SECURITY_HEADERS}
        ]
        headers += SECURITY_HEADERS
        current: Session = scope["state"]["session"]
        if not path.startswith("/static/"):
            headers.append((b"cache-control", b"no-store"))
        if uses_session and current.dirty:
            header = self.codec.set_cookie_header(current)
            headers.append((b"set-cookie", header.encode("latin-1")))
        return {**message, "headers": headers}


def _csrf_matches(scope: Scope, body: bytes, session: Session) -> bool:
    """The request carries the session's CSRF token: in the `X-CSRF-Token` header, else in
    the `csrf_token` field of a form."""
    token = _header(scope, CSRF_HEADER)
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if token is None and content_type == "application/x-www-form-urlencoded" and body:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        values = fields.get(CSRF_FIELD) or []
        token = values[0] if values else None
    if not token:
        return False
    return hmac.compare_digest(token.encode("utf-8", "replace"), session.csrf.encode())


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False
