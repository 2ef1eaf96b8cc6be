"""problem+json (RFC 9457) for every error: our own, FastAPI's validation, Starlette's HTTP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from servicekit.consumer import is_transient
from starlette.exceptions import HTTPException as StarletteHTTPException

from pos_gateway.domain.errors import GatewayError, problem_body

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 429: "rate_limited", 503: "unavailable"}


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
            msg = msg[len(prefix):]
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
    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response("validation_error", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "validation_error" if exc.status_code == 422
                               else f"http_{exc.status_code}")
        return problem_response(code, str(exc.detail), exc.status_code,
                                dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        if _transient(exc):
            # PostgreSQL restarting, a dropped connection, a serialization failure: nothing was
            # recorded (the transaction did not commit) and the same request with the same
            # Idempotency-Key will succeed, so say so rather than 500
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            return problem_response("unavailable", "the service is briefly unavailable; retry "
                                    "with the same Idempotency-Key", 503, {"Retry-After": "1"})
        log.exception("unhandled error")
        return problem_response("internal_error", "an unexpected error happened", 500)
