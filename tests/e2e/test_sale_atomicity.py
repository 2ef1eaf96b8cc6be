"""One sale, one outcome: a refused sale leaves nothing anywhere, checked through the public API.

Loyalty refusing the bonus part (`insufficient_bonus`), credit refusing the on-account part
(`credit_limit_exceeded`) and the gateway's own `card_required` must each leave every balance,
report and statement exactly as it was: no debt, no spend, no accrual. A refused sale reads
back as `refused` with its code, and a retry with the same key gets the same 422.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from devstack.stack import Stack

REPORTS = (
    "/v1/reports/bonus-statistics",
    "/v1/reports/payment-balance",
    "/v1/reports/unpaid-goods",
    "/v1/reports/aging",
)

#: how long a wrongly published event would need at most to reach the read models
SETTLE_SECONDS = 1.0


def _line(price: str) -> dict[str, str]:
    return {
        "sku": "COAT-1",
        "barcode": "4820000000048",
        "name": "Coat",
        "quantity": "1",
        "unit_price": price,
        "discount": "0.00",
    }


def _body(price: str, payments: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "lines": [_line(price)],
        "payments": [{"method": m, "amount": a} for m, a in payments],
    }


def _everything(chain: Any, customer: dict[str, Any]) -> dict[str, Any]:
    """Every public read where a wrongly kept part of a refused sale could show."""
    cid = customer["customer_id"]
    seen: dict[str, Any] = {
        "customer": chain.admin.get(f"/v1/customers/{cid}").json(),
        "list": chain.admin.get("/v1/customers").json(),
        "statement": chain.admin.get(f"/v1/customers/{cid}/statement").json(),
    }
    if customer.get("card_number"):
        seen["card"] = chain.terminal.get(f"/v1/cards/{customer['card_number']}").json()
    for path in REPORTS:
        seen[path] = chain.admin.get(path).json()
    return seen


def _funded_customer(
    chain: Any, idem: Any, eventually: Any, *, bonus: str, **fields: Any
) -> dict[str, Any]:
    """A VIP customer with `bonus` of bonus balance (earned with cash at the chain's 10%)."""
    customer = chain.customer(vip=True, **fields)
    cash = f"{int(bonus.split('.')[0]) * 10}.00"
    earned = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json=_body(cash, [("cash", cash)], card_number=customer["card_number"]),
    )
    assert earned.status_code == 201, earned.text
    assert earned.json()["customer"]["bonus_balance"] == bonus
    cid, sale_id = customer["customer_id"], earned.json()["sale_id"]

    def funding_in_every_read() -> bool:
        # the sale's entry (from credit's event) and its accrual (from loyalty's) reach
        # reporting on two topics, in batches of their own: wait for both, or a "before"
        # read could miss one that arrives during the test
        kinds = {
            entry["kind"]
            for entry in chain.admin.get(f"/v1/customers/{cid}/statement").json()["entries"]
            if entry["sale_id"] == sale_id
        }
        balance = chain.admin.get(f"/v1/customers/{cid}").json()["bonus_balance"]
        return kinds == {"sale", "bonus_accrued"} and balance == bonus

    eventually(funding_in_every_read, timeout=5.0)
    return customer


def _refused_leaves_nothing(
    chain: Any, customer: dict[str, Any], idem: Any, body: dict[str, Any], code: str
) -> None:
    before = _everything(chain, customer)
    sale_id = str(uuid.uuid4())
    headers = idem()

    refused = chain.terminal.post("/v1/sales", headers=headers, json={**body, "sale_id": sale_id})

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == code
    retried = chain.terminal.post("/v1/sales", headers=headers, json={**body, "sale_id": sale_id})
    assert retried.status_code == 422
    assert retried.json() == refused.json()
    read_back = chain.terminal.get(f"/v1/sales/{sale_id}")
    assert read_back.status_code == 200, read_back.text
    assert read_back.json()["sale_id"] == sale_id
    assert read_back.json()["status"] == "refused"
    assert read_back.json()["code"] == code
    assert read_back.json()["detail"]
    time.sleep(SETTLE_SECONDS)
    assert _everything(chain, customer) == before


