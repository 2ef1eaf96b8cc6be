"""The body cap: a declared Content-Length over the cap is 413 before the route runs; a body
sent without one (chunked) is 413 once it passes the cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request

from pos_gateway.entrypoints.app import BodyCap

reached: list[str] = []


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        reached.append(request.url.path)
        return {"size": len(await request.body())}

    app.add_middleware(BodyCap, max_body=100)
    return app


async def _chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 10):
        yield b"x" * 10


async def _post(content: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.post("/echo", content=content)  # type: ignore[arg-type]


async def test_a_chunked_body_over_the_cap_is_413_payload_too_large() -> None:
    response = await _post(_chunks(500))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_a_chunked_body_under_the_cap_reaches_the_route_whole() -> None:
    response = await _post(_chunks(90))
    assert response.status_code == 200
    assert response.json() == {"size": 90}


async def test_a_declared_length_under_the_cap_reaches_the_route() -> None:
    response = await _post(b"y" * 50)
    assert response.json() == {"size": 50}


async def test_a_declared_length_over_the_cap_is_413_before_the_route_runs() -> None:
    reached.clear()
    response = await _post(b"y" * 101)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert reached == []
