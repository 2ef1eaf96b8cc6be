"""Driver.settle: after the faults, the POS retries what never got a final answer, with the same
Idempotency-Key, body and terminal key, and folds a late acceptance into its model."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx

from tools.chaos.driver import ChainKeys, CustomerModel, Driver, Operation

ANSWER = {
    "sale_id": "s-1",
    "status": "completed",
    "payments": [],
    "customer": {"debt": "12.50", "advance": "0.00", "bonus_balance": "1.25"},
}


def _customer() -> CustomerModel:
    chain = ChainKeys("chain-1", "balance", "admin-key", [("store-1", "terminal-key")])
    return CustomerModel(chain, "cust-1", "VIP-1", True)


async def test_an_unanswered_request_is_retried_until_final_and_applied_once() -> None:
    seen: list[tuple[str, str, dict[str, object]]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(
            (
                request.headers["Idempotency-Key"],
                request.headers["Authorization"],
                json.loads(request.content),
            )
        )
        if len(seen) < 3:  # still catching up: the outcome is not there yet
            return httpx.Response(202, json={"status": "pending"})
        return httpx.Response(201, json=ANSWER)

    customer = _customer()
    answered = Operation(
        "sale",
        "POST",
        "/v1/sales",
        {"sale_id": "s-0", "lines": []},
        "k-0",
        status=201,
        answer={**ANSWER, "sale_id": "s-0"},
        api_key="terminal-key",
    )
    pending = Operation(
        "sale",
        "POST",
        "/v1/sales",
        {"sale_id": "s-1", "lines": []},
        "k-1",
        attempts=5,
        api_key="terminal-key",
    )
    customer.ops += [answered, pending]
    driver = Driver(
        "http://gateway.test",
        [customer],
        seed=1,
        ops_per_customer=2,
        deadline=0.0,
        transport=httpx.MockTransport(gateway),
    )
    driver.stats.unanswered = 1

    stats = await driver.settle(within=30.0)

    assert [(key, auth) for key, auth, _ in seen] == [("k-1", "Bearer terminal-key")] * 3
    assert all(body == pending.body for _, _, body in seen)
    assert (pending.status, pending.answer, pending.attempts) == (201, ANSWER, 8)
    assert (stats.unanswered, stats.settled, stats.sent) == (0, 1, 0)
    assert (customer.debt, customer.bonus) == (Decimal("12.50"), Decimal("1.25"))
    assert "s-1" in customer.sales


async def test_a_request_still_unanswered_when_settling_ends_stays_unanswered() -> None:
    customer = _customer()
    pending = Operation(
        "advance",
        "POST",
        "/v1/customers/cust-1/advances",
        {"amount": "5"},
        "k-2",
        api_key="terminal-key",
    )
    customer.ops.append(pending)
    driver = Driver(
        "http://gateway.test",
        [customer],
        seed=1,
        ops_per_customer=1,
        deadline=0.0,
        transport=httpx.MockTransport(lambda _: httpx.Response(503)),
    )
    driver.stats.unanswered = 1

    stats = await driver.settle(within=0.0)

    assert pending.status is None and pending.attempts == 1
    assert (stats.unanswered, stats.settled) == (1, 0)
    assert customer.debt == customer.advance == Decimal(0)
