"""The credit worked examples of domain.md, told through the public gateway API.

The story of domain.md runs over 32 days. It is replayed with back-dated `occurred_at` so that
"day 32" is now: sale A 34 days ago, sale B 29 days ago (so that B is surely not overdue yet,
whatever daylight-saving shift lies between), the 70.00 taken 24 days ago, the debt paid now.
A back-dated sale that is already past due is found overdue by the next overdue scan (every
second in the e2e stack), so the chain starts with `overdue_discount=keep`; it is switched to
`revoke` once the partial payment is checked, which also proves that sales already
overdue when the setting changes are revoked then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

CHAIN_ZONE = ZoneInfo("Europe/Bucharest")  # the time zone new_chain() gives every chain
DELAY_DAYS = 30


def days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def local_date(moment: datetime) -> date:
    return moment.astimezone(CHAIN_ZONE).date()


def due_date(sold_at: datetime) -> date:
    return local_date(sold_at) + timedelta(days=DELAY_DAYS)


def line(name: str, barcode: str, price: str, discount: str = "0.00") -> dict[str, str]:
    return {
        "sku": name.upper()[:8],
        "barcode": barcode,
        "name": name,
        "quantity": "1",
        "unit_price": price,
        "discount": discount,
    }


def sell_on_account(
    chain: Any, idem: Any, card: str, lines: list[dict[str, str]], total: str, at: datetime
) -> dict[str, Any]:
    response = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "occurred_at": at.isoformat(),
            "lines": lines,
            "payments": [{"method": "on_account", "amount": total}],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def balances(chain: Any, customer_id: str) -> tuple[str, str, str]:
    seen = chain.admin.get(f"/v1/customers/{customer_id}").json()
    return seen["debt"], seen["advance"], seen["bonus_balance"]


def open_sales(chain: Any, card: str) -> dict[str, dict[str, Any]]:
    response = chain.terminal.get(f"/v1/cards/{card}")
    assert response.status_code == 200, response.text
    return {sale["sale_id"]: sale for sale in response.json()["open_sales"]}


def shown_overdue(chain: Any, card: str, sale_id: str) -> bool:
    """The card lookup shows the sale overdue (False while the read model has not even got
    the sale yet: the sale's 201 can come before reporting applied it)."""
    return bool(open_sales(chain, card).get(sale_id, {}).get("overdue"))


def tasks(chain: Any, status: str, customer_id: str) -> list[dict[str, Any]]:
    response = chain.admin.get("/v1/tasks", params={"status": status})
    assert response.status_code == 200, response.text
    return [t for t in response.json()["items"] if t["customer_id"] == customer_id]


def test_the_per_sale_example_ends_with_the_discount_revoked_the_debt_paid_and_the_task_closed(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(
        credit_mode="per_sale", max_payment_delay_days=DELAY_DAYS, overdue_discount="keep"
    )
    customer = chain.customer(phone="+40711000111")
    cid, card = customer["customer_id"], customer["card_number"]
    day0, day5, day10 = days_ago(34), days_ago(29), days_ago(24)

    # Day 0: sale A, 100.00 after a 10.00 discount, all on account.
    a = sell_on_account(
        chain, idem, card, [line("Coat", "4820000000031", "110.00", "10.00")], "100.00", day0
    )
    assert (a["total"], a["on_account"], a["paid"]) == ("100.00", "100.00", "0.00")
    assert a["due_date"] == due_date(day0).isoformat()
    assert a["customer"]["debt"] == "100.00"
    # Day 5: sale B, 50.00 on account.
    b = sell_on_account(chain, idem, card, [line("Scarf", "4820000000048", "50.00")], "50.00", day5)
    assert b["customer"]["debt"] == "150.00"
    # the card lookup reads the read model: B is there once reporting has applied it
    sales = eventually(
        lambda: found if len(found := open_sales(chain, card)) == 2 else None, timeout=2.0
    )
    assert {k: v["amount_owed"] for k, v in sales.items()} == {
        a["sale_id"]: "100.00",
        b["sale_id"]: "50.00",
    }
    assert sales[a["sale_id"]]["due_date"] == due_date(day0).isoformat()
    assert sales[b["sale_id"]]["due_date"] == due_date(day5).isoformat()
    assert all(s["lines"] == [] for s in sales.values())  # lines are per_item only

    # Day 10: take money 70.00 cash -> allocated to the oldest sale, A.
    taken = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={
            "kind": "take_money",
            "amount": "70.00",
            "method": "cash",
            "card_number": card,
            "occurred_at": day10.isoformat(),
        },
    )
    assert taken.status_code == 201, taken.text
    assert [(x["sale_id"], x["amount"]) for x in taken.json()["allocated"]] == [
        (a["sale_id"], "70.00")
    ]
    assert taken.json()["bonus_accrued"] == "7.00"
    assert taken.json()["advance_added"] == "0.00"
    assert taken.json()["customer"] == {"debt": "80.00", "advance": "0.00", "bonus_balance": "7.00"}
    eventually(lambda: balances(chain, cid) == ("80.00", "0.00", "7.00"), timeout=2.0)
    sales = open_sales(chain, card)
    assert sales[a["sale_id"]]["amount_owed"] == "30.00"
    assert sales[b["sale_id"]]["amount_owed"] == "50.00"

    # Day 31: A is overdue (B is not yet): the reminder task is raised at level 1. An open task
    # shows the notifier's live view, which may not have applied the payment yet: wait for it.
    task = eventually(
        lambda: next(
            (t for t in tasks(chain, "open", cid) if t["overdue_amount"] in ("30.00", "40.00")),
            None,
        ),
        timeout=5.0,
    )
    assert task["customer_name"] == customer["name"]
    assert task["phone"] == "+40711000111"
    assert task["level"] == 1
    assert task["closed_reason"] is None
    assert [(s["sale_id"], s["due_date"]) for s in task["sales"]] == [
        (a["sale_id"], due_date(day0).isoformat())
    ]
    assert task["days_overdue"] == (local_date(datetime.now(UTC)) - due_date(day0)).days
    assert task["actions"] == []  # no one-click action unless overdue_discount=offer
    sales = open_sales(chain, card)
    assert sales[a["sale_id"]]["overdue"] is True
    assert sales[b["sale_id"]]["overdue"] is False
    assert chain.admin.get(f"/v1/customers/{cid}").json()["overdue"] is True

    # overdue_discount=revoke: A, already overdue, gets its 10.00 discount added, once.
    switched = chain.admin.put("/v1/settings", json={"overdue_discount": "revoke"})
    assert switched.status_code == 200, switched.text
    eventually(lambda: balances(chain, cid) == ("90.00", "0.00", "7.00"), timeout=5.0)
    sales = open_sales(chain, card)
    assert sales[a["sale_id"]]["amount_owed"] == "40.00"
    assert sales[b["sale_id"]]["amount_owed"] == "50.00"
    task = eventually(
        lambda: [t for t in tasks(chain, "open", cid) if t["overdue_amount"] == "40.00"],
        timeout=5.0,
    )[0]
    assert task["sales"][0]["amount_owed"] == "40.00"

    # Day 32 (now): pay debt in cash -> 90.00 paid, debt 0.00, bonus +9.00.
    paid = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={"kind": "pay_debt", "method": "cash", "card_number": card},
    )
    assert paid.status_code == 201, paid.text
    assert paid.json()["amount"] == "90.00"
    assert sorted((x["sale_id"], x["amount"]) for x in paid.json()["allocated"]) == sorted(
        [(a["sale_id"], "40.00"), (b["sale_id"], "50.00")]
    )
    assert paid.json()["bonus_accrued"] == "9.00"
    assert paid.json()["customer"] == {"debt": "0.00", "advance": "0.00", "bonus_balance": "16.00"}
    eventually(lambda: balances(chain, cid) == ("0.00", "0.00", "16.00"), timeout=2.0)
    assert open_sales(chain, card) == {}

    # The task closes itself.
    done = eventually(lambda: tasks(chain, "done", cid), timeout=5.0)
    assert [(t["task_id"], t["closed_reason"]) for t in done] == [(task["task_id"], "paid")]
    assert tasks(chain, "open", cid) == []
    seen = chain.admin.get(f"/v1/customers/{cid}").json()
    assert seen["overdue"] is False


