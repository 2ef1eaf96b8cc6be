"""PostgreSQL restarting or a dropped connection answers 503 `unavailable` with Retry-After (the
transaction did not commit; the same request with the same key will succeed), not a 500. A
real bug still answers 500."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from starlette.middleware.base import BaseHTTPMiddleware

from pos_gateway.entrypoints.api.problems import install_problem_handlers


class StartingUp(Exception):
    sqlstate = "57P03"  # asyncpg's CannotConnectNowError: the database system is starting up


FAILURES: dict[str, BaseException] = {
    "starting-up": sa_exc.DBAPIError("SELECT 1", {}, StartingUp("starting up")),
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "operational": sa_exc.OperationalError("SELECT 1", {}, Exception("server closed")),
    "grouped": BaseExceptionGroup("task group", [ConnectionRefusedError(111, "refused")]),
    "bug": KeyError("missing"),
}


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/fail/{kind}")
    async def fail(kind: str) -> None:
        raise FAILURES[kind]

    async def passthrough(request, call_next):  # type: ignore[no-untyped-def]
        return await call_next(request)

    app.add_middleware(BaseHTTPMiddleware, dispatch=passthrough)  # as the gateway's middleware
    return app


async def _post(kind: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.post(f"/fail/{kind}")


@pytest.mark.parametrize("kind", ["starting-up", "refused", "operational", "grouped"])
async def test_an_unavailable_database_is_503_with_retry_after(kind: str) -> None:
    response = await _post(kind)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unavailable"


async def test_a_bug_is_still_500_internal_error() -> None:
    response = await _post("bug")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
