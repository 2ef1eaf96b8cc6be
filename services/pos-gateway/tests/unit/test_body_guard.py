"""A body that is not UTF-8, not JSON or nested deeper than 32 levels is `422 validation_error`
naming `body`, never `400 http_400` (issue 13 finding 9); a currency is ISO 4217."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Annotated, Any

import httpx
import pydantic
import pytest
from fastapi import Depends, FastAPI

from pos_gateway import schemas as s
from pos_gateway.domain.money import minor_units_of
from pos_gateway.entrypoints.api.auth import authenticate
from pos_gateway.entrypoints.api.problems import install_problem_handlers
from pos_gateway.entrypoints.app import MAX_JSON_DEPTH, JsonBodyGuard, json_depth_exceeds

JSON = {"content-type": "application/json"}


def _app(*, guarded: bool = True) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/anything")
    async def anything(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    @app.post("/chains")
    async def chain(body: s.ChainCreate) -> dict[str, str]:
        return {"currency": body.currency}

    @app.post("/keyed")
    async def keyed(
        _key: Annotated[Any, Depends(authenticate)], body: dict[str, Any]
    ) -> dict[str, int]:
        return {"keys": len(body)}

    app.state.gateway = SimpleNamespace(settings=SimpleNamespace(operator_token="op-token"))
    if guarded:
        app.add_middleware(JsonBodyGuard)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def _nested(depth: int) -> bytes:
    """An object whose innermost value sits `depth` arrays/objects deep."""
    return ('{"a":' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}").encode()


def _body_error(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    [error] = body["errors"]
    assert error["field"] == "body"
    return str(error["message"])


async def test_a_body_that_is_not_utf8_names_the_body(client: httpx.AsyncClient) -> None:
    for raw in (b'{"name": "\xff\xfe"}', '{"name": "é"}'.encode("latin-1")):
        assert "UTF-8" in _body_error(await client.post("/anything", content=raw, headers=JSON))


async def test_malformed_json_names_the_body(client: httpx.AsyncClient) -> None:
    for raw in (b"{not json", b'{"a": 1', b"[1, 2,]", b'{"a": 1}}'):
        _body_error(await client.post("/anything", content=raw, headers=JSON))


async def test_json_nested_5000_deep_names_the_body_without_recursing(
    client: httpx.AsyncClient,
) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 5000, 100_000):
        message = _body_error(await client.post("/anything", content=_nested(depth), headers=JSON))
        assert "deeper than 32" in message


async def test_json_nested_32_deep_reaches_the_route(client: httpx.AsyncClient) -> None:
    response = await client.post("/anything", content=_nested(MAX_JSON_DEPTH), headers=JSON)
    assert response.json() == {"keys": 1}


async def test_brackets_inside_strings_do_not_count_as_depth(client: httpx.AsyncClient) -> None:
    raw = ('{"a": "' + "[{" * 200 + '", "b": [[1]]}').encode()
    assert (await client.post("/anything", content=raw, headers=JSON)).json() == {"keys": 2}


def test_the_depth_of_many_shallow_objects_is_not_their_number() -> None:
    wide = ("[" + ",".join('{"a": [1]}' for _ in range(1000)) + "]").encode()
    assert not json_depth_exceeds(wide)
    assert json_depth_exceeds(_nested(33)) and not json_depth_exceeds(_nested(32))


async def test_without_the_guard_fastapi_400_is_rendered_as_a_validation_error_of_the_body() -> (
    None
):
    transport = httpx.ASGITransport(app=_app(guarded=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/anything", content=b'{"a": "\xff"}', headers=JSON)
    _body_error(response)


async def test_a_currency_must_be_an_iso_4217_code(client: httpx.AsyncClient) -> None:
    for code in ("XYZ", "EUX", "AAA", "HRK", "XAU", "XXX"):
        response = await client.post("/chains", json={"name": "C", "currency": code})
        assert response.status_code == 422, code
        assert response.json()["errors"][0]["field"] == "currency"
    for code in ("EUR", "RON", "JPY", "KWD", "CLF", "ISK"):
        response = await client.post("/chains", json={"name": "C", "currency": code})
        assert response.json() == {"currency": code}


def test_minor_units_follow_iso_4217() -> None:
    assert [minor_units_of(c) for c in ("EUR", "JPY", "KWD", "CLF", "ISK", "HUF")] == [
        2,
        0,
        3,
        4,
        0,
        2,
    ]


def test_a_time_zone_must_be_an_iana_zone() -> None:
    assert s.ChainCreate(name="C", timezone="Europe/Bucharest").timezone == "Europe/Bucharest"
    for zone in ("Europe/Atlantis", "GMT+25", "../etc/passwd", "europe/bucharest"):
        with pytest.raises(pydantic.ValidationError, match="IANA"):
            s.ChainCreate(name="C", timezone=zone)


async def test_malformed_json_without_a_key_is_401_on_a_route_that_takes_one(
    client: httpx.AsyncClient,
) -> None:
    # FastAPI parses the body before any dependency: the key is checked first all the same
    no_key = await client.post("/keyed", content=b"{not json", headers=JSON)
    assert (no_key.status_code, no_key.json()["code"]) == (401, "unauthorized")
    keyed = await client.post(
        "/keyed", content=b"{not json", headers={**JSON, "Authorization": "Bearer op-token"}
    )
    _body_error(keyed)
    # a route that takes no key (as sign-in) still names the body
    _body_error(await client.post("/anything", content=b"{not json", headers=JSON))
