"""CSRF on every form, the security headers, escaping of what the API stored, the session
cookie's properties, and no secret in a page or a URL."""

from __future__ import annotations

import re

import httpx
import pytest
from backoffice_helpers import PASSWORD, csrf_of, settings, sign_in
from fakegateway import FakeGateway
from starlette.routing import BaseRoute, Route

from backoffice.app import create_app
from backoffice.security import CONTENT_SECURITY_POLICY
from backoffice.web import safe_next, tel_href

SCRIPT_NAME = "<script>alert(1)</script>"
#: Arabic and Hebrew, with a right-to-left override character in the middle
RTL_NAME = "محمد \u202eכהן\u202c O'Brien & Co"  # noqa: RUF001 - Hebrew on purpose


def all_routes(routes: list[BaseRoute]) -> list[Route]:
    found: list[Route] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found += all_routes(list(inner.routes))
        elif isinstance(route, Route):
            found.append(route)
    return found


def post_paths() -> list[str]:
    app = create_app(settings())
    paths = []
    for route in all_routes(list(app.routes)):
        if "POST" in (route.methods or set()):
            paths.append(
                route.path.replace("{task_id}", "11111111-1111-4111-8111-111111111111")
                .replace("{customer_id}", "22222222-2222-4222-8222-222222222222")
                .replace("{store_id}", "33333333-3333-4333-8333-333333333333")
                .replace("{terminal_id}", "44444444-4444-4444-8444-444444444444")
                .replace("{user_id}", "55555555-5555-4555-8555-555555555555")
            )
    return paths


def test_the_app_has_forms_for_every_area() -> None:
    # the parametrised CSRF test below covers these (and any POST route added later)
    assert {"/login", "/logout", "/lang", "/settings", "/users", "/stores"} <= set(post_paths())
    assert len(post_paths()) >= 14


@pytest.mark.parametrize("path", post_paths())
async def test_every_post_is_refused_without_the_sessions_csrf_token(
    client: httpx.AsyncClient, fake: FakeGateway, path: str
) -> None:
    await sign_in(client, "ana@example.com")
    before = len(fake.calls)
    for data in ({}, {"csrf_token": "forged"}):
        response = await client.post(path, data={"name": "x", **data})
        assert response.status_code == 403, (path, data)
        assert "The form has expired" in response.text
    assert len(fake.calls) == before, "a refused form must not reach the gateway"


