"""Fixtures of the back office's tests: the app in-process, talking to the fake gateway."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakegateway import FakeGateway, FakeUser, build_app  # noqa: E402

from backoffice.app import create_app  # noqa: E402
from backoffice.config import Settings  # noqa: E402

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def fake() -> FakeGateway:
    state = FakeGateway(chain=None)  # amounts as plain numbers unless a test gives a chain
    state.add_user("ana@example.com", "Ana Manager", "manager", PASSWORD)
    state.add_user("cs@example.com", "Ion Service", "customer_service", PASSWORD)
    return state


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "app_env": "dev", "gateway_url": "http://gateway", "cookie_secure": False,
        "session_secret": "test-secret-" + "x" * 40, **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client(fake: FakeGateway) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(), transport=httpx.ASGITransport(app=build_app(fake)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://backoffice"
    ) as http:
        yield http
    await app.state.gateway.close()


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD
                  ) -> httpx.Response:
    form = await client.get("/login")
    return await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
    )


def user(fake: FakeGateway, role: str) -> FakeUser:
    return next(u for u in fake.users.values() if u.role == role)
