"""Fixtures of the back office's tests: the app in-process, talking to the fake gateway."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: the tests
# import fakegateway and backoffice_helpers from this folder
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backoffice_helpers import PASSWORD, settings  # noqa: E402
from fakegateway import FakeGateway, build_app  # noqa: E402

from backoffice.app import create_app  # noqa: E402


@pytest.fixture
def fake() -> FakeGateway:
    state = FakeGateway(chain=None)  # amounts as plain numbers unless a test gives a chain
    state.add_user("ana@example.com", "Ana Manager", "manager", PASSWORD)
    state.add_user("cs@example.com", "Ion Service", "customer_service", PASSWORD)
    return state


@pytest.fixture
async def client(fake: FakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(), transport=httpx.ASGITransport(app=build_app(fake)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://backoffice"
    ) as http:
        yield http
    await app.state.gateway.close()
