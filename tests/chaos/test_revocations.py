"""Discount revocations in the fault harness: the driver's model of an accepted one (what its
answer must say), how the driver judges a revocation's final answer, the statement invariant
(each sale revoked at most once, by an accepted request), and where the mix asks them."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from tools.chaos import invariants
from tools.chaos.driver import (
    ChainKeys,
    CustomerModel,
    Driver,
    Operation,
    brings_money,
    keeps_sale_owed,
    next_operation,
    overdue_discounted_sale,
    planned_revocation_step,
    revocation,
    revocation_plan,
)

LATE = (datetime.now(UTC) - timedelta(days=40)).isoformat()

#: the `send_answered` fixture (tests/chaos/conftest.py)
SendAnswered = Callable[..., Awaitable[Driver]]


def _customer(policy: str = "offer") -> CustomerModel:
    chain = ChainKeys("chain-1", "per_sale", "admin-key", [("store-1", "terminal-key")], policy)
    return CustomerModel(chain, "cust-1", "VIP-1", True)


def _line(quantity: str, price: str, discount: str) -> dict[str, str]:
    return {"name": "Coat", "quantity": quantity, "unit_price": price, "discount": discount}


def _sold(c: CustomerModel, sale_id: str, *, late: bool = True, debt: str = "100.00") -> None:
    """An accepted sale on account of two lines, 10.00 and 0.00 discount, folded in."""
    body: dict[str, Any] = {
        "sale_id": sale_id,
        "lines": [_line("3", "40.00", "10.00"), _line("1", "10.00", "0.00")],
        "payments": [{"method": "on_account", "amount": "100.00"}],
    }
    if late:
        body["occurred_at"] = LATE
    answer = {
        "sale_id": sale_id,
        "customer": {"debt": debt, "advance": "0.00", "bonus_balance": "7.00"},
    }
    sale = Operation("sale", "POST", "/v1/sales", body, f"k-{sale_id}", status=201, answer=answer)
    c.ops.append(sale)
    c.apply(sale)


def _revoked(
    c: CustomerModel,
    sale_id: str,
    amount: str,
    *,
    debt: str,
    advance: str = "0.00",
    bonus: str = "7.00",
) -> Operation:
    op = revocation(c, sale_id)
    op.status = 200
    op.answer = {
        "sale_id": sale_id,
        "discount_revoked": amount,
        "customer": {"debt": debt, "advance": advance, "bonus_balance": bonus},
    }
    c.ops.append(op)
    c.apply(op)
    return op


def test_an_accepted_revocation_adds_the_discount_kept_to_the_debt_once() -> None:
    c = _customer()
    _sold(c, "s-1")
    c.sales["s-1"][0][2] = 1  # one of the three discounted pieces was returned

    _revoked(c, "s-1", "6.67", debt="106.67")

    assert (c.debt, c.revoked, c.problems) == (Decimal("106.67"), {"s-1": Decimal("6.67")}, [])


def test_an_advance_covering_the_revoked_discount_is_what_is_owed_too() -> None:
    c = _customer()
    _sold(c, "s-1", debt="0.00")
    c.advance = Decimal("4.00")

    _revoked(c, "s-1", "10.00", debt="6.00")

    assert c.problems == []


def test_what_an_accepted_revocation_must_not_answer() -> None:
    c = _customer()
    _sold(c, "s-1")
    _sold(c, "s-2", late=False)

    _revoked(c, "s-1", "10.00", debt="110.00", bonus="9.00")  # a stale bonus balance
    _revoked(c, "s-1", "10.00", debt="120.00", bonus="9.00")  # a second time
    _revoked(c, "s-2", "9.00", debt="130.00", bonus="9.00")  # not overdue, and not 10.00

    problems = "\n".join(c.problems)
    assert "bonus_balance 9.00 != model 7.00" in problems
    assert "accepted again" in problems
    assert "not past its due date" in problems
    assert "discount_revoked 9.00 != model 10.00" in problems
    assert "not by 9.00" in problems
    assert len(c.problems) == 5


def test_a_back_dated_sale_paid_in_full_is_never_overdue() -> None:
    c = _customer()
    _sold(c, "s-1")
    c.ops[0].body["payments"] = [{"method": "cash", "amount": "100.00"}]
    c.overdue.clear()
    c.apply(c.ops[0])

    assert c.overdue == set()


async def _answer(send_answered: SendAnswered, *responses: httpx.Response) -> Driver:
    c = _customer()
    return await send_answered([c], revocation(c, "s-1"), "admin-key", responses)


async def test_a_revocation_refused_as_the_contract_says_counts_as_a_refusal(
    send_answered: SendAnswered,
) -> None:
    for status, code in ((409, "already_revoked"), (422, "not_overdue")):
        driver = await _answer(send_answered, httpx.Response(status, json={"code": code}))

        assert (driver.stats.refused, driver.stats.unexpected) == (1, [])
        assert driver.stats.revocations == {code: 1}
        assert driver.stats.revocations_retried == 0


async def test_a_revocation_retried_until_final_is_counted_as_retried(
    send_answered: SendAnswered,
) -> None:
    pending = httpx.Response(202, json={"status": "pending"})
    revoked = httpx.Response(200, json={"sale_id": "s-1", "discount_revoked": "1.00"})

    driver = await _answer(send_answered, pending, revoked)

    assert (driver.stats.accepted, driver.stats.revocations_retried) == (1, 1)
    assert driver.stats.revocations == {"revoked": 1}
    assert driver.stats.revocations_planned == {}  # one of the mix's


async def test_a_revocation_answered_otherwise_is_a_violation(send_answered: SendAnswered) -> None:
    for status, code in ((409, "idempotency_conflict"), (404, "not_found")):
        driver = await _answer(send_answered, httpx.Response(status, json={"code": code}))

        assert driver.stats.refused == 0
        assert len(driver.stats.unexpected) == 1
        assert driver.stats.revocations == {"unexpected": 1}


def _entry(kind: str, sale_id: str) -> dict[str, Any]:
    return {"kind": kind, "sale_id": sale_id, "payment_id": None}


def test_each_sale_is_revoked_at_most_once_and_only_by_an_accepted_request() -> None:
    c = _customer()
    for sale_id in ("s-1", "s-2", "s-3"):
        _sold(c, sale_id)
    _revoked(c, "s-1", "10.00", debt="110.00")
    for sale_id, code, status in (("s-1", "already_revoked", 409), ("s-2", "already_revoked", 409)):
        refused = revocation(c, sale_id)
        refused.status, refused.answer = status, {"code": code}
        c.ops.append(refused)
    c.ops.append(revocation(c, "s-3"))  # never answered: it may have been applied, once
    entries = [_entry("sale", s) for s in ("s-1", "s-2", "s-3")]
    revoked = [_entry("discount_revoked", s) for s in ("s-1", "s-3")]

    assert invariants._revocations(c, "c", entries + revoked) == [
        "c: sale s-2 refused already_revoked, never revoked before"
    ]
    twice = invariants._revocations(c, "c", [*entries, *revoked, revoked[0]])
    assert twice[1:] == ["c: sale s-1's discount_revoked listed 2 times, 1 revocations accepted"]
    lost = invariants._revocations(c, "c", entries)
    assert lost[1:] == ["c: sale s-1's discount_revoked listed 0 times, 1 revocations accepted"]


def test_the_mix_asks_revocations_only_in_an_offer_chain_of_sales_with_a_discount() -> None:
    for policy, expected in (("offer", True), ("keep", False)):
        c = _customer(policy)
        _sold(c, "s-1")
        c.sales["s-0"], c.discounts["s-0"] = [[1, 1, 0]], [Decimal(0)]  # nothing to revoke
        rng = random.Random(3)

        ops = [next_operation(rng, c) for _ in range(400)]

        paths = {op.path for op in ops if op.kind == "revoke_discount"}
        assert paths == ({"/v1/sales/s-1/revoke-discount"} if expected else set())
        assert all(op.admin and op.body == {} for op in ops if op.kind == "revoke_discount")


def test_a_planned_revocation_is_of_the_back_dated_discounted_sale_on_account() -> None:
    c = _customer()
    rng = random.Random(5)
    plans = [revocation_plan(rng, c, 13) for _ in range(60)]
    assert None in plans
    assert all(0 <= p[0] <= 6 and 2 <= p[1] - p[0] <= 6 for p in plans if p)
    assert revocation_plan(rng, _customer("keep"), 13) is None
    c.ops.append(Operation("advance", "POST", "/v1/customers/cust-1/advances", {}, "k-0"))
    mix = overdue_discounted_sale(rng, c)

    sale = planned_revocation_step(rng, c, mix, sale_at=1)
    lines = sale.body["lines"]
    assert all(Decimal(line["discount"]) > 0 for line in lines)
    assert [p["method"] for p in sale.body["payments"]] == ["on_account"]
    assert datetime.fromisoformat(sale.body["occurred_at"]) < datetime.now(UTC) - timedelta(days=34)
    sale.status, sale.answer = 201, {"sale_id": sale.body["sale_id"]}
    c.ops.append(sale)
    c.ops.append(mix)

    asked = planned_revocation_step(rng, c, mix, sale_at=1)

    assert asked.path == f"/v1/sales/{sale.body['sale_id']}/revoke-discount"
    assert asked.planned and not mix.planned
    sale.status = 422
    assert planned_revocation_step(rng, c, mix, sale_at=1) is mix


def test_a_planned_revocation_is_asked_at_the_first_operation_after_the_first_fault() -> None:
    c = _customer()
    driver = Driver("http://gateway.test", [c], seed=1, ops_per_customer=13, deadline=0.0)
    due = [n for n in range(12) if driver._revocation_step_due(c, n, 2, 6)]
    assert due == [2, 6, 7, 8, 9, 10, 11]  # (the driver asks the request once: at 6)
    c.ops = [Operation("sale", "POST", "/v1/sales", {}, f"k-{n}", sent_at=n) for n in range(4)]
    driver.fault_injected()
    driver.fault_at = 3.5  # after the customer's fourth operation was sent

    assert driver._revocation_step_due(c, 4, 2, 6)
    c.ops.append(Operation("sale", "POST", "/v1/sales", {}, "k-4", sent_at=4.0))
    assert not driver._revocation_step_due(c, 5, 2, 6)  # no longer the first after it


def _total(sale: Operation) -> Decimal:
    return sum(
        (
            Decimal(line["unit_price"]) * int(line["quantity"]) - Decimal(line["discount"])
            for line in sale.body["lines"]
        ),
        Decimal(0),
    )


def test_a_planned_sale_spends_the_advance_and_owes_the_rest() -> None:
    c = _customer()
    for advance, lines in (("5.00", (1, 2)), ("1000.00", (2, 3))):
        c.advance = Decimal(advance)
        sale = overdue_discounted_sale(random.Random(2), c)

        payments = sale.body["payments"]
        assert [p["method"] for p in payments] == ["advance", "on_account"]
        assert payments[0]["amount"] == advance
        assert Decimal(payments[1]["amount"]) == _total(sale) - c.advance > 0
        assert len(sale.body["lines"]) in lines
        assert all(Decimal(line["discount"]) > 0 for line in sale.body["lines"])
    c.advance = Decimal("1000.00")
    assert 10 <= _total(overdue_discounted_sale(random.Random(2), c)) - c.advance <= 30
    c.advance = Decimal("20000.00")  # not topped up: all on account, covered at once
    sale = overdue_discounted_sale(random.Random(2), c)
    assert [p["method"] for p in sale.body["payments"]] == ["on_account"]


def _op(kind: str, path: str = "/v1/customers/cust-1/payments", **body: Any) -> Operation:
    return Operation(kind, "POST", path, body, f"k-{kind}")


def test_what_brings_money_in_before_a_planned_revocation() -> None:
    money_in = [
        _op("take_money"),
        _op("pay_debt"),
        _op("advance"),
        _op("sale", "/v1/sales", change_to_advance="5.00"),
        _op("return", "/v1/sales/s-2/returns", refund="advance"),
        _op("return", "/v1/sales/s-1/returns", refund="cash"),  # the back-dated sale's goods
    ]
    other = [
        _op("sale", "/v1/sales"),
        _op("return", "/v1/sales/s-2/returns", refund="card"),
        _op("refund", "/v1/customers/cust-1/refunds"),
        _op("bonus_cancel", "/v1/payments/p-1/bonus-type"),
        revocation(_customer(), "s-2"),
    ]

    assert [brings_money(op, "s-1") for op in money_in] == [True] * len(money_in)
    assert [brings_money(op, "s-1") for op in other] == [False] * len(other)


def test_between_a_planned_sale_and_its_revocation_no_money_comes_in() -> None:
    c = _customer()
    _sold(c, "s-1")
    _sold(c, "s-2", late=False)
    rng = random.Random(4)
    pay = _op("pay_debt")

    drawn = [keeps_sale_owed(rng, c, pay, sale_at=0) for _ in range(200)]

    assert not any(brings_money(op, "s-1") for op in drawn)
    assert {op.kind for op in drawn} >= {"sale", "return"}
    c.ops[0].status = 422  # the sale was refused: the mix as it is
    assert keeps_sale_owed(rng, c, pay, sale_at=0) is pay
