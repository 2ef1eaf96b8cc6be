"""What staff do on the pages, against the fake gateway: work a task, save settings, issue and
block cards, make a terminal key, manage users; the API's answers shown where they belong."""

from __future__ import annotations

import json
from typing import Any

import httpx
from backoffice_helpers import csrf_of, sign_in
from fakegateway import FakeGateway


async def _token(client: httpx.AsyncClient, path: str = "/tasks") -> str:
    return csrf_of((await client.get(path)).text)


def _sent(fake: FakeGateway, method: str, path: str) -> tuple[dict[str, str], object]:
    for m, p, headers, body in reversed(fake.calls):
        if m == method and p == path:
            return headers, json.loads(body) if body else None
    raise AssertionError(f"{method} {path} was not sent; sent: {[c[:2] for c in fake.calls]}")


async def _record_call(
    client: httpx.AsyncClient, task: dict[str, Any], form: dict[str, str], **request: Any
) -> httpx.Response:
    """`form` posted to the task's call form by customer service, with the page's CSRF token."""
    await sign_in(client, "cs@example.com")
    return await client.post(
        f"/tasks/{task['task_id']}/complete",
        data={**form, "csrf_token": await _token(client)},
        **request,
    )


async def test_an_open_task_shows_the_customer_phone_level_amount_days_and_sales(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer("Maria Ionescu", phone="+40 712 345 678")
    task = fake.add_task(customer, level=2, overdue_amount="120.50", days_overdue=9)
    await sign_in(client, "cs@example.com")
    html = (await client.get("/tasks")).text
    assert "Maria Ionescu" in html
    assert 'href="tel:+40712345678"' in html
    assert "Level 2" in html and "120.50" in html and ">9<" in html
    assert task["sales"][0]["sale_id"][:8] in html and "10 Jan 2026" in html


async def test_recording_a_call_with_htmx_swaps_in_the_done_task_with_who_did_it(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    task = fake.add_task(fake.add_customer("Maria"))
    response = await _record_call(
        client,
        task,
        {"outcome": "promised", "note": "pays Friday", "idem": "form-key-1"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith("<article")  # a fragment, not a page
    assert "Promised to pay" in response.text and "pays Friday" in response.text
    assert "Ion Service" in response.text  # completed by
    headers, body = _sent(fake, "POST", f"/v1/tasks/{task['task_id']}/complete")
    assert body == {"outcome": "promised", "note": "pays Friday"}
    assert headers["idempotency-key"] == "form-key-1"
    done = (await client.get("/tasks?status=done")).text
    assert "Maria" in done and "Ion Service" in done


async def test_recording_a_call_without_htmx_lands_on_the_task_with_a_notice(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    task = fake.add_task(fake.add_customer("Maria"))
    response = await _record_call(client, task, {"outcome": "no_answer"})
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    assert "The call was recorded." in page.text and "No answer" in page.text


async def test_a_refused_outcome_is_shown_next_to_its_field_keeping_the_note(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    task = fake.add_task(fake.add_customer("Maria"))
    response = await _record_call(client, task, {"outcome": "shouted", "note": "keep me"})
    assert response.status_code == 422
    assert '<span class="field-error" role="alert">unknown outcome</span>' in response.text
    assert "keep me" in response.text
    assert task["status"] == "open"


async def test_a_discount_can_be_revoked_from_the_task_where_offered(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    task = fake.add_task(fake.add_customer("Maria"))
    sale_id = task["sales"][0]["sale_id"]
    task["actions"] = [
        {
            "action": "revoke_discount",
            "sale_id": sale_id,
            "href": f"/v1/sales/{sale_id}/revoke-discount",
        }
    ]
    await sign_in(client, "cs@example.com")
    html = (await client.get("/tasks")).text
    assert "Revoke discount" in html
    await client.post(
        f"/tasks/{task['task_id']}/revoke-discount",
        data={"sale_id": sale_id, "csrf_token": csrf_of(html)},
    )
    assert _sent(fake, "POST", f"/v1/sales/{sale_id}/revoke-discount")


async def test_the_task_page_of_an_email_link_finds_the_task(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer("Maria")
    for _ in range(3):
        fake.add_task(customer)
    wanted = fake.add_task(customer, customer_name="Wanted Person")
    await sign_in(client, "cs@example.com")
    page = await client.get(f"/tasks/{wanted['task_id']}")
    assert page.status_code == 200 and "Wanted Person" in page.text
    missing = await client.get("/tasks/99999999-9999-4999-8999-999999999999")
    assert missing.status_code == 404
    # one read of that task, not a walk through the lists
    assert _sent(fake, "GET", f"/v1/tasks/{wanted['task_id']}")
    assert not [c for c in fake.calls if c[0] == "GET" and c[1] == "/v1/tasks"]


async def test_customers_are_searched_filtered_and_paged_with_the_apis_cursor(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    for i in range(60):
        fake.add_customer(f"Customer {i:02d}", vip=i % 2 == 0)
    await sign_in(client, "cs@example.com")
    first = await client.get("/customers")
    assert "Customer 00" in first.text and "Customer 49" in first.text
    assert "Customer 50" not in first.text
    assert 'href="/customers?cursor=50"' in first.text
    second = await client.get("/customers?cursor=50")
    assert "Customer 59" in second.text and "First page" in second.text
    found = await client.get("/customers", params={"q": "Customer 07"})
    assert "Customer 07" in found.text and "Customer 08" not in found.text
    vip = await client.get("/customers", params={"vip": "true"})
    assert "Customer 02" in vip.text and "Customer 03" not in vip.text
    fragment = await client.get(
        "/customers", params={"q": "07"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert fragment.text.lstrip().startswith('<section id="results">')


async def test_the_customer_page_shows_balances_open_sales_and_the_statement(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer(
        "Maria",
        debt="150.00",
        advance="0.00",
        bonus_balance="12.30",
        credit_limit="500.00",
        credit_available="350.00",
        overdue=True,
        open_sales=[
            {
                "sale_id": "s1",
                "sold_at": "2026-01-02T10:00:00+02:00",
                "due_date": "2026-01-16",
                "amount_owed": "150.00",
                "overdue": True,
                "lines": [],
            }
        ],
        entries=[
            {
                "at": "2026-01-02T10:00:00+02:00",
                "kind": "bonus_accrued",
                "sale_id": "s1",
                "payment_id": "66666666-6666-4666-8666-666666666666",
                "description": "Bonus accrued 1.00",
                "debt_change": "0.00",
                "advance_change": "0.00",
                "bonus_change": "1.00",
                "debt": "150.00",
                "advance": "0.00",
                "bonus_balance": "12.30",
            }
        ],
    )
    await sign_in(client, "cs@example.com")
    html = (await client.get(f"/customers/{customer['customer_id']}")).text
    for text in (
        "150.00",
        "12.30",
        "500.00",
        "350.00",
        "16 Jan 2026",
        "Bonus accrued 1.00",
        "Cancel accrual",
    ):
        assert text in html, text
    assert "Issue a new card" not in html, "customer service may not issue cards"
    response = await client.post(
        f"/customers/{customer['customer_id']}/no-bonus",
        data={"payment_id": "66666666-6666-4666-8666-666666666666", "csrf_token": csrf_of(html)},
    )
    assert response.status_code == 303
    _, body = _sent(fake, "POST", "/v1/payments/66666666-6666-4666-8666-666666666666/bonus-type")
    assert body == {"bonus_type": "none"}


async def test_a_statement_period_the_api_refuses_is_shown_next_to_the_date(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer("Maria")
    await sign_in(client, "cs@example.com")
    page = await client.get(
        f"/customers/{customer['customer_id']}", params={"from": "2026-02-01", "to": "2026-01-01"}
    )
    assert page.status_code == 200
    assert "must not be after to" in page.text


async def test_a_manager_issues_a_card_and_a_missing_number_is_shown_at_the_field(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer("Maria")
    await sign_in(client, "ana@example.com")
    path = f"/customers/{customer['customer_id']}"
    token = await _token(client, path)
    refused = await client.post(f"{path}/cards", data={"card_number": "", "csrf_token": token})
    assert refused.status_code == 422 and "required" in refused.text
    issued = await client.post(f"{path}/cards", data={"card_number": "NEW-1", "csrf_token": token})
    assert issued.headers["location"] == f"{path}?msg=card_issued"
    assert customer["card_number"] == "NEW-1"


async def test_customer_service_cannot_issue_a_card_even_by_posting_the_form(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    customer = fake.add_customer("Maria")
    await sign_in(client, "cs@example.com")
    path = f"/customers/{customer['customer_id']}"
    response = await client.post(
        f"{path}/cards", data={"card_number": "X", "csrf_token": await _token(client, path)}
    )
    assert response.status_code == 403


#: the settings form as a manager fills it in (every field the page shows)
SETTINGS_FORM = {
    "credit_mode": "per_sale",
    "max_payment_delay_days": "14",
    "overdue_discount": "offer",
    "block_credit_when_overdue": "true",
    "reminder_repeat_days": "3",
    "bonus_rate_percent": "5.00",
    "bonus_expiry_days": "",
}


async def _post_settings(client: httpx.AsyncClient, form: dict[str, str]) -> httpx.Response:
    """`form` posted to the settings page by a manager, with the page's CSRF token."""
    await sign_in(client, "ana@example.com")
    return await client.post(
        "/settings", data={**form, "csrf_token": await _token(client, "/settings")}
    )


async def test_a_manager_saves_the_settings_typed_as_the_api_wants(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    response = await _post_settings(client, SETTINGS_FORM)
    assert response.headers["location"] == "/settings?msg=saved"
    _, body = _sent(fake, "PUT", "/v1/settings")
    assert body == {
        "credit_mode": "per_sale",
        "max_payment_delay_days": 14,
        "overdue_discount": "offer",
        "block_credit_when_overdue": True,
        "reminder_repeat_days": 3,
        "bonus_rate_percent": "5.00",
        "bonus_expiry_days": None,
    }
    page = await client.get("/settings?msg=saved")
    assert "Saved." in page.text
    assert 'value="per_sale" checked' in page.text


async def test_a_setting_the_api_refuses_is_shown_next_to_its_field(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    response = await _post_settings(client, {**SETTINGS_FORM, "max_payment_delay_days": "soon"})
    assert response.status_code == 422
    assert 'aria-describedby="err-max_payment_delay_days"' in response.text
    assert "must be a number" in response.text
    assert 'value="soon"' in response.text


async def test_a_new_terminal_key_is_shown_once_and_never_cached(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    store_id = "33333333-3333-4333-8333-333333333333"
    fake.stores.append({"store_id": store_id, "code": "S1", "name": "One", "terminals": []})
    await sign_in(client, "ana@example.com")
    response = await client.post(
        f"/stores/{store_id}/terminals",
        data={"name": "Till 2", "csrf_token": await _token(client, "/stores")},
    )
    assert response.status_code == 200
    terminal_id = fake.stores[0]["terminals"][0]["terminal_id"]
    assert f"key-{terminal_id}" in response.text
    assert response.headers["cache-control"] == "no-store"
    listing = await client.get("/stores")
    assert "Till 2" in listing.text and f"key-{terminal_id}" not in listing.text


async def test_a_manager_creates_a_user_and_a_short_password_is_refused_at_its_field(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await sign_in(client, "ana@example.com")
    form = {
        "name": "New",
        "email": "new@example.com",
        "role": "customer_service",
        "csrf_token": await _token(client, "/users"),
    }
    refused = await client.post("/users", data={**form, "password": "short"})
    assert refused.status_code == 422
    assert "at least 12 characters" in refused.text and 'value="new@example.com"' in refused.text
    assert 'value="short"' not in refused.text
    created = await client.post("/users", data={**form, "password": "long enough password"})
    assert created.headers["location"] == "/users?msg=user_created"
    assert "new@example.com" in (await client.get("/users")).text


async def test_each_report_page_shows_its_filters_totals_chart_and_csv_link(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    fake.add_customer("Maria")
    await sign_in(client, "cs@example.com")
    pb = (await client.get("/reports/payment-balance?vip_only=true&sort=name")).text
    assert 'name="from"' in pb and 'name="sort"' in pb and "<svg" in pb
    assert "/reports/payment-balance.csv?" in pb and "vip_only=true" in pb
    _sent(fake, "GET", "/v1/reports/payment-balance")
    aging = (await client.get("/reports/aging")).text
    assert "<svg" in aging and "Over 90 days" in aging
    bonus = (await client.get("/reports/bonus-statistics")).text
    assert "Outstanding" in bonus and "<svg" in bonus
    # customer service sees who and where by name, as the API names them (escaped)
    assert "Mall &lt;Nord&gt;" in bonus and ">Maria</a>" in bonus
    assert not [c for c in fake.calls if c[1] == "/v1/stores"]
    csv = await client.get("/reports/payment-balance.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"].startswith('attachment; filename="payment-balance')
    assert "Maria" in csv.text
