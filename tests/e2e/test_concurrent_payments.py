"""Two terminals paying the same customer's debt at the same moment never over-allocate; two
racing for the same credit limit, advance or returned goods: exactly one gets through.

Two tills (in two stores of the chain, each with its own terminal key) send their requests
from two threads released by one barrier, several rounds in a row, so that the gateway, Kafka
and credit see them as close together as the machine allows. Whatever the interleaving, the
debt never goes negative, exactly min(sum of money, debt) is allocated and the rest is advance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

ROUNDS = 4


def second_terminal(chain: Any, gateway: str) -> httpx.Client:
    store = chain.admin.post("/v1/stores", json={"code": "S2", "name": "Store two"})
    assert store.status_code == 201, store.text
    term = chain.admin.post(f"/v1/stores/{store.json()['store_id']}/terminals", json={"name": "T"})
    assert term.status_code == 201, term.text
    return httpx.Client(
        base_url=gateway,
        headers={"Authorization": f"Bearer {term.json()['api_key']}"},
        timeout=15.0,
    )


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def pay_from_both(
    tills: list[httpx.Client], cid: str, body: dict[str, str], idem: Any
) -> list[httpx.Response]:
    """The same payment request sent by every till at the same moment."""

    def call(till: httpx.Client) -> Callable[[], httpx.Response]:
        return lambda: till.post(f"/v1/customers/{cid}/payments", headers=idem(), json=body)

    return at_once([call(till) for till in tills])


def on_account(chain: Any, idem: Any, card: str, amount: str) -> str:
    sold = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "lines": [
                {
                    "sku": "A",
                    "barcode": "1",
                    "name": "Coat",
                    "quantity": "1",
                    "unit_price": "60.00",
                    "discount": "0.00",
                },
                {
                    "sku": "B",
                    "barcode": "2",
                    "name": "Hat",
                    "quantity": "1",
                    "unit_price": f"{Decimal(amount) - 60:.2f}",
                    "discount": "0.00",
                },
            ],
            "payments": [{"method": "on_account", "amount": amount}],
        },
    )
    assert sold.status_code == 201, sold.text
    return str(sold.json()["sale_id"])


def open_sales(chain: Any, card: str) -> dict[str, dict[str, Any]]:
    response = chain.terminal.get(f"/v1/cards/{card}")
    assert response.status_code == 200, response.text
    return {s["sale_id"]: s for s in response.json()["open_sales"]}


def customer_state(chain: Any, cid: str) -> dict[str, Any]:
    return dict(chain.admin.get(f"/v1/customers/{cid}").json())


def debt_payments(chain: Any, cid: str) -> list[str]:
    """The debt changes of the customer's statement entries that paid debt, oldest first."""
    statement = chain.admin.get(f"/v1/customers/{cid}/statement").json()
    return [e["debt_change"] for e in statement["entries"] if Decimal(e["debt_change"]) < 0]


@pytest.mark.parametrize("mode", ["per_item", "balance"])
def test_two_terminals_taking_money_at_once_allocate_at_most_the_debt(
    mode: str, new_chain: Callable[..., Any], idem: Any, eventually: Any, gateway: str
) -> None:
    chain = new_chain(credit_mode=mode)
    other = second_terminal(chain, gateway)
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    advance = Decimal("0.00")
    with other:
        for _ in range(ROUNDS):
            # Debt 100.00 (after the advance left by the previous round covers what it can).
            on_account(chain, idem, card, f"{Decimal('100.00') + advance:.2f}")
            debt = Decimal("100.00")
            body = {"kind": "take_money", "amount": "70.00", "method": "cash", "card_number": card}
            answers = pay_from_both([chain.terminal, other], cid, body, idem)
            assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
            allocated = sum(
                (Decimal(x["amount"]) for a in answers for x in a.json()["allocated"]),
                Decimal("0"),
            )
            added = sum((Decimal(a.json()["advance_added"]) for a in answers), Decimal("0"))
            assert allocated == min(Decimal("140.00"), debt)
            assert added == Decimal("140.00") - allocated
            for a in answers:
                assert Decimal(a.json()["customer"]["debt"]) >= 0
                assert all(Decimal(x["amount"]) > 0 for x in a.json()["allocated"])
            # The second answer to be applied saw the first: one of them ends at debt 0.
            finals = sorted(
                (a.json()["customer"]["debt"], a.json()["customer"]["advance"]) for a in answers
            )
            assert finals[0] == ("0.00", "40.00")
            advance = Decimal("40.00")
    # Bonus accrues on money that pays goods: 10.00 on each round's 100.00 of debt, and 4.00
    # each time the 40.00 advance left by a round covers the next round's sale. The read model
    # is waited for on all three together: (debt 0, advance 40) alone is also what it shows
    # before it has seen the last round, and the bonus (loyalty's events) may be there before
    # the payments (credit's).
    bonus = f"{Decimal('10.00') * ROUNDS + 4 * (ROUNDS - 1):.2f}"

    def settled() -> tuple[str, str, str]:
        seen = customer_state(chain, cid)
        return seen["debt"], seen["advance"], seen["bonus_balance"]

    eventually(lambda: settled() == ("0.00", "40.00", bonus), timeout=2.0)