def test_insufficient_bonus_leaves_every_balance_report_and_statement_unchanged(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = _funded_customer(chain, idem, eventually, bonus="10.00")

    body = _body(
        "20.00", [("bonus", "15.00"), ("cash", "5.00")], card_number=customer["card_number"]
    )
    _refused_leaves_nothing(chain, customer, idem, body, "insufficient_bonus")


def test_insufficient_bonus_mixed_with_on_account_leaves_no_debt(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = _funded_customer(chain, idem, eventually, bonus="10.00")

    body = _body(
        "100.00",
        [("bonus", "15.00"), ("cash", "20.00"), ("on_account", "65.00")],
        card_number=customer["card_number"],
    )
    _refused_leaves_nothing(chain, customer, idem, body, "insufficient_bonus")
    seen = chain.admin.get(f"/v1/customers/{customer['customer_id']}").json()
    assert (seen["debt"], seen["bonus_balance"]) == ("0.00", "10.00")


def test_bonus_spending_without_the_card_is_refused_and_records_nothing(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = _funded_customer(chain, idem, eventually, bonus="10.00")

    body = _body(
        "20.00",
        [("bonus", "5.00"), ("cash", "15.00")],
        customer_id=customer["customer_id"],
    )
    _refused_leaves_nothing(chain, customer, idem, body, "card_required")


def test_credit_refusing_the_on_account_part_leaves_no_bonus_spent_and_no_accrual(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = _funded_customer(chain, idem, eventually, bonus="10.00", credit_limit="50.00")

    body = _body(
        "100.00",
        [("bonus", "10.00"), ("cash", "20.00"), ("on_account", "70.00")],
        card_number=customer["card_number"],
    )
    _refused_leaves_nothing(chain, customer, idem, body, "credit_limit_exceeded")
    seen = chain.admin.get(f"/v1/customers/{customer['customer_id']}").json()
    assert (seen["debt"], seen["bonus_balance"], seen["credit_available"]) == (
        "0.00",
        "10.00",
        "50.00",
    )

    # the bonus is still there to spend
    allowed = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json=_body(
            "60.00",
            [("bonus", "10.00"), ("on_account", "50.00")],
            card_number=customer["card_number"],
        ),
    )
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["customer"] == {
        "debt": "50.00",
        "advance": "0.00",
        "bonus_balance": "0.00",
    }


def test_a_sale_waiting_for_loyalty_shows_nowhere_and_a_second_spend_waits_for_it(
    new_chain: Callable[..., Any], idem: Any, eventually: Any, stack: Stack, gateway: str
) -> None:
    """Loyalty is paused (SIGSTOP on the process this session started) while two terminals
    spend the same last bonus: both get `202`, nothing of the pending sale (not its debt, not
    its spend) is visible, and once loyalty resumes one completes and the other is refused."""
    chain = new_chain()
    customer = _funded_customer(chain, idem, eventually, bonus="10.00")
    till_two_key = chain.admin.post(
        f"/v1/stores/{chain.store_id}/terminals", json={"name": "Till 2"}
    ).json()["api_key"]
    first_body = _body(
        "60.00", [("bonus", "10.00"), ("on_account", "50.00")], card_number=customer["card_number"]
    )
    second_body = _body("10.00", [("bonus", "10.00")], card_number=customer["card_number"])
    first_key, second_key = idem(), idem()
    before = _everything(chain, customer)
    loyalty_pid = stack.services.processes["loyalty"].pid

    with httpx.Client(
        base_url=gateway, headers={"Authorization": f"Bearer {till_two_key}"}, timeout=15.0
    ) as till_two:
        os.kill(loyalty_pid, signal.SIGSTOP)
        try:
            first = chain.terminal.post("/v1/sales", headers=first_key, json=first_body)
            second = till_two.post("/v1/sales", headers=second_key, json=second_body)
            assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
            assert first.json()["status"] == "pending"
            status = chain.terminal.get(first.json()["status_url"])
            assert status.json() == {"sale_id": first.json()["sale_id"], "status": "pending"}
            retried = chain.terminal.post("/v1/sales", headers=first_key, json=first_body)
            assert retried.status_code == 202
            assert _everything(chain, customer) == before  # a pending sale is in no read
        finally:
            os.kill(loyalty_pid, signal.SIGCONT)

        def final(client: httpx.Client, key: dict[str, str], body: dict[str, Any]) -> Any:
            answer = client.post("/v1/sales", headers=key, json=body)
            return answer if answer.status_code != 202 else None

        won = eventually(lambda: final(chain.terminal, first_key, first_body), timeout=30.0)
        lost = eventually(lambda: final(till_two, second_key, second_body), timeout=30.0)
        lost_status = till_two.get(f"/v1/sales/{second.json()['sale_id']}").json()

    assert won.status_code == 201, won.text
    assert won.json()["customer"] == {"debt": "50.00", "advance": "0.00", "bonus_balance": "0.00"}
    assert lost.status_code == 422, lost.text
    assert lost.json()["code"] == "insufficient_bonus"
    assert (lost_status["status"], lost_status["code"]) == ("refused", "insufficient_bonus")
    eventually(
        lambda: (
            (
                (c := chain.admin.get(f"/v1/customers/{customer['customer_id']}").json())["debt"],
                c["bonus_balance"],
            )
            == ("50.00", "0.00")
        ),
        timeout=5.0,
    )
