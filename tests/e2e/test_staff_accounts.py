"""Staff accounts and reminders that reach people, through the whole running system.

A manager signs in and creates a customer-service user; customer service signs in, finds the
overdue task of a back-dated sale, completes it, and the done task names who did; customer
service is refused the settings. The chain's reminder email receives the digest on a real SMTP
server (the session's aiosmtpd); its link, followed with a customer-service user signed in to
the stack's back office, opens that task's page.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def sign_in(gateway: str, email: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        f"{gateway}/v1/sessions", json={"email": email, "password": password}, timeout=30
    )


def staff_client(
    gateway: str, admin: httpx.Client, role: str, name: str
) -> tuple[httpx.Client, dict[str, Any]]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@kids.example.ro"
    made = admin.post(
        "/v1/users", json={"email": email, "name": name, "role": role, "password": PASSWORD}
    )
    assert made.status_code == 201, made.text
    signed = sign_in(gateway, email)
    assert signed.status_code == 201, signed.text
    token = signed.json()["access_token"]
    return (
        httpx.Client(base_url=gateway, timeout=15, headers={"Authorization": f"Bearer {token}"}),
        signed.json(),
    )


def back_dated_sale(chain: Any, card: str, amount: str, days_back: int) -> str:
    sold = chain.terminal.post(
        "/v1/sales",
        headers={"Idempotency-Key": str(uuid.uuid4())},
        json={
            "card_number": card,
            "occurred_at": (datetime.now(UTC) - timedelta(days=days_back)).isoformat(),
            "lines": [
                {
                    "sku": "COAT",
                    "barcode": "4820000000031",
                    "name": "Coat",
                    "quantity": "1",
                    "unit_price": amount,
                    "discount": "0.00",
                }
            ],
            "payments": [{"method": "on_account", "amount": amount}],
        },
    )
    assert sold.status_code == 201, sold.text
    return str(sold.json()["sale_id"])


def test_customer_service_completes_an_overdue_task_under_its_own_name(
    new_chain: Callable[..., Any], gateway: str, eventually: Any
) -> None:
    chain = new_chain(credit_mode="per_sale", max_payment_delay_days=30)
    manager, _ = staff_client(gateway, chain.admin, "manager", "Maria Manager")
    with manager:
        # a manager may do what the admin key may: create the customer-service user
        service, session = staff_client(gateway, manager, "customer_service", "Ioana Rusu")
    with service:
        assert session["user"]["role"] == "customer_service"
        assert session["chain"]["chain_id"] == chain.chain_id
        customer = chain.customer(name="Ana Popescu")
        other = chain.customer(name="Dan Pavel")
        back_dated_sale(chain, customer["card_number"], "40.00", 35)
        back_dated_sale(chain, other["card_number"], "25.00", 35)

        def open_task_of(customer_id: str) -> Any:
            items = service.get("/v1/tasks", params={"status": "open"}).json()["items"]
            return next((t for t in items if t["customer_id"] == customer_id), None)

        task = eventually(lambda: open_task_of(customer["customer_id"]), timeout=20.0)
        admins = eventually(lambda: open_task_of(other["customer_id"]), timeout=20.0)
        assert task["completed_by"] is None
        done = service.post(
            f"/v1/tasks/{task['task_id']}/complete",
            json={"outcome": "promised", "note": "pays on Friday"},
        )
        assert done.status_code == 200, done.text
        assert done.json()["completed_by"] == {
            "user_id": session["user"]["user_id"],
            "name": "Ioana Rusu",
        }
        by_admin = chain.admin.post(
            f"/v1/tasks/{admins['task_id']}/complete", json={"outcome": "no_answer", "note": None}
        )
        assert by_admin.json()["completed_by"] is None
        listed = {
            t["task_id"]: t
            for t in service.get("/v1/tasks", params={"status": "done"}).json()["items"]
        }
        assert listed[task["task_id"]]["completed_by"]["name"] == "Ioana Rusu"
        assert listed[task["task_id"]]["closed_reason"] == "completed"
        # customer service reads what it works with, and nothing it must not change
        assert service.get(f"/v1/customers/{customer['customer_id']}").status_code == 200
        assert service.get("/v1/reports/aging").status_code == 200
        for method, path in (
            ("GET", "/v1/settings"),
            ("PUT", "/v1/settings"),
            ("GET", "/v1/users"),
            ("POST", "/v1/stores"),
        ):
            refused = service.request(method, path, json={} if method != "GET" else None)
            assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), path
    wrong = sign_in(gateway, session["user"]["email"], "not the password")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")


def test_deleting_a_user_ends_its_token_within_a_second(
    new_chain: Callable[..., Any], gateway: str
) -> None:
    chain = new_chain()
    service, session = staff_client(gateway, chain.admin, "customer_service", "Temp")
    with service:
        assert service.get("/v1/tasks").status_code == 200
        deleted = chain.admin.delete(f"/v1/users/{session['user']['user_id']}")
        assert deleted.status_code == 200, deleted.text
        gone = service.get("/v1/tasks")
        assert (gone.status_code, gone.json()["code"]) == (401, "unauthorized")


def test_the_reminder_digest_reaches_the_chains_address_and_its_link_opens_the_task(
    new_chain: Callable[..., Any], gateway: str, smtp_inbox: Any, eventually: Any, stack: Any
) -> None:
    address = f"service-{uuid.uuid4().hex[:8]}@kids.example.ro"
    chain = new_chain(max_payment_delay_days=30, reminder_email=address)
    assert chain.admin.get("/v1/settings").json()["reminder_email"] == address
    customer = chain.customer(name="Elena <Ionescu>")
    back_dated_sale(chain, customer["card_number"], "30.00", 35)
    [message] = eventually(lambda: smtp_inbox.to(address), timeout=20.0)
    assert message["From"] == "reminders@vip-credit.test"
    text = message.get_body(preferencelist=("plain",)).get_content()
    markup = message.get_body(preferencelist=("html",)).get_content()
    assert "Elena <Ionescu>" in text and "&lt;Ionescu&gt;" in markup
    [link] = re.findall(r"https?://\S+", text)
    # the link is the back office's task page; following it, that page shows this task
    match = re.fullmatch(r"/tasks/([0-9a-f-]{36})", urlsplit(link).path)
    assert match, link
    tasks = chain.admin.get("/v1/tasks", params={"status": "open"}).json()["items"]
    [task] = [t for t in tasks if t["task_id"] == match.group(1)]
    assert task["customer_id"] == customer["customer_id"]
    assert f'href="{link}"' in markup

    # following the link: it leads to this stack's back office, which asks a customer-service
    # user to sign in and then shows that task, with the form to record the call
    assert link.startswith(stack.backoffice_url + "/"), (link, stack.backoffice_url)
    email = f"cs-{uuid.uuid4().hex[:8]}@kids.example.ro"
    made = chain.admin.post(
        "/v1/users",
        json={
            "email": email,
            "name": "Ioana Rusu",
            "role": "customer_service",
            "password": PASSWORD,
        },
    )
    assert made.status_code == 201, made.text
    with httpx.Client(timeout=30) as browser:
        first = browser.get(link)
        assert first.status_code == 303 and "/login?next=" in first.headers["location"]
        form = browser.get(urljoin(link, first.headers["location"]))
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        # the sign-in form carries the task's page on (the language switch has a `next` too)
        back_to = urlsplit(link).path
        assert csrf and f'name="next" value="{back_to}"' in form.text, form.text[:2000]
        signed = browser.post(
            urljoin(link, "/login"),
            data={
                "email": email,
                "password": PASSWORD,
                "csrf_token": csrf.group(1),
                "next": back_to,
            },
        )
        assert signed.status_code == 303, signed.text[:2000]
        assert urljoin(link, signed.headers["location"]) == link
        page = browser.get(link)
    assert page.status_code == 200, page.text[:2000]
    assert "Elena &lt;Ionescu&gt;" in page.text and "<Ionescu>" not in page.text
    assert f'action="/tasks/{task["task_id"]}/complete"' in page.text
    assert 'href="tel:' in page.text