def test_two_terminals_paying_the_whole_debt_at_once_pay_it_once(
    new_chain: Callable[..., Any], idem: Any, eventually: Any, gateway: str
) -> None:
    chain = new_chain(credit_mode="per_sale")
    other = second_terminal(chain, gateway)
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    with other:
        for paid_so_far in range(1, ROUNDS + 1):
            on_account(chain, idem, card, "100.00")
            body = {"kind": "pay_debt", "method": "card", "card_number": card}
            answers = pay_from_both([chain.terminal, other], cid, body, idem)
            codes = sorted(a.status_code for a in answers)
            assert codes == [201, 422], [a.text for a in answers]
            [paid] = [a.json() for a in answers if a.status_code == 201]
            [late] = [a.json() for a in answers if a.status_code == 422]
            assert late["code"] == "no_debt"
            assert paid["amount"] == "100.00"
            assert paid["advance_added"] == "0.00"
            assert paid["customer"]["debt"] == "0.00"
            # the read model has this round's payment (a debt of 0 is also what it shows
            # before it has seen this round's sale)
            eventually(
                lambda: len(debt_payments(chain, cid)) >= paid_so_far,  # noqa: B023
                timeout=2.0,
            )
    seen = customer_state(chain, cid)
    assert (seen["debt"], seen["advance"]) == ("0.00", "0.00")
    assert debt_payments(chain, cid) == ["-100.00"] * ROUNDS


def test_two_terminals_naming_the_same_sale_at_once_never_pay_it_beyond_what_it_owes(
    new_chain: Callable[..., Any], idem: Any, eventually: Any, gateway: str
) -> None:
    chain = new_chain(credit_mode="per_sale")
    other = second_terminal(chain, gateway)
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    older = on_account(chain, idem, card, "100.00")
    newer = on_account(chain, idem, card, "100.00")
    body = {
        "kind": "take_money",
        "amount": "70.00",
        "method": "cash",
        "card_number": card,
        "allocations": [{"sale_id": newer, "amount": "70.00"}],
    }

    with other:
        answers = pay_from_both([chain.terminal, other], cid, body, idem)

    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    per_sale: dict[str, Decimal] = {}
    for a in answers:
        for x in a.json()["allocated"]:
            per_sale[x["sale_id"]] = per_sale.get(x["sale_id"], Decimal("0")) + Decimal(x["amount"])
    # The named sale takes what it owes; the rest goes to the oldest open sale.
    assert per_sale == {newer: Decimal("100.00"), older: Decimal("40.00")}
    eventually(lambda: customer_state(chain, cid)["debt"] == "60.00", timeout=2.0)
    assert {k: v["amount_owed"] for k, v in open_sales(chain, card).items()} == {older: "60.00"}


def test_two_terminals_racing_for_the_same_limit_advance_or_goods_let_exactly_one_through(
    new_chain: Callable[..., Any], idem: Any, eventually: Any, gateway: str
) -> None:
    chain = new_chain(credit_mode="per_item")
    other = second_terminal(chain, gateway)
    customer = chain.customer(credit_limit="100.00")
    cid, card = customer["customer_id"], customer["card_number"]

    def both(path: str, body: dict[str, Any]) -> list[httpx.Response]:
        def call(till: httpx.Client) -> Callable[[], httpx.Response]:
            return lambda: till.post(path, headers=idem(), json=body)

        return at_once([call(chain.terminal), call(other)])

    def one_wins(answers: list[httpx.Response], code: str) -> dict[str, Any]:
        assert sorted(a.status_code for a in answers) == [201, 422], [a.text for a in answers]
        [lost] = [a.json() for a in answers if a.status_code == 422]
        assert lost["code"] == code
        return next(dict(a.json()) for a in answers if a.status_code == 201)

    with other:
        # 60.00 + 60.00 on account against a limit of 100.00.
        sale = {
            "card_number": card,
            "lines": [
                {
                    "sku": "C",
                    "barcode": "1",
                    "name": "Coat",
                    "quantity": "1",
                    "unit_price": "60.00",
                    "discount": "0.00",
                }
            ],
            "payments": [{"method": "on_account", "amount": "60.00"}],
        }
        won = one_wins(both("/v1/sales", sale), "credit_limit_exceeded")
        assert won["customer"]["debt"] == "60.00"
        # An advance of 100.00 pays the 60.00; two refunds of 30.00 against the 40.00 left.
        deposited = chain.terminal.post(
            f"/v1/customers/{cid}/advances",
            headers=idem(),
            json={"amount": "100.00", "method": "cash", "card_number": card},
        )
        assert deposited.status_code == 201, deposited.text
        assert deposited.json()["customer"]["advance"] == "40.00"
        refund = {"amount": "30.00", "method": "cash", "card_number": card}
        won = one_wins(both(f"/v1/customers/{cid}/refunds", refund), "insufficient_advance")
        assert won["customer"]["advance"] == "10.00"
        # Two returns of both pairs of socks sold.
        socks = chain.terminal.post(
            "/v1/sales",
            headers=idem(),
            json={
                "card_number": card,
                "lines": [
                    {
                        "sku": "S",
                        "barcode": "2",
                        "name": "Socks",
                        "quantity": "2",
                        "unit_price": "10.00",
                        "discount": "0.00",
                    }
                ],
                "payments": [{"method": "cash", "amount": "20.00"}],
            },
        )
        assert socks.status_code == 201, socks.text
        sale_id = socks.json()["sale_id"]
        returned = {"lines": [{"line_no": 1, "quantity": "2"}], "refund": "cash"}
        won = one_wins(both(f"/v1/sales/{sale_id}/returns", returned), "return_exceeds_sold")
        assert won["refunded"] == "20.00"

    assert chain.terminal.get(f"/v1/sales/{sale_id}").json()["lines"][0]["returned_quantity"] == "2"
    eventually(
        lambda: (
            (customer_state(chain, cid)["debt"], customer_state(chain, cid)["advance"])
            == ("0.00", "10.00")
        ),
        timeout=2.0,
    )