def test_the_per_item_example_pays_the_dress_and_part_of_the_shoes_and_reports_the_shoes(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(
        credit_mode="per_item", max_payment_delay_days=DELAY_DAYS, overdue_discount="keep"
    )
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    day0, day5, day10 = days_ago(34), days_ago(29), days_ago(24)
    dress = line("Dress", "4820000000017", "60.00")
    shoes = line("Shoes", "4820000000024", "50.00", "10.00")

    a = sell_on_account(chain, idem, card, [dress, shoes], "100.00", day0)
    b = sell_on_account(chain, idem, card, [line("Scarf", "4820000000048", "50.00")], "50.00", day5)
    assert b["customer"]["debt"] == "150.00"
    taken = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={
            "kind": "take_money",
            "amount": "70.00",
            "method": "cash",
            "card_number": card,
            "occurred_at": day10.isoformat(),
        },
    )
    assert taken.status_code == 201, taken.text
    # Oldest sale first, receipt order within it: the dress in full, 10.00 of the shoes.
    assert [(x["sale_id"], x["line_no"], x["amount"]) for x in taken.json()["allocated"]] == [
        (a["sale_id"], 1, "60.00"),
        (a["sale_id"], 2, "10.00"),
    ]
    assert taken.json()["bonus_accrued"] == "7.00"
    assert taken.json()["customer"]["debt"] == "80.00"

    def shoes_owed() -> Any:
        # after the payment: the dress paid off, the shoes still owed (the rows from before
        # the payment show both, so "the shoes are there" alone raced the read model)
        rows = chain.admin.get("/v1/reports/unpaid-goods").json()["rows"]
        mine = [r for r in rows if r["customer_id"] == cid]
        items = {r["item"] for r in mine}
        paid = "Dress [4820000000017]" not in items
        return mine if paid and "Shoes [4820000000024]" in items else None

    rows = eventually(shoes_owed, timeout=2.0)
    by_item = {r["item"]: r for r in rows}
    assert set(by_item) == {"Shoes [4820000000024]", "Scarf [4820000000048]"}
    assert by_item["Shoes [4820000000024]"]["amount_owed"] == "30.00"
    assert by_item["Shoes [4820000000024]"]["barcode"] == "4820000000024"
    assert by_item["Shoes [4820000000024]"]["quantity"] == "1"
    assert by_item["Shoes [4820000000024]"]["sale_id"] == a["sale_id"]
    assert by_item["Shoes [4820000000024]"]["due_date"] == due_date(day0).isoformat()
    assert by_item["Scarf [4820000000048]"]["amount_owed"] == "50.00"
    assert by_item["Scarf [4820000000048]"]["days_overdue"] == 0

    # The till's "Calculate" shows the open sales with their lines.
    sales = open_sales(chain, card)
    assert sales[a["sale_id"]]["amount_owed"] == "30.00"
    assert [
        (x["line_no"], x["name"], x["barcode"], x["amount_owed"])
        for x in sales[a["sale_id"]]["lines"]
    ] == [(2, "Shoes", "4820000000024", "30.00")]
    assert [(x["line_no"], x["amount_owed"]) for x in sales[b["sale_id"]]["lines"]] == [
        (1, "50.00")
    ]

    # Overdue: the shoes' row counts its days; the task is raised.
    eventually(lambda: shown_overdue(chain, card, a["sale_id"]), timeout=5.0)
    shoes_row = next(r for r in shoes_owed() if r["item"].startswith("Shoes"))
    assert shoes_row["days_overdue"] == (local_date(datetime.now(UTC)) - due_date(day0)).days
    task = eventually(lambda: tasks(chain, "open", cid), timeout=5.0)[0]
    assert [(s["sale_id"], s["amount_owed"]) for s in task["sales"]] == [(a["sale_id"], "30.00")]

    # With revoke, the shoes' discount is added to the shoes' line; pay debt settles all.
    assert chain.admin.put("/v1/settings", json={"overdue_discount": "revoke"}).status_code == 200
    eventually(lambda: balances(chain, cid) == ("90.00", "0.00", "7.00"), timeout=5.0)
    lines_a = open_sales(chain, card)[a["sale_id"]]["lines"]
    assert [(x["line_no"], x["amount_owed"]) for x in lines_a] == [(2, "40.00")]
    paid = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={"kind": "pay_debt", "method": "cash", "card_number": card},
    )
    assert paid.status_code == 201, paid.text
    assert paid.json()["amount"] == "90.00"
    assert paid.json()["bonus_accrued"] == "9.00"
    assert paid.json()["customer"] == {"debt": "0.00", "advance": "0.00", "bonus_balance": "16.00"}
    eventually(
        lambda: (
            [
                r
                for r in chain.admin.get("/v1/reports/unpaid-goods").json()["rows"]
                if r["customer_id"] == cid
            ]
            == []
        ),
        timeout=2.0,
    )
    done = eventually(lambda: tasks(chain, "done", cid), timeout=5.0)
    assert done[0]["closed_reason"] == "paid"


