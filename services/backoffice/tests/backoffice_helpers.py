"""Helpers of the back office's tests (a module of its own: `conftest` is a name every test
folder of the repository has, so it cannot be imported by name)."""

from __future__ import annotations

import re

import httpx
from fakegateway import FakeGateway, FakeUser

from backoffice.config import Settings

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "app_env": "dev",
        "gateway_url": "http://gateway",
        "cookie_secure": False,
        "session_secret": "test-secret-" + "x" * 40,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    form = await client.get("/login")
    return await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
    )


def user(fake: FakeGateway, role: str) -> FakeUser:
    return next(u for u in fake.users.values() if u.role == role)
