"""The gateway's transport for the internal APIs (`adapters/internal_http.py`) against a real
uvicorn server on loopback: answers as httpx's own transport gives them, connections kept
alive and replaced when the server closed them, failures as httpx's errors (which the
internal clients turn into `503 unavailable`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from pos_gateway.adapters.internal_api import ReportingClient
from pos_gateway.adapters.internal_http import InternalHttpTransport
from pos_gateway.domain.errors import GatewayError

pytestmark = pytest.mark.integration

KEEP_ALIVE_SECONDS = 1


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo(request: Request) -> dict[str, object]:
        assert request.client is not None
        return {"port": request.client.port, "query": dict(request.query_params)}

    @app.post("/echo")
    async def echo_body(request: Request) -> dict[str, object]:
        return {"body": await request.json()}

    @app.get("/chunked")
    async def chunked() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"part {n};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    @app.get("/status/{code}")
    async def status(code: int) -> JSONResponse:
        return JSONResponse({"code": code}, status_code=code)

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(2)
        return {"late": "yes"}

    @app.get("/internal/v1/chains/{chain_id}/customers/{customer_id}/balances")
    async def balances(chain_id: str, customer_id: str) -> dict[str, object]:
        return {"debt": "12.50", "advance": "0.00", "bonus_balance": "3.40", "overdue": False}

    return app


@pytest.fixture
async def server() -> AsyncIterator[str]:
    config = uvicorn.Config(
        _app(),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # noqa: ASYNC110 - uvicorn's server has a flag, no event
        await asyncio.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        await task


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server, transport=InternalHttpTransport(), timeout=0.5
    ) as http:
        yield http


async def test_answers_come_back_as_httpx_gives_them(client: httpx.AsyncClient) -> None:
    got = await client.get("/echo", params={"mode": "per_item", "x": "a b"})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json()["query"] == {"mode": "per_item", "x": "a b"}
    posted = await client.post("/echo", json={"customer_ids": ["a", "b"]})
    assert posted.json() == {"body": {"customer_ids": ["a", "b"]}}
    streamed = await client.get("/chunked")
    assert streamed.text == "part 0;part 1;part 2;"
    for code in (404, 500):
        answer = await client.get(f"/status/{code}")
        assert (answer.status_code, answer.json()) == (code, {"code": code})


async def test_a_connection_is_kept_alive_and_replaced_once_the_server_closed_it(
    client: httpx.AsyncClient,
) -> None:
    first = (await client.get("/echo")).json()["port"]
    assert (await client.get("/echo")).json()["port"] == first  # the same connection
    await asyncio.sleep(KEEP_ALIVE_SECONDS + 0.5)  # the server closes it meanwhile
    again = await client.get("/echo")
    assert again.status_code == 200
    assert again.json()["port"] != first


async def test_concurrent_requests_each_get_their_own_answer(client: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(client.get("/echo", params={"n": str(n)}) for n in range(20)))
    assert [a.json()["query"]["n"] for a in answers] == [str(n) for n in range(20)]


async def test_no_answer_in_time_is_a_timeout(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.TimeoutException):
        await client.get("/slow")
    # the connection the late answer would come on is not reused
    assert (await client.get("/echo")).status_code == 200


async def test_a_service_that_is_down_is_unavailable_to_the_till(server: str) -> None:
    reporting = ReportingClient(server)
    try:
        balances = await reporting.balances(uuid4(), uuid4())
        assert balances["debt"] == "12.50"
    finally:
        await reporting.aclose()
    down = ReportingClient("http://127.0.0.1:9")  # nothing listens there
    try:
        with pytest.raises(GatewayError) as refused:
            await down.balances(uuid4(), uuid4())
        assert refused.value.code == "unavailable"
    finally:
        await down.aclose()