def test_goods_returned_after_their_discount_was_revoked_are_credited_at_the_full_price(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(
        credit_mode="per_item", max_payment_delay_days=DELAY_DAYS, overdue_discount="offer"
    )
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    # A pair of shoes 2 x 25.00 less 10.00 = 40.00, 15.00 paid in cash, the rest on account.
    sold = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "occurred_at": days_ago(34).isoformat(),
            "lines": [{**line("Shoes", "4820000000024", "25.00", "10.00"), "quantity": "2"}],
            "payments": [
                {"method": "cash", "amount": "15.00"},
                {"method": "on_account", "amount": "25.00"},
            ],
        },
    )
    assert sold.status_code == 201, sold.text
    sale_id = sold.json()["sale_id"]
    eventually(lambda: shown_overdue(chain, card, sale_id), timeout=5.0)
    revoked = chain.admin.post(f"/v1/sales/{sale_id}/revoke-discount", headers=idem())
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["customer"]["debt"] == "35.00"  # the pair now costs 50.00

    def give_back_one_shoe() -> dict[str, Any]:
        returned = chain.terminal.post(
            f"/v1/sales/{sale_id}/returns",
            headers=idem(),
            json={"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash"},
        )
        assert returned.status_code == 201, returned.text
        return dict(returned.json())

    first = give_back_one_shoe()
    # One shoe at its full price, 25.00: the customer still owes 25.00 - 15.00 for the other.
    assert (first["value"], first["debt_cancelled"], first["refunded"]) == (
        "25.00",
        "25.00",
        "0.00",
    )
    assert first["customer"]["debt"] == "10.00"
    second = give_back_one_shoe()
    # Everything back: nothing owed and the 15.00 paid is refunded, none of it kept.
    assert (second["value"], second["debt_cancelled"], second["refunded"]) == (
        "25.00",
        "10.00",
        "15.00",
    )
    assert second["customer"]["debt"] == "0.00"
    eventually(lambda: balances(chain, cid)[:2] == ("0.00", "0.00"), timeout=2.0)
    report = chain.admin.get("/v1/reports/payment-balance").json()
    [row] = [r for r in report["rows"] if r["customer_id"] == cid]
    assert (row["goods"], row["payments"], row["closing"]) == ("0.00", "0.00", "0.00")
