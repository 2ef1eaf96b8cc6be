"""A bug in a route answers `500 internal_error` as problem+json and the keep-alive connection
stays usable: the client's next request on it gets its answer (issue 13 finding 2: uvicorn
closed the connection after the 500 without `Connection: close`, and the next request on it was
reset). Served by a real uvicorn on 127.0.0.1, since the connection is what is tested."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pos_gateway.entrypoints.api.problems import install_problem_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/bug")
    async def bug() -> None:
        raise ZeroDivisionError("a bug")

    @app.get("/fine")
    async def fine() -> dict[str, str]:
        return {"fine": "yes"}

    return app


@pytest.fixture
async def server() -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app(), log_level="critical", lifespan="off", timeout_keep_alive=30)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    for _ in range(500):  # uvicorn has no event for "started"
        if running.started:
            break
        await asyncio.sleep(0.01)
    yield f"127.0.0.1:{port}"
    running.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, dict[str, str], bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split()[1]), headers, body


async def test_after_a_500_the_same_connection_serves_the_next_request(server: str) -> None:
    host, port = server.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        status, headers, body = await _exchange(reader, writer, "/bug")
        assert status == 500
        assert headers["content-type"] == "application/problem+json"
        assert b'"code":"internal_error"' in body
        assert headers.get("connection", "").lower() != "close"
        status, _, body = await _exchange(reader, writer, "/fine")
        assert (status, body) == (200, b'{"fine":"yes"}')
    finally:
        writer.close()


async def test_no_exception_escapes_the_app_so_the_server_never_sees_one() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/bug")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