async def test_a_token_from_another_session_is_refused(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    other = await client.get("/login")
    stolen = csrf_of(other.text)
    client.cookies.clear()
    await sign_in(client, "ana@example.com")
    response = await client.post(
        "/settings", data={"csrf_token": stolen, "credit_mode": "per_sale"}
    )
    assert response.status_code == 403
    assert fake.settings["credit_mode"] == "balance"


async def test_signing_in_gives_a_new_csrf_token(client: httpx.AsyncClient) -> None:
    before = csrf_of((await client.get("/login")).text)
    await sign_in(client, "cs@example.com")
    after = csrf_of((await client.get("/tasks")).text)
    assert before != after


async def test_the_htmx_header_carries_the_token_too(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "cs@example.com")
    customer = fake.add_customer("Ana")
    task = fake.add_task(customer)
    token = csrf_of((await client.get("/tasks")).text)
    response = await client.post(
        f"/tasks/{task['task_id']}/complete",
        data={"outcome": "promised", "note": "ok"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 200
    assert task["status"] == "done"


async def test_every_page_has_the_security_headers_and_no_inline_script_or_style(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer("Ana")
    fake.add_task(customer)
    fake.stores.append(
        {
            "store_id": "33333333-3333-4333-8333-333333333333",
            "code": "S1",
            "name": "One",
            "terminals": [],
        }
    )
    responses = [await client.get("/login")]
    await sign_in(client, "ana@example.com")
    pages = [
        "/tasks",
        "/tasks?status=done",
        "/customers",
        f"/customers/{customer['customer_id']}",
        "/reports/payment-balance",
        "/reports/unpaid-goods",
        "/reports/aging",
        "/reports/bonus-statistics",
        "/settings",
        "/stores",
        "/users",
        "/no-such-page",
    ]
    responses += [await client.get(path) for path in pages]
    for response in responses:
        path = response.url.path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts and all('src="/static/' in s for s in scripts), (path, scripts)
        assert not re.search(r"<script[^>]*>[^<]", html), f"inline script on {path}"
        assert not re.search(r"\sstyle=", html), f"inline style on {path}"
        assert not re.search(r"\son[a-z]+=", html), f"inline event handler on {path}"
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def test_an_error_inside_a_page_is_a_page_with_the_headers_and_no_traceback(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "cs@example.com")
    fake.report_rows = [{"customer_id": "x", "name": "no closing balance"}]  # malformed
    response = await client.get("/reports/payment-balance")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "Traceback" not in response.text and "KeyError" not in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name", [SCRIPT_NAME, RTL_NAME])
async def test_names_from_the_api_are_escaped_on_every_page_that_shows_them(
    client: httpx.AsyncClient, fake: FakeGateway, name: str
) -> None:
    customer = fake.add_customer(name, phone='+40 7"><script>x</script>', open_sales=[])
    fake.add_task(customer, note=name)
    await sign_in(client, "cs@example.com")
    for path in (
        "/tasks",
        "/customers",
        f"/customers/{customer['customer_id']}",
        "/reports/payment-balance",
    ):
        html = (await client.get(path)).text
        assert "<script>alert(1)</script>" not in html, path
        assert "<script>x</script>" not in html, path
        if name == SCRIPT_NAME:
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        else:
            assert "محمد \u202eכהן\u202c O&#39;Brien &amp; Co" in html, path  # noqa: RUF001


async def test_the_chart_escapes_customer_names(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    fake.add_customer(SCRIPT_NAME)
    await sign_in(client, "cs@example.com")
    html = (await client.get("/reports/payment-balance")).text
    chart = html[html.index("<svg") : html.index("</svg>")]
    assert "&lt;script&gt;" in chart and "<script>" not in chart


def test_phone_links_carry_only_a_plus_and_digits() -> None:
    assert tel_href("+40 (712) 345-678") == "tel:+40712345678"
    assert tel_href("javascript:alert(1)") == "tel:1"
    assert tel_href("٠١٢") == "tel:"  # other scripts' digits are not dialled


def test_going_back_after_sign_in_never_leaves_the_site() -> None:
    assert safe_next("/customers?q=a") == "/customers?q=a"
    for hostile in ("https://evil.example", "//evil.example", "/\\evil.example", "", "tasks"):
        assert safe_next(hostile) == "/tasks"


async def test_the_session_cookie_is_http_only_same_site_and_hides_the_token(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    response = await sign_in(client, "cs@example.com")
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    token = next(iter(fake.tokens))
    assert token not in cookie, "the gateway token is encrypted in the cookie"
    page = await client.get("/tasks")
    assert token not in page.text
    assert all(token not in str(call[1]) for call in fake.calls), "never in a URL"


async def test_with_secure_cookies_the_session_cookie_is_secure_and_host_only(
    fake: FakeGateway,
) -> None:
    from fakegateway import build_app

    app = create_app(
        settings(cookie_secure=True), transport=httpx.ASGITransport(app=build_app(fake))
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://backoffice"
    ) as secure_client:
        response = await secure_client.get("/login")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-bo_session=")
        assert "; Secure" in cookie


async def test_a_tampered_session_cookie_counts_as_no_session(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "cs@example.com")
    value = client.cookies["bo_session"]
    client.cookies.set(
        "bo_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    )
    response = await client.get("/tasks")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_a_session_the_gateway_no_longer_knows_signs_the_user_out(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "cs@example.com")
    fake.tokens.clear()  # e.g. the user was deleted
    response = await client.get("/customers")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert (await client.get("/tasks")).status_code == 303


async def test_the_password_is_never_echoed_into_a_page(
    client: httpx.AsyncClient,
) -> None:
    response = await sign_in(client, "cs@example.com", "wrong-but-secret-123")
    assert "wrong-but-secret-123" not in response.text
    assert PASSWORD not in response.text


_FORM = {
    "name": "Store 9",
    "code": "S9",
    "email": "new@example.com",
    "display_name": "New",
    "password": PASSWORD,
    "role": "customer_service",
    "outcome": "promised",
    "note": "n",
    "card_number": "CARD-9",
    "sale_id": "66666666-6666-4666-8666-666666666666",
    "payment_id": "77777777-7777-4777-8777-777777777777",
}


@pytest.mark.parametrize("idem", ["é", "x" * 201, "a b", "\x7f"])
@pytest.mark.parametrize(
    "path",
    [
        p
        for p in post_paths()
        # these forms carry no key: their calls (PUT, DELETE) are the same when repeated
        if p not in ("/login", "/logout", "/lang", "/settings")
        and not p.endswith(("/revoke", "/delete"))
    ],
)
async def test_a_tampered_idempotency_key_is_an_expired_form_and_reaches_no_one(
    client: httpx.AsyncClient, fake: FakeGateway, path: str, idem: str
) -> None:
    """A form's `idem` goes to the gateway as the `Idempotency-Key` header: what no page of
    ours puts there (not visible ASCII, over 200 characters) is refused before any call (it
    was a 500: a header cannot carry "é")."""
    await sign_in(client, "ana@example.com")
    token = csrf_of((await client.get("/tasks")).text)
    before = len(fake.calls)
    response = await client.post(path, data={**_FORM, "idem": idem, "csrf_token": token})
    assert response.status_code == 400, response.text[:300]
    assert "The form has expired" in response.text
    assert len(fake.calls) == before


_HOSTILE = [
    "",
    "\x00",
    "-1",
    "1e400",
    "NaN",
    "99999999999999999999999",
    "<script>",
    "x" * 5000,
    "é",
]


@pytest.mark.parametrize("path", [p for p in post_paths() if p != "/logout"])
async def test_no_form_answers_5xx_whatever_its_fields_hold(
    client: httpx.AsyncClient, fake: FakeGateway, path: str
) -> None:
    """Each form, signed in as a manager with a valid CSRF token, every field of every form
    given each hostile value in turn: a page or a redirect, never a 5xx."""
    await sign_in(client, "ana@example.com")
    token = csrf_of((await client.get("/tasks")).text)
    fields = sorted({*_FORM, "idem", "credit_mode", "bonus_rate_percent", "reminder_email"})
    for name in fields:
        for value in _HOSTILE:
            data = {**_FORM, name: value, "csrf_token": token}
            response = await client.post(path, data=data)
            assert response.status_code < 500, (path, name, value[:20], response.text[:300])
