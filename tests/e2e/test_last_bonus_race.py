"""The last-bonus race through the gateway, with real Kafka and PostgreSQL.

Two terminals of the chain spend the customer's whole bonus balance at the same moment (two
terminal keys, two threads released by one barrier). Exactly one sale may complete; the other
is refused with `insufficient_bonus` and the balance ends at 0.00. Several rounds make it
likely that the two requests really overlap in the gateway, credit and loyalty.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

ROUNDS = 5


def _line(price: str) -> dict[str, str]:
    return {
        "sku": "TOY-1",
        "barcode": "4820000000055",
        "name": "Toy",
        "quantity": "1",
        "unit_price": price,
        "discount": "0.00",
    }


def _final(client: httpx.Client, response: httpx.Response) -> tuple[int, dict[str, Any]]:
    """The final answer of a sale: a `202` is followed on its status URL until it is known."""
    if response.status_code != 202:
        return response.status_code, response.json()
    sale_id = response.json()["sale_id"]
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        body = client.get(f"/v1/sales/{sale_id}").json()
        if body["status"] == "completed":
            return 201, body
        if body["status"] == "refused":
            return 422, body
        time.sleep(0.1)
    raise AssertionError(f"sale {sale_id} still pending after 30 s")


def _at_the_same_moment(
    clients: list[httpx.Client], body: dict[str, Any], headers: list[dict[str, str]]
) -> list[tuple[int, dict[str, Any]]]:
    """Post the same sale from every client at once (one barrier), each with its own key."""
    barrier = threading.Barrier(len(clients))
    answers: dict[int, tuple[int, dict[str, Any]]] = {}
    failures: list[BaseException] = []

    def post(index: int) -> None:
        client = clients[index]
        try:
            barrier.wait(timeout=10)
            answers[index] = _final(
                client, client.post("/v1/sales", headers=headers[index], json=body)
            )
        except BaseException as exc:  # re-raised by the calling thread
            failures.append(exc)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if failures:
        raise failures[0]
    return [answers[i] for i in range(len(clients))]


def test_two_terminals_spending_the_last_bonus_at_once_never_both_succeed(
    new_chain: Callable[..., Any], idem: Any, eventually: Any, gateway: str
) -> None:
    chain = new_chain()
    second = chain.admin.post(f"/v1/stores/{chain.store_id}/terminals", json={"name": "Till 2"})
    assert second.status_code == 201, second.text
    customer = chain.customer(vip=True)
    card = customer["card_number"]
    cid = customer["customer_id"]

    with httpx.Client(
        base_url=gateway,
        headers={"Authorization": f"Bearer {second.json()['api_key']}"},
        timeout=30.0,
    ) as till_two:
        terminals = [chain.terminal, till_two]
        for round_no in range(ROUNDS):
            earned = chain.terminal.post(
                "/v1/sales",
                headers=idem(),
                json={
                    "card_number": card,
                    "lines": [_line("100.00")],
                    "payments": [{"method": "cash", "amount": "100.00"}],
                },
            )
            assert earned.status_code == 201, earned.text
            assert earned.json()["customer"]["bonus_balance"] == "10.00"

            body = {
                "card_number": card,
                "lines": [_line("10.00")],
                "payments": [{"method": "bonus", "amount": "10.00"}],
            }
            answers = _at_the_same_moment(terminals, body, [idem(), idem()])

            statuses = sorted(status for status, _ in answers)
            assert statuses == [201, 422], f"round {round_no}: {answers}"
            won = next(b for status, b in answers if status == 201)
            lost = next(b for status, b in answers if status == 422)
            assert won["bonus_spent"] == "10.00"
            assert won["customer"]["bonus_balance"] == "0.00"
            assert lost["code"] == "insufficient_bonus"
            eventually(
                lambda: chain.admin.get(f"/v1/customers/{cid}").json()["bonus_balance"] == "0.00",
                timeout=5.0,
            )

    def statistics() -> Any:
        stats = chain.admin.get("/v1/reports/bonus-statistics").json()
        return stats if stats["spent"] == f"{10 * ROUNDS}.00" else None

    stats = eventually(statistics, timeout=5.0)
    assert stats["accrued"] == f"{10 * ROUNDS}.00"
    assert stats["outstanding"] == "0.00"
