"""The hostile scenario's traffic (tools/chaos/hostile.py) and how the driver judges its
answers: a hostile request answered otherwise than the contract says, or with a 5xx on the way,
is a violation; one answered as expected counts as a refusal; an overflow campaign ends in the
0.01 follow-up."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal

import httpx

from tools.chaos import hostile
from tools.chaos.driver import ChainKeys, CustomerModel, Driver, Operation

#: the `send_answered` fixture (tests/chaos/conftest.py)
SendAnswered = Callable[..., Awaitable[Driver]]


def _customers() -> list[CustomerModel]:
    out = []
    for n, chain_id in enumerate(("chain-a", "chain-b")):
        chain = ChainKeys(chain_id, "balance", f"admin-{n}", [("store", f"terminal-{n}")])
        out.append(CustomerModel(chain, f"cust-{n}", f"VIP-{n}", True))
    return out


def _world(customers: list[CustomerModel]) -> hostile.World:
    world = hostile.World()
    for c in customers:
        world.customers.setdefault(c.chain.chain_id, []).append(c)
    return world


async def _send(
    send_answered: SendAnswered, op: Operation, answer: httpx.Response | list[httpx.Response]
) -> Driver:
    answers = answer if isinstance(answer, list) else [answer]
    return await send_answered(_customers(), op, "terminal-0", answers)


async def test_a_hostile_request_answered_as_the_contract_says_counts_as_a_refusal(
    send_answered: SendAnswered,
) -> None:
    op = Operation(
        "advance",
        "POST",
        "/v1/customers/cust-0/advances",
        {"amount": "\uff11\uff10"},
        "k",
        hostile="other_scripts_digits",
        expect=frozenset({422}),
    )
    driver = await _send(send_answered, op, httpx.Response(422, json={"code": "validation_error"}))
    assert (driver.stats.refused, driver.stats.unexpected) == (1, [])


async def test_a_hostile_request_accepted_against_the_contract_is_a_violation(
    send_answered: SendAnswered,
) -> None:
    op = Operation(
        "advance",
        "POST",
        "/v1/customers/cust-0/advances",
        {"amount": "1e3"},
        "k",
        hostile="amount_past_limit",
        expect=frozenset({422}),
    )
    driver = await _send(send_answered, op, httpx.Response(201, json={"payment_id": "p"}))
    assert driver.stats.accepted == 0
    assert len(driver.stats.unexpected) == 1 and "amount_past_limit" in driver.stats.unexpected[0]


async def test_a_foreign_card_refused_with_another_code_is_a_violation(
    send_answered: SendAnswered,
) -> None:
    op = Operation(
        "sale",
        "POST",
        "/v1/sales",
        {},
        "k",
        hostile="foreign_card",
        expect=frozenset({422}),
        expect_codes=frozenset({"card_not_found"}),
    )
    driver = await _send(send_answered, op, httpx.Response(422, json={"code": "not_vip"}))
    assert len(driver.stats.unexpected) == 1


async def test_a_5xx_on_the_way_to_the_final_answer_is_counted_on_the_operation(
    send_answered: SendAnswered,
) -> None:
    op = Operation(
        "sale", "POST", "/v1/sales", {}, "k", hostile="line_overflow", expect=frozenset({422})
    )
    driver = await _send(
        send_answered,
        op,
        [
            httpx.Response(500, json={"code": "internal_error"}),
            httpx.Response(422, json={"code": "validation_error"}),
        ],
    )
    assert (op.answers_5xx, driver.stats.answers_5xx, op.status) == (1, 1, 422)
    assert op.last_5xx == "500 internal_error"


async def test_a_read_is_sent_without_a_body() -> None:
    seen: list[bytes] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(404, json={"code": "not_found"})

    op = Operation(
        "read",
        "GET",
        "/v1/sales/s-1",
        {},
        "k",
        hostile="foreign_sale_read",
        expect=frozenset({404}),
    )
    driver = Driver(
        "http://gateway.test",
        _customers(),
        seed=1,
        ops_per_customer=1,
        deadline=float("inf"),
        transport=httpx.MockTransport(gateway),
    )
    async with httpx.AsyncClient(
        base_url="http://gateway.test", transport=driver.transport
    ) as http:
        await driver.send(http, op, "terminal-0")
    assert seen == [b""] and driver.stats.refused == 1


def test_hostile_amounts_are_past_the_limits_or_in_other_scripts() -> None:
    customers = _customers()
    world = _world(customers)
    rng = random.Random(3)
    kinds: Counter[str] = Counter()
    for _ in range(400):
        normal = Operation("take_money", "POST", "/v1/customers/cust-0/payments", {}, "k")
        op = hostile.operation(rng, customers[0], world, normal)
        kinds[op.hostile] += 1
        text = json.dumps(op.body, ensure_ascii=False)
        if op.hostile in ("price_past_limit", "amount_past_limit"):
            amounts = [Decimal(v) for v in _values(op.body, ("amount", "unit_price"))]
            assert max(amounts) >= Decimal(10) ** 12, text
        if op.hostile == "line_overflow":
            line = op.body["lines"][0]
            assert Decimal(line["quantity"]) < 10**6
            assert Decimal(line["unit_price"]) < 10**12
            assert Decimal(line["quantity"]) * Decimal(line["unit_price"]) >= 10**12
        if op.hostile == "total_overflow":
            prices = [Decimal(line["unit_price"]) for line in op.body["lines"]]
            assert max(prices) < 10**12 <= sum(prices)
        if op.hostile == "other_scripts_digits":
            assert any(not ch.isascii() for ch in text), text
        if op.hostile.startswith("foreign_"):
            # no other chain has sales yet: the cross-chain ids name another chain's customer
            assert any(ident in op.path + text for ident in ("cust-1", "VIP-1")), op.path
    assert {
        "price_past_limit",
        "line_overflow",
        "total_overflow",
        "other_scripts_digits",
        "amount_past_limit",
        "foreign_customer",
        "foreign_card",
    } <= set(kinds)


def test_a_sale_id_of_another_chain_is_reused_once_and_only_a_reserved_range_is_read() -> None:
    customers = _customers()
    world = _world(customers)
    world.add_sale("chain-b", "1aaaaaaa-0000-4000-8000-000000000000")  # reusable (0-7)
    world.add_sale("chain-b", "9bbbbbbb-0000-4000-8000-000000000000")  # only read / returned
    assert world.foreign_sales("chain-a", reusable=True) == ["1aaaaaaa-0000-4000-8000-000000000000"]
    assert world.foreign_sales("chain-a", reusable=False) == [
        "9bbbbbbb-0000-4000-8000-000000000000"
    ]
    world.add_sale("chain-a", "1aaaaaaa-0000-4000-8000-000000000000")  # reused in chain-a
    assert world.foreign_sales("chain-a", reusable=True) == []
    assert world.foreign_sales("chain-b", reusable=True) == []  # its own


def _values(body: dict[str, object], names: tuple[str, ...]) -> list[str]:
    found = [str(body[n]) for n in names if n in body]
    for line in body.get("lines", []) or []:  # type: ignore[attr-defined]
        found += [str(line[n]) for n in names if n in line]
    return found
