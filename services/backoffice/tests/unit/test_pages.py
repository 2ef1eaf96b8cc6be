"""Signing in and out, and the pages each role sees."""

from __future__ import annotations

import httpx
from backoffice_helpers import sign_in
from fakegateway import FakeGateway


async def test_a_visitor_who_is_not_signed_in_is_sent_to_the_sign_in_page(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/customers?q=ana")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fcustomers%3Fq%3Dana"


async def test_signing_in_goes_back_where_the_visitor_wanted_to_go(
    client: httpx.AsyncClient,
) -> None:
    form = await client.get("/login?next=/customers")
    from backoffice_helpers import csrf_of

    response = await client.post(
        "/login",
        data={
            "email": "cs@example.com",
            "password": "correct horse battery",
            "csrf_token": csrf_of(form.text),
            "next": "/customers",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/customers"


async def test_a_wrong_password_is_refused_with_a_message_and_no_session(
    client: httpx.AsyncClient,
) -> None:
    response = await sign_in(client, "cs@example.com", "not the password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert (await client.get("/tasks")).status_code == 303


async def test_repeated_failures_say_to_wait(client: httpx.AsyncClient, fake: FakeGateway) -> None:
    fake.failures["cs@example.com"] = 5
    response = await sign_in(client, "cs@example.com", "still wrong")
    assert response.status_code == 429
    assert "Too many failed attempts" in response.text
    assert response.headers["retry-after"] == "30"


async def test_customer_service_sees_no_settings_stores_or_users_in_the_navigation(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "cs@example.com")
    page = await client.get("/tasks")
    assert page.status_code == 200
    for hidden in ('href="/settings"', 'href="/stores"', 'href="/users"'):
        assert hidden not in page.text
    for shown in ('href="/tasks"', 'href="/customers"', 'href="/reports/aging"'):
        assert shown in page.text


async def test_a_manager_sees_settings_stores_and_users_in_the_navigation(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "ana@example.com")
    page = await client.get("/tasks")
    for shown in ('href="/settings"', 'href="/stores"', 'href="/users"'):
        assert shown in page.text


async def test_customer_service_is_refused_every_managers_page_without_asking_the_api(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "cs@example.com")
    before = len(fake.calls)
    for path in ("/settings", "/stores", "/users"):
        response = await client.get(path)
        assert response.status_code == 403, path
        assert "This page is for managers." in response.text
    assert len(fake.calls) == before


async def test_signing_out_ends_the_session_and_the_gateway_token(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "cs@example.com")
    assert len(fake.tokens) == 1
    page = await client.get("/tasks")
    from backoffice_helpers import csrf_of

    response = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    assert (await client.get("/tasks")).status_code == 303
    assert fake.tokens == {}, "DELETE /v1/sessions/current ended the token"


async def test_the_gateway_being_down_gives_a_friendly_503_page(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "cs@example.com")
    fake.down = True
    response = await client.get("/customers")
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.text
    assert "Traceback" not in response.text
    assert response.headers["retry-after"] == "30"
