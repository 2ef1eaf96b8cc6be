"""`/docs` and `/redoc` work offline: every script, style and icon the pages load is served by
the gateway itself, and nothing on them points to another host."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from pos_gateway.bootstrap import Gateway
from pos_gateway.config import Settings
from pos_gateway.entrypoints.app import build_public_app

BASE = "http://gateway.test"
# src= and href= of <script>, <link> and <img>, and any absolute URL written in the page
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
ABSOLUTE = re.compile(r"""(?:https?:)?//[\w.-]+""")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = build_public_app(Gateway(Settings(operator_token="t" * 32)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_page_loads_every_asset_from_the_gateway_itself(
    http: httpx.AsyncClient, page: str
) -> None:
    response = await http.get(page)
    assert response.status_code == 200
    html = response.text
    refs = REFERENCE.findall(html)
    assert any(r.endswith(".js") for r in refs), refs  # the page does load its script
    for ref in refs:
        url = urljoin(BASE + page, ref)
        assert urlsplit(url).netloc == urlsplit(BASE).netloc, f"{page} loads {ref}"
        asset = await http.get(url)
        assert asset.status_code == 200, f"{page}: {ref} answered {asset.status_code}"
        assert asset.content, ref
    assert ABSOLUTE.findall(html) == []  # no CDN, no web fonts, no validator badge
    assert "/openapi.json" in html


async def test_the_swagger_and_redoc_bundles_are_the_real_ones(http: httpx.AsyncClient) -> None:
    swagger = await http.get("/docs-assets/swagger-ui-bundle.js")
    redoc = await http.get("/docs-assets/redoc.standalone.js")
    assert "SwaggerUIBundle" in swagger.text and len(swagger.content) > 500_000
    assert "redoc" in redoc.text.lower() and len(redoc.content) > 500_000
    assert swagger.headers["content-type"].startswith(("text/javascript", "application/javascript"))


async def test_the_docs_pages_are_not_part_of_the_contract(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
