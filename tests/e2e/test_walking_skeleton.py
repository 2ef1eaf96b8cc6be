"""The walking skeleton through the whole pipe: gateway -> Kafka -> credit -> events -> reporting.

(a) a cash sale and (b) a VIP on-account sale in `balance` mode, then the customer's debt as the
back office and the till see it, and bad input that must leave no trace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

SHOES = {
    "sku": "SH-1",
    "barcode": "4820000000024",
    "name": "Shoes",
    "quantity": "1",
    "unit_price": "60.00",
    "discount": "0.00",
}


def test_a_cash_sale_completes_with_its_outcome(new_chain: Callable[..., Any], idem: Any) -> None:
    chain = new_chain()

    response = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={"lines": [SHOES], "payments": [{"method": "cash", "amount": "100.00"}]},
    )

    assert response.status_code == 201, response.text
    outcome = response.json()
    assert outcome["status"] == "completed"
    assert outcome["total"] == "60.00"
    assert outcome["paid"] == "60.00"
    assert outcome["on_account"] == "0.00"
    assert outcome["due_date"] is None
    assert [p["method"] for p in outcome["payments"]] == ["cash"]
    read_back = chain.terminal.get(f"/v1/sales/{outcome['sale_id']}")
    assert read_back.status_code == 200
    assert read_back.json()["status"] == "completed"
    assert read_back.json()["lines"][0]["line_no"] == 1


def test_an_on_account_sale_shows_as_debt_to_the_back_office_and_the_till(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)

    response = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": customer["card_number"],
            "lines": [SHOES],
            "payments": [{"method": "on_account", "amount": "60.00"}],
        },
    )

    assert response.status_code == 201, response.text
    outcome = response.json()
    assert outcome["on_account"] == "60.00"
    assert outcome["paid"] == "0.00"
    assert outcome["due_date"] is not None
    assert outcome["customer"]["debt"] == "60.00"
    answered_at = time.monotonic()

    def customer_debt() -> Any:
        seen = chain.admin.get(f"/v1/customers/{customer['customer_id']}").json()
        return seen if seen["debt"] == "60.00" else None

    seen = eventually(customer_debt, timeout=1.0)
    assert time.monotonic() - answered_at <= 1.0  # read your writes within 1 s
    assert seen["advance"] == "0.00"
    assert seen["credit_available"] is None
    card = chain.terminal.get(f"/v1/cards/{customer['card_number']}")
    assert card.status_code == 200, card.text
    assert card.json()["debt"] == "60.00"
    assert card.json()["open_sales"] == []  # balance mode shows one running balance


def test_a_retried_sale_with_the_same_key_is_recorded_once(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    headers = idem()
    body = {
        "card_number": customer["card_number"],
        "lines": [SHOES],
        "payments": [{"method": "on_account", "amount": "60.00"}],
    }

    first = chain.terminal.post("/v1/sales", headers=headers, json=body)
    again = chain.terminal.post("/v1/sales", headers=headers, json=body)
    changed = chain.terminal.post(
        "/v1/sales",
        headers=headers,
        json={
            **body,
            "lines": [{**SHOES, "unit_price": "61.00"}],
            "payments": [{"method": "on_account", "amount": "61.00"}],
        },
    )

    assert first.status_code == 201, first.text
    assert again.status_code == 201
    assert again.json() == first.json()
    assert changed.status_code == 409
    assert changed.json()["code"] == "idempotency_conflict"
    cid = customer["customer_id"]
    eventually(
        lambda: chain.admin.get(f"/v1/customers/{cid}").json()["debt"] == "60.00", timeout=5.0
    )
    # the read model has the sale: it holds it once (one statement entry, the debt of one)
    statement = chain.admin.get(f"/v1/customers/{cid}/statement").json()
    assert [(e["kind"], e["sale_id"]) for e in statement["entries"]] == [
        ("sale", first.json()["sale_id"])
    ]
    assert chain.admin.get(f"/v1/customers/{cid}").json()["debt"] == "60.00"


def test_bad_input_is_refused_with_the_documented_codes_and_records_nothing(
    new_chain: Callable[..., Any], idem: Any, gateway: str
) -> None:
    import httpx

    chain = new_chain()
    other = new_chain()
    customer = chain.customer(vip=True)
    good = {
        "card_number": customer["card_number"],
        "lines": [SHOES],
        "payments": [{"method": "on_account", "amount": "60.00"}],
    }

    float_money = chain.terminal.post(
        "/v1/sales", headers=idem(), json={**good, "lines": [{**SHOES, "unit_price": 60.0}]}
    )
    unknown_field = chain.terminal.post("/v1/sales", headers=idem(), json={**good, "tip": "1"})
    no_key = chain.terminal.post("/v1/sales", json=good)
    admin_key = chain.admin.post("/v1/sales", headers=idem(), json=good)
    bad_key = httpx.post(
        f"{gateway}/v1/sales", headers={**idem(), "Authorization": "Bearer x"}, json=good
    )
    other_chain_card = other.terminal.post("/v1/sales", headers=idem(), json=good)
    other_chain_customer = other.admin.get(f"/v1/customers/{customer['customer_id']}")

    assert float_money.status_code == 422
    assert float_money.headers["content-type"].startswith("application/problem+json")
    assert float_money.json()["code"] == "validation_error"
    assert any(e["field"] == "lines.0.unit_price" for e in float_money.json()["errors"])
    assert unknown_field.status_code == 422
    assert unknown_field.json()["code"] == "validation_error"
    assert no_key.status_code == 422
    assert "Idempotency-Key" in str(no_key.json())
    assert admin_key.status_code == 403
    assert admin_key.json()["code"] == "forbidden"
    assert bad_key.status_code == 401
    assert bad_key.json()["code"] == "unauthorized"
    assert other_chain_card.status_code == 422
    assert other_chain_card.json()["code"] == "card_not_found"
    assert other_chain_customer.status_code == 404
    assert other_chain_customer.json()["code"] == "not_found"

    time.sleep(0.5)  # anything wrongly published would have reached the read model by now
    seen = chain.admin.get(f"/v1/customers/{customer['customer_id']}").json()
    assert (seen["debt"], seen["advance"], seen["bonus_balance"]) == ("0.00", "0.00", "0.00")
    missing = chain.admin.get(f"/v1/customers/{uuid.uuid4()}")
    assert missing.status_code == 404
