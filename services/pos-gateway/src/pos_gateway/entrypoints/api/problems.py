"""problem+json (RFC 9457) for every error: our own, FastAPI's validation, Starlette's HTTP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from pos_gateway.domain.errors import GatewayError, problem_body
from servicekit.asgi import answer_unless_started
from servicekit.consumer import is_transient

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    503: "unavailable",
}


def problem_response(
    code: str,
    detail: str,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(code, detail, status, **extra)
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def error_response(exc: GatewayError) -> JSONResponse:
    return problem_response(exc.code, exc.detail, exc.status, exc.headers or None, **exc.extra)


def field_path(loc: Sequence[int | str]) -> str:
    """('body', 'lines', 0, 'unit_price') -> 'lines.0.unit_price'; headers keep their name."""
    parts = list(loc)
    if parts and parts[0] == "header" and len(parts) > 1:
        return "-".join(w.capitalize() for w in str(parts[1]).split("-"))
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "body"


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        return "the body is not valid JSON"
    msg = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors():
        loc = error.get("loc", ())
        if error.get("type") == "json_invalid":
            loc = ("body",)
        errors.append({"field": field_path(loc), "message": _message(error)})
    return errors


def _transient(exc: BaseException) -> bool:
    """`servicekit.consumer.is_transient`, also through the exception groups middleware wraps."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return is_transient(exc)


def install_problem_handlers(app: FastAPI) -> None:
    from pos_gateway.entrypoints.api.auth import refused_unchecked_key

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        if exc.code != "unauthorized" and (refused := await refused_unchecked_key(request)):
            return error_response(refused)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if refused := await refused_unchecked_key(request):
            return error_response(refused)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            # FastAPI parses the body before it runs any dependency: without this, a caller
            # with no key or a wrong one got 422 for malformed JSON where api.md says 401
            refused = await _key_refused(request)
            if refused is not None:
                return error_response(refused)
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response("validation_error", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's "There was an error parsing the body": the contract has no 400, a body
            # that cannot be read is a validation error of the body (JsonBodyGuard answers the
            # known cases first; this covers the rest)
            message = "the body could not be read as JSON"
            return problem_response(
                "validation_error",
                f"body: {message}",
                errors=[{"field": "body", "message": message}],
            )
        code = _HTTP_CODES.get(
            exc.status_code,
            "validation_error" if exc.status_code == 422 else f"http_{exc.status_code}",
        )
        return problem_response(
            code, str(exc.detail), exc.status_code, dict(exc.headers) if exc.headers else None
        )

    # not `exception_handler(Exception)`: Starlette runs that one in ServerErrorMiddleware,
    # which raises the exception again after answering, and uvicorn then closes the keep-alive
    # connection without `Connection: close` (the client's next request on it is reset)
    app.add_middleware(CatchAll)


def _needs_key(dependant: Dependant, check: object) -> bool:
    return any(d.call is check or _needs_key(d, check) for d in dependant.dependencies)


async def _key_refused(request: Request) -> GatewayError | None:
    """The refusal the route's key check gives this request (401 without a key or with a wrong
    one, 429 for a terminal over its rate), None when the key passes or the route takes none
    (sign-in)."""
    from pos_gateway.entrypoints.api.auth import (
        _bearer,
        authenticate,
        authenticate_checked_later,
    )

    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not (
        _needs_key(route.dependant, authenticate)
        or _needs_key(route.dependant, authenticate_checked_later)
    ):
        return None
    # the key read from the database, never from the cache of keys: the route's statement
    # that would check a cached key again is not run for a refused request
    try:
        await authenticate(request, await _bearer(request))
    except GatewayError as refused:
        return refused
    return None


def unexpected_response(exc: BaseException) -> JSONResponse:
    """The answer to an exception no handler took: 503 when it is transient, else 500."""
    if _transient(exc):
        # PostgreSQL restarting, a dropped connection, a serialization failure: nothing was
        # recorded (the transaction did not commit) and the same request with the same
        # Idempotency-Key will succeed, so say so rather than 500
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return problem_response(
            "unavailable",
            "the service is briefly unavailable; retry with the same Idempotency-Key",
            503,
            {"Retry-After": "1"},
        )
    log.error("unhandled error", exc_info=exc)
    return problem_response("internal_error", "an unexpected error happened", 500)


async def _unexpected(exc: Exception) -> ASGIApp:
    return unexpected_response(exc)


class CatchAll:
    """Every exception that reaches it becomes a problem+json answer (500, or 503 when
    transient) and goes no further, so the server keeps the connection usable. Plain ASGI,
    inside the other middleware: they see the answer like any other. An exception after the
    answer has started cannot be answered any more: it is raised, and the server closes the
    connection, which is then the only honest thing left to do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await answer_unless_started(self.app, scope, receive, send, _unexpected)
