"""The bonus worked example of domain.md through the public gateway, on the real system.

200.00 cash accrues 20.00; 20.00 bonus + 30.00 cash spends 20.00 and accrues 3.00; cancelling
the 30.00 payment's accrual takes the balance to 0.00, and a second cancellation changes
nothing. Every place the back office and the till see a bonus balance must agree: the customer,
the card lookup, the customer list, bonus statistics and the customer's statement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _line(price: str) -> dict[str, str]:
    return {
        "sku": "DR-1",
        "barcode": "4820000000017",
        "name": "Dress",
        "quantity": "1",
        "unit_price": price,
        "discount": "0.00",
    }


def _bonus_views(chain: Any, customer: dict[str, Any]) -> dict[str, Any]:
    """The bonus balance as each public read shows it."""
    cid = customer["customer_id"]
    listed = chain.admin.get("/v1/customers", params={"q": customer["card_number"]}).json()
    stats = chain.admin.get("/v1/reports/bonus-statistics").json()
    return {
        "customer": chain.admin.get(f"/v1/customers/{cid}").json()["bonus_balance"],
        "card": chain.terminal.get(f"/v1/cards/{customer['card_number']}").json()["bonus_balance"],
        "list": [c["bonus_balance"] for c in listed["items"] if c["customer_id"] == cid],
        "stats_row": [r for r in stats["by_customer"] if r["customer_id"] == cid],
        "stats": stats,
    }


def _all_show(views: dict[str, Any], balance: str) -> dict[str, Any] | None:
    """The views when every one of them shows `balance`, else None (they are read one after
    another while the projection may apply the sale in between, so all are checked together)."""
    shown = (
        views["customer"],
        views["card"],
        *views["list"],
        *(r["balance"] for r in views["stats_row"]),
    )
    agree = len(views["list"]) == 1 and len(views["stats_row"]) == 1
    return views if agree and set(shown) == {balance} else None


def test_the_worked_example_shows_the_same_bonus_balance_everywhere(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    card = customer["card_number"]
    cid = customer["customer_id"]

    first = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "lines": [_line("200.00")],
            "payments": [{"method": "cash", "amount": "200.00"}],
        },
    )
    assert first.status_code == 201, first.text
    assert first.json()["bonus_accrued"] == "20.00"
    assert first.json()["bonus_spent"] == "0.00"
    assert first.json()["payments"][0]["bonus_accrued"] == "20.00"
    assert first.json()["customer"]["bonus_balance"] == "20.00"

    second = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "lines": [_line("50.00")],
            "payments": [
                {"method": "bonus", "amount": "20.00"},
                {"method": "cash", "amount": "30.00"},
            ],
        },
    )
    assert second.status_code == 201, second.text
    outcome = second.json()
    assert outcome["bonus_spent"] == "20.00"
    assert outcome["bonus_accrued"] == "3.00"
    assert [(p["method"], p["amount"], p["bonus_accrued"]) for p in outcome["payments"]] == [
        ("bonus", "20.00", "0.00"),
        ("cash", "30.00", "3.00"),
    ]
    assert outcome["customer"]["bonus_balance"] == "3.00"
    cash_payment_id = outcome["payments"][1]["payment_id"]

    seen = eventually(lambda: _all_show(_bonus_views(chain, customer), "3.00"), timeout=5.0)

    cancelled = chain.admin.post(
        f"/v1/payments/{cash_payment_id}/bonus-type", json={"bonus_type": "none"}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["payment_id"] == cash_payment_id
    assert cancelled.json()["bonus_cancelled"] == "3.00"
    assert cancelled.json()["customer"]["bonus_balance"] == "0.00"

    again = chain.admin.post(
        f"/v1/payments/{cash_payment_id}/bonus-type", json={"bonus_type": "none"}
    )
    assert again.status_code == 200, again.text
    assert again.json() == cancelled.json()

    seen = eventually(lambda: _all_show(_bonus_views(chain, customer), "0.00"), timeout=5.0)
    stats = seen["stats"]
    movements = {k: stats[k] for k in ("accrued", "spent", "cancelled", "outstanding")}
    assert movements == {
        "accrued": "23.00",
        "spent": "20.00",
        "cancelled": "3.00",
        "outstanding": "0.00",
    }
    assert (stats["reversed"], stats["restored"], stats["expired"]) == ("0.00", "0.00", "0.00")
    assert [
        {k: r[k] for k in ("store_id", "accrued", "spent", "cancelled")} for r in stats["by_store"]
    ] == [{"store_id": chain.store_id, "accrued": "23.00", "spent": "20.00", "cancelled": "3.00"}]
    row = seen["stats_row"][0]
    assert (row["accrued"], row["spent"], row["cancelled"], row["balance"]) == (
        "23.00",
        "20.00",
        "3.00",
        "0.00",
    )

    statement = chain.admin.get(f"/v1/customers/{cid}/statement").json()
    bonus_entries = [
        (e["kind"], e["bonus_change"], e["bonus_balance"])
        for e in statement["entries"]
        if e["bonus_change"] != "0.00"
    ]
    assert bonus_entries == [
        ("bonus_accrued", "20.00", "20.00"),
        ("bonus_spent", "-20.00", "0.00"),
        ("bonus_accrued", "3.00", "3.00"),
        ("bonus_cancelled", "-3.00", "0.00"),
    ]
    assert statement["closing"]["bonus_balance"] == "0.00"

    # the second cancellation recorded nothing anywhere
    stats_after = chain.admin.get("/v1/reports/bonus-statistics").json()
    assert stats_after["cancelled"] == "3.00"
    entries_after = chain.admin.get(f"/v1/customers/{cid}/statement").json()["entries"]
    assert len(entries_after) == len(statement["entries"])
