"""Reminder tasks for customer service, through the gateway (domain.md, "Reminders").

Sales are back-dated past their due date, so the overdue scan (every second in the e2e stack)
finds them at once. One open task per customer lists every overdue sale; it closes itself when
the overdue debt is paid (also while newer debt, not yet due, stays open); staff close it with
an outcome, after which a sale newly found overdue opens a task at the next level. Re-raising
after `reminder_repeat_days` needs days to pass and is proven in the notifier's own tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

CHAIN_ZONE = ZoneInfo("Europe/Bucharest")  # the time zone new_chain() gives every chain
DELAY_DAYS = 30


def days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def due(sold_at: datetime) -> date:
    return sold_at.astimezone(CHAIN_ZONE).date() + timedelta(days=DELAY_DAYS)


def today() -> date:
    return datetime.now(CHAIN_ZONE).date()


def on_account(chain: Any, idem: Any, card: str, amount: str, at: datetime | None) -> str:
    body: dict[str, Any] = {
        "card_number": card,
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
    }
    if at is not None:
        body["occurred_at"] = at.isoformat()
    sold = chain.terminal.post("/v1/sales", headers=idem(), json=body)
    assert sold.status_code == 201, sold.text
    return str(sold.json()["sale_id"])


def take_money(chain: Any, idem: Any, customer: dict[str, Any], amount: str) -> None:
    paid = chain.terminal.post(
        f"/v1/customers/{customer['customer_id']}/payments",
        headers=idem(),
        json={
            "kind": "take_money",
            "amount": amount,
            "method": "cash",
            "card_number": customer["card_number"],
        },
    )
    assert paid.status_code == 201, paid.text


def tasks(chain: Any, status: str, customer_id: str | None = None) -> list[dict[str, Any]]:
    response = chain.admin.get("/v1/tasks", params={"status": status})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    return [t for t in items if customer_id is None or t["customer_id"] == customer_id]


def test_one_task_lists_every_overdue_sale_and_closes_itself_when_they_are_paid(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(credit_mode="per_sale", max_payment_delay_days=DELAY_DAYS)
    customer = chain.customer(name="Ioana Marin", phone="+40722000333")
    cid, card = customer["customer_id"], customer["card_number"]
    a_at, c_at = days_ago(34), days_ago(32)
    a = on_account(chain, idem, card, "40.00", a_at)
    c = on_account(chain, idem, card, "20.00", c_at)
    b = on_account(chain, idem, card, "50.00", None)  # not due for 30 days

    def listed_both() -> Any:
        found = tasks(chain, "open", cid)
        return found if found and len(found[0]["sales"]) == 2 else None

    [task] = eventually(listed_both, timeout=5.0)
    assert (task["customer_name"], task["phone"], task["level"]) == (
        "Ioana Marin",
        "+40722000333",
        1,
    )
    assert sorted((s["sale_id"], s["due_date"], s["amount_owed"]) for s in task["sales"]) == sorted(
        [(a, due(a_at).isoformat(), "40.00"), (c, due(c_at).isoformat(), "20.00")]
    )
    assert task["overdue_amount"] == "60.00"
    assert task["days_overdue"] == (today() - due(a_at)).days  # the oldest overdue sale's
    assert task["closed_reason"] is None
    assert datetime.fromisoformat(task["created_at"]) <= datetime.fromisoformat(task["raised_at"])
    assert b not in {s["sale_id"] for s in task["sales"]}

    # Part of the overdue debt paid (oldest first: A owes 10.00): the same task stays open.
    take_money(chain, idem, customer, "30.00")
    [task] = eventually(
        lambda: [t for t in tasks(chain, "open", cid) if t["overdue_amount"] == "30.00"],
        timeout=5.0,
    )
    assert sorted((s["sale_id"], s["amount_owed"]) for s in task["sales"]) == sorted(
        [(a, "10.00"), (c, "20.00")]
    )
    # The rest of the overdue debt paid: the task closes itself though B's 50.00 is still owed.
    take_money(chain, idem, customer, "30.00")
    [done] = eventually(lambda: tasks(chain, "done", cid), timeout=5.0)
    assert (done["task_id"], done["closed_reason"]) == (task["task_id"], "paid")
    assert tasks(chain, "open", cid) == []
    # the customer view is reporting's, which applies the payment on its own time

    def debt_and_overdue() -> tuple[str, bool]:
        seen = chain.admin.get(f"/v1/customers/{cid}").json()
        return seen["debt"], seen["overdue"]

    eventually(lambda: debt_and_overdue() == ("50.00", False), timeout=5.0)


def test_staff_complete_a_task_and_a_sale_newly_overdue_opens_the_next_level(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(credit_mode="per_item", max_payment_delay_days=DELAY_DAYS)
    other = new_chain()
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    on_account(chain, idem, card, "40.00", days_ago(34))
    [task] = eventually(lambda: tasks(chain, "open", cid), timeout=5.0)
    assert task["level"] == 1

    bad = chain.admin.post(
        f"/v1/tasks/{task['task_id']}/complete", json={"outcome": "maybe", "note": "?"}
    )
    foreign = other.admin.post(
        f"/v1/tasks/{task['task_id']}/complete", json={"outcome": "promised", "note": "x"}
    )
    by_terminal = chain.terminal.post(
        f"/v1/tasks/{task['task_id']}/complete", json={"outcome": "promised", "note": "x"}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    assert (foreign.status_code, foreign.json()["code"]) == (404, "not_found")
    assert by_terminal.status_code == 403
    assert tasks(other, "open") == [] and tasks(other, "done") == []

    completed = chain.admin.post(
        f"/v1/tasks/{task['task_id']}/complete",
        json={"outcome": "promised", "note": "pays on Friday"},
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["task_id"] == task["task_id"]
    assert completed.json()["closed_reason"] == "completed"
    assert [t["task_id"] for t in tasks(chain, "done", cid)] == [task["task_id"]]
    # Still overdue, but completed: nothing reopens before reminder_repeat_days (a few scans).
    time.sleep(2.5)
    assert tasks(chain, "open", cid) == []

    # Another sale found overdue is news for customer service: a task at level 2 at once.
    newly = on_account(chain, idem, card, "15.00", days_ago(33))
    [again] = eventually(lambda: tasks(chain, "open", cid), timeout=5.0)
    assert again["task_id"] != task["task_id"]
    assert again["level"] == 2
    assert newly in {s["sale_id"] for s in again["sales"]}
    time.sleep(1.5)
    assert len(tasks(chain, "open", cid)) == 1  # never two open tasks


def test_tasks_page_with_a_cursor(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(max_payment_delay_days=DELAY_DAYS)
    customers = [chain.customer(name=f"Customer {i}") for i in range(3)]
    for customer in customers:
        on_account(chain, idem, customer["card_number"], "10.00", days_ago(34))
    eventually(lambda: len(tasks(chain, "open")) == 3, timeout=5.0)

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"status": "open", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = chain.admin.get("/v1/tasks", params=params).json()
        assert len(page["items"]) <= 2
        seen += [t["customer_id"] for t in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(c["customer_id"] for c in customers)


def test_one_task_is_read_by_its_id_open_then_done_and_never_by_another_chain(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    """`GET /v1/tasks/{task_id}`: what the back office's page behind an email link reads."""
    chain = new_chain(max_payment_delay_days=DELAY_DAYS)
    other = new_chain()
    customer = chain.customer(name="Ana Popescu")
    on_account(chain, idem, customer["card_number"], "25.00", days_ago(34))
    [listed] = eventually(lambda: tasks(chain, "open", customer["customer_id"]), timeout=5.0)

    one = chain.admin.get(f"/v1/tasks/{listed['task_id']}")
    assert one.status_code == 200, one.text
    assert one.json() == listed
    assert one.json()["status"] == "open"
    foreign = other.admin.get(f"/v1/tasks/{listed['task_id']}")
    missing = chain.admin.get(f"/v1/tasks/{uuid.uuid4()}")
    by_terminal = chain.terminal.get(f"/v1/tasks/{listed['task_id']}")
    assert (foreign.status_code, foreign.json()["code"]) == (404, "not_found")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert (by_terminal.status_code, by_terminal.json()["code"]) == (403, "forbidden")

    completed = chain.admin.post(
        f"/v1/tasks/{listed['task_id']}/complete", json={"outcome": "no_answer", "note": "later"}
    )
    assert completed.status_code == 200, completed.text
    done = chain.admin.get(f"/v1/tasks/{listed['task_id']}").json()
    assert (done["status"], done["closed_reason"], done["outcome"], done["note"]) == (
        "done",
        "completed",
        "no_answer",
        "later",
    )
