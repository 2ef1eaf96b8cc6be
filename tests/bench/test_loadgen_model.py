"""The load generator records what was accepted in the fault harness's model, so that the
harness's invariant checker can be run after a benchmark step: one operation in flight per
customer, a non-final answer resolved with the same Idempotency-Key, the final answer folded
into the customer's model."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from bench.loadgen import ChainFixture, Customer, LoadGenerator
from bench.pipeline import best_rate, check_model

from tools.chaos import invariants
from tools.chaos.driver import ChainKeys, Operation

KEYS = ChainKeys("chain-1", "default", "admin-key", [("store-1", "terminal-key")])


def _gateway(
    answers: list[tuple[int, dict[str, Any]]], seen: list[httpx.Request]
) -> httpx.MockTransport:
    """Answers POSTs in order (the last one again when they run out)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


def _generator(
    transport: httpx.MockTransport, **kwargs: Any
) -> tuple[LoadGenerator, Customer, ChainFixture]:
    gen = LoadGenerator("http://gateway.test", "operator", transport=transport, **kwargs)
    cust = Customer(KEYS, "cust-1", "CARD1", True)
    chain = ChainFixture(keys=KEYS, customers=[cust], probes=[])
    gen.chains.append(chain)
    return gen, cust, chain


def _sale() -> Operation:
    body = {
        "sale_id": "sale-1",
        "card_number": "CARD1",
        "lines": [
            {
                "sku": "A",
                "barcode": "1",
                "name": "A",
                "quantity": "2",
                "unit_price": "5.00",
                "discount": "0.00",
            }
        ],
        "payments": [{"method": "on_account", "amount": "10.00"}],
    }
    return Operation("sale", "POST", "/v1/sales", body, "idem-1")


ACCEPTED = {
    "sale_id": "sale-1",
    "payments": [],
    "customer": {"debt": "10.00", "advance": "0.00", "bonus_balance": "0.00"},
}


async def test_a_202_is_resolved_with_the_same_key_and_the_final_answer_enters_the_model() -> None:
    seen: list[httpx.Request] = []
    gen, cust, chain = _generator(_gateway([(202, {"status": "pending"}), (201, ACCEPTED)], seen))
    op = _sale()
    gen._claim(cust, op)
    await gen._sale(chain, "terminal-key", cust, op, "sale_on_account", 0.0, None)
    assert cust.customer_id in gen.busy  # still unresolved: no other operation for it
    assert gen._free_customer(chain) is None
    assert await gen.settle(10) == 0
    assert [r.headers["Idempotency-Key"] for r in seen] == ["idem-1", "idem-1"]
    assert json.loads(seen[0].content) == json.loads(seen[1].content)
    assert [r.status for r in gen._stats.records] == [202]  # latency: the first answer
    assert cust.ops == [op] and op.status == 201 and op.attempts == 2
    assert (cust.debt, cust.advance, cust.bonus) == (Decimal("10.00"), 0, 0)
    assert cust.sales == {"sale-1": [[1, 2, 0]]}
    assert gen.busy == set() and gen._free_customer(chain) is cust
    stats = gen.model_stats()
    assert (stats.operations, stats.accepted, stats.unanswered, stats.resends) == (1, 1, 0, 1)
    await gen.close()


async def test_a_refusal_is_final_and_changes_no_balance() -> None:
    seen: list[httpx.Request] = []
    gen, cust, chain = _generator(_gateway([(422, {"code": "credit_limit_exceeded"})], seen))
    op = _sale()
    gen._claim(cust, op)
    await gen._sale(chain, "terminal-key", cust, op, "sale_on_account", 0.0, None)
    assert len(seen) == 1 and op.refused and cust.debt == 0 and gen.busy == set()
    assert gen.model_stats().refused == 1
    await gen.close()


async def test_an_operation_without_a_final_answer_stays_unanswered_in_the_model() -> None:
    seen: list[httpx.Request] = []
    gen, cust, chain = _generator(
        _gateway([(202, {"status": "pending"})], seen), resolve_seconds=0.5
    )
    op = _sale()
    gen._claim(cust, op)
    await gen._sale(chain, "terminal-key", cust, op, "sale_on_account", 0.0, None)
    await gen.settle(5)
    assert op.status is None and gen.busy == set()
    assert gen.model_stats().unanswered == 1
    await gen.close()


def test_the_checker_reads_the_load_generators_model() -> None:
    """An accepted sale recorded by the load generator must appear exactly once in the
    customer's statement: the harness's own check, over the bench's model."""
    cust = Customer(KEYS, "cust-1", "CARD1", True)
    op = _sale()
    op.status, op.answer = 201, ACCEPTED
    cust.ops.append(op)
    cust.apply(op)
    zero = {"debt": "0.00", "advance": "0.00", "bonus_balance": "0.00"}
    entry = {
        "kind": "sale",
        "sale_id": "sale-1",
        "payment_id": None,
        "debt_change": "10.00",
        "advance_change": "0.00",
        "bonus_change": "0.00",
    }
    statement = {
        "opening": zero,
        "entries": [entry],
        "closing": {"debt": "10.00", "advance": "0.00", "bonus_balance": "0.00"},
    }
    balances = (Decimal("10.00"), Decimal(0), Decimal(0))
    assert invariants._customer(cust, balances, statement) == []
    twice = dict(statement, entries=[entry, entry])
    assert any("2 times" in v for v in invariants._customer(cust, balances, twice))


async def test_check_model_reports_violations_and_best_rate_stops_at_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = ["customer x: balances differ"]

    async def fake_check(
        url: str, customers: list[Customer], *, within: float
    ) -> tuple[list[str], float]:
        assert [c.customer_id for c in customers] == ["cust-1"]
        return found, 1.5

    monkeypatch.setattr(invariants, "check_until_held", fake_check)
    gen, _cust, _chain = _generator(_gateway([(201, ACCEPTED)], []))
    inv = await check_model(gen, "http://gateway.test")
    assert inv["held"] is False and inv["violations"] == 1 and inv["examples"] == found
    await gen.close()
    held = {"held": True}
    steps = [
        {"offered_rps": 10, "kept_up": True, "invariants": held},
        {"offered_rps": 25, "kept_up": True, "invariants": held},
        {"offered_rps": 50, "kept_up": True, "invariants": {"held": False}},
        {"offered_rps": 100, "kept_up": False, "invariants": held},
    ]
    assert best_rate(steps) == 25
    assert best_rate([*steps[:1], dict(steps[1], kept_up=False)]) == 10
    assert best_rate([dict(steps[0], invariants={"held": False})]) is None


def test_a_probe_with_a_return_in_flight_is_not_given_a_sale() -> None:
    gen, _cust, chain = _generator(_gateway([(201, ACCEPTED)], []))
    probe = Customer(KEYS, "probe-1", "CARD2", True)
    chain.probes.append(probe)
    chain.free_probes.append(probe)
    gen._claim(probe, Operation("return", "POST", "/v1/sales/s/returns", {}, "idem-2"))
    assert gen._free_probe(chain) is None
    assert list(chain.free_probes) == [probe]  # still there for later
    gen.busy.discard(probe.customer_id)
    assert gen._free_probe(chain) is probe
