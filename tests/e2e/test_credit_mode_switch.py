"""Switching the credit mode with open debts loses and misstates nothing (domain.md, "The three
modes").

Debts are opened in `per_item` (an overdue two-line sale partly paid on one named line, and a
recent sale), then the chain goes to `balance`, to `per_sale` and back to `per_item`. After
every switch the debt, the overdue flag, the unpaid goods and the aging report are the same,
and the till's open sales show the same amounts (by sale, with lines in per_item, none in
balance mode). Money then taken in balance mode goes to the oldest goods, as per_item shows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


def line(name: str, barcode: str, price: str, discount: str = "0.00") -> dict[str, str]:
    return {
        "sku": name.upper()[:8],
        "barcode": barcode,
        "name": name,
        "quantity": "1",
        "unit_price": price,
        "discount": discount,
    }


def test_debts_open_in_per_item_survive_switching_to_balance_and_per_sale_and_back(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(credit_mode="per_item", max_payment_delay_days=30)
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    old = datetime.now(UTC) - timedelta(days=34)
    sales = []
    for lines, total, at in (
        (
            [
                line("Dress", "4820000000017", "60.00"),
                line("Shoes", "4820000000024", "50.00", "10.00"),
            ],
            "100.00",
            old,
        ),
        ([line("Scarf", "4820000000048", "50.00")], "50.00", None),
    ):
        body: dict[str, Any] = {
            "card_number": card,
            "lines": lines,
            "payments": [{"method": "on_account", "amount": total}],
        }
        if at is not None:
            body["occurred_at"] = at.isoformat()
        sold = chain.terminal.post("/v1/sales", headers=idem(), json=body)
        assert sold.status_code == 201, sold.text
        sales.append(sold.json()["sale_id"])
    a, b = sales
    # 25.00 on the shoes, by name: the dress stays fully open.
    paid = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={
            "kind": "take_money",
            "amount": "25.00",
            "method": "cash",
            "card_number": card,
            "allocations": [{"sale_id": a, "line_no": 2, "amount": "25.00"}],
        },
    )
    assert paid.status_code == 201, paid.text
    assert [(x["line_no"], x["amount"]) for x in paid.json()["allocated"]] == [(2, "25.00")]

    def view() -> dict[str, Any]:
        seen = chain.admin.get(f"/v1/customers/{cid}").json()
        card_view = chain.terminal.get(f"/v1/cards/{card}").json()
        unpaid = chain.admin.get("/v1/reports/unpaid-goods").json()["rows"]
        aging = chain.admin.get("/v1/reports/aging").json()
        return {
            "debt": seen["debt"],
            "overdue": seen["overdue"],
            "card_debt": card_view["debt"],
            "open_sales": {
                s["sale_id"]: (
                    s["amount_owed"],
                    s["due_date"],
                    s["overdue"],
                    [(x["line_no"], x["amount_owed"]) for x in s["lines"]],
                )
                for s in card_view["open_sales"]
            },
            "unpaid": sorted((r["sale_id"], r["item"], r["amount_owed"]) for r in unpaid),
            "aging": aging["totals"],
        }

    expected_lines = {a: [(1, "60.00"), (2, "15.00")], b: [(1, "50.00")]}
    start = eventually(
        lambda: (v := view())["overdue"] and v["debt"] == "125.00" and v,
        timeout=5.0,
    )
    assert {k: v[0] for k, v in start["open_sales"].items()} == {a: "75.00", b: "50.00"}
    assert {k: v[3] for k, v in start["open_sales"].items()} == expected_lines
    assert start["unpaid"] == sorted(
        [
            (a, "Dress [4820000000017]", "60.00"),
            (a, "Shoes [4820000000024]", "15.00"),
            (b, "Scarf [4820000000048]", "50.00"),
        ]
    )
    assert (start["aging"]["current"], start["aging"]["d1_30"]) == ("50.00", "75.00")

    for mode in ("balance", "per_sale", "per_item", "per_sale", "balance", "per_item"):
        switched = chain.admin.put("/v1/settings", json={"credit_mode": mode})
        assert switched.status_code == 200, switched.text
        now = view()
        shown = {k: v[:3] for k, v in start["open_sales"].items()}
        if mode == "balance":
            assert now["open_sales"] == {}, mode  # one running balance, no sales shown
        elif mode == "per_sale":
            assert {k: v[:3] for k, v in now["open_sales"].items()} == shown, mode
            assert all(v[3] == [] for v in now["open_sales"].values()), mode
        else:
            assert now["open_sales"] == start["open_sales"], mode
        for field in ("debt", "overdue", "card_debt", "unpaid", "aging"):
            assert now[field] == start[field], (mode, field)

    # Money taken in balance mode goes to the oldest goods; per_item then shows where it went.
    assert chain.admin.put("/v1/settings", json={"credit_mode": "balance"}).status_code == 200
    taken = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={"kind": "take_money", "amount": "30.00", "method": "cash", "card_number": card},
    )
    assert taken.status_code == 201, taken.text
    assert taken.json()["customer"]["debt"] == "95.00"
    assert chain.admin.put("/v1/settings", json={"credit_mode": "per_item"}).status_code == 200
    after = eventually(lambda: (v := view())["debt"] == "95.00" and v, timeout=2.0)
    assert {k: v[3] for k, v in after["open_sales"].items()} == {
        a: [(1, "30.00"), (2, "15.00")],
        b: [(1, "50.00")],
    }

    # A payment still finds each line's true amount: pay debt settles all.
    settled = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={"kind": "pay_debt", "method": "cash", "card_number": card},
    )
    assert settled.status_code == 201, settled.text
    assert settled.json()["amount"] == "95.00"
    assert sorted(
        (x["sale_id"], x["line_no"], x["amount"]) for x in settled.json()["allocated"]
    ) == sorted([(a, 1, "30.00"), (a, 2, "15.00"), (b, 1, "50.00")])
