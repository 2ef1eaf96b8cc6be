"""Returns of goods and bonuses (domain.md, "Returns of goods"), through the public gateway.

A return first cancels debt still open on the goods, then gives back the bonus spent on the
sale (up to the returned value left), and the rest is real money: refunded or kept as
advance, with the bonus accrued on that money reversed. Two partial returns of the same sale
never give back or reverse the same bonus twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TWO_SHIRTS = {
    "sku": "SHIRT-1",
    "barcode": "4820000000031",
    "name": "Shirt",
    "quantity": "2",
    "unit_price": "50.00",
    "discount": "0.00",
}


def _sell(chain: Any, idem: Any, card: str, lines: list[Any], payments: list[Any]) -> Any:
    response = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "lines": lines,
            "payments": [{"method": m, "amount": a} for m, a in payments],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def _return(chain: Any, idem: Any, sale_id: str, quantity: str, refund: str = "cash") -> Any:
    return chain.terminal.post(
        f"/v1/sales/{sale_id}/returns",
        headers=idem(),
        json={"lines": [{"line_no": 1, "quantity": quantity}], "refund": refund},
    )


def _pick(answer: dict[str, Any], *fields: str) -> tuple[Any, ...]:
    return tuple(answer[f] for f in fields)


RETURN_FIELDS = ("value", "debt_cancelled", "bonus_restored", "refunded", "bonus_reversed")


def test_two_partial_returns_give_back_spent_bonus_and_reverse_accrual_once(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    card = customer["card_number"]
    cid = customer["customer_id"]
    earned = _sell(chain, idem, card, [{**TWO_SHIRTS, "quantity": "4"}], [("cash", "200.00")])
    assert earned["customer"]["bonus_balance"] == "20.00"

    sale = _sell(chain, idem, card, [TWO_SHIRTS], [("bonus", "20.00"), ("cash", "80.00")])
    assert (sale["bonus_spent"], sale["bonus_accrued"]) == ("20.00", "8.00")
    assert sale["customer"]["bonus_balance"] == "8.00"

    first = _return(chain, idem, sale["sale_id"], "1")
    assert first.status_code == 201, first.text
    # 50.00 back: 20.00 of it was bonus (given back), 30.00 real money (3/8 of the accrual)
    assert _pick(first.json(), *RETURN_FIELDS) == ("50.00", "0.00", "20.00", "30.00", "3.00")
    assert first.json()["customer"]["bonus_balance"] == "25.00"

    second = _return(chain, idem, sale["sale_id"], "1")
    assert second.status_code == 201, second.text
    # the spent bonus is already back: all 50.00 is real money, the rest of the accrual goes
    assert _pick(second.json(), *RETURN_FIELDS) == ("50.00", "0.00", "0.00", "50.00", "5.00")
    assert second.json()["customer"]["bonus_balance"] == "20.00"

    third = _return(chain, idem, sale["sale_id"], "1")
    assert third.status_code == 422, third.text
    assert third.json()["code"] == "return_exceeds_sold"

    eventually(
        lambda: chain.admin.get(f"/v1/customers/{cid}").json()["bonus_balance"] == "20.00",
        timeout=5.0,
    )
    read_back = chain.terminal.get(f"/v1/sales/{sale['sale_id']}").json()
    assert read_back["lines"][0]["returned_quantity"] == "2"

    def statistics() -> Any:
        stats = chain.admin.get("/v1/reports/bonus-statistics").json()
        return stats if stats["outstanding"] == "20.00" else None

    stats = eventually(statistics, timeout=5.0)
    assert _pick(stats, "accrued", "spent", "restored", "reversed") == (
        "28.00",
        "20.00",
        "20.00",
        "8.00",
    )
    statement = chain.admin.get(f"/v1/customers/{cid}/statement").json()
    kinds = [e["kind"] for e in statement["entries"] if e["kind"].startswith("bonus_")]
    assert kinds.count("bonus_restored") == 1
    assert kinds.count("bonus_reversed") == 2
    assert statement["closing"]["bonus_balance"] == "20.00"


def test_a_return_cancels_open_debt_first_then_gives_back_bonus_then_refunds(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    card = customer["card_number"]
    _sell(chain, idem, card, [{**TWO_SHIRTS, "quantity": "1"}], [("cash", "50.00")])

    sale = _sell(
        chain,
        idem,
        card,
        [TWO_SHIRTS],
        [("bonus", "5.00"), ("cash", "40.00"), ("on_account", "55.00")],
    )
    assert (sale["bonus_spent"], sale["bonus_accrued"]) == ("5.00", "4.00")
    assert sale["customer"] == {"debt": "55.00", "advance": "0.00", "bonus_balance": "4.00"}

    first = _return(chain, idem, sale["sale_id"], "1")
    assert first.status_code == 201, first.text
    # all 50.00 cancels open debt: no bonus back, no money, no reversal
    assert _pick(first.json(), *RETURN_FIELDS) == ("50.00", "50.00", "0.00", "0.00", "0.00")
    assert first.json()["customer"] == {"debt": "5.00", "advance": "0.00", "bonus_balance": "4.00"}

    second = _return(chain, idem, sale["sale_id"], "1", refund="advance")
    assert second.status_code == 201, second.text
    # 5.00 debt left, then the 5.00 bonus spent, then 40.00 real money kept as advance
    assert _pick(second.json(), *RETURN_FIELDS) == ("50.00", "5.00", "5.00", "0.00", "4.00")
    assert second.json()["advance_added"] == "40.00"
    assert second.json()["customer"] == {
        "debt": "0.00",
        "advance": "40.00",
        "bonus_balance": "5.00",
    }
    eventually(
        lambda: (
            (
                (c := chain.admin.get(f"/v1/customers/{customer['customer_id']}").json())[
                    "bonus_balance"
                ],
                c["advance"],
                c["debt"],
            )
            == ("5.00", "40.00", "0.00")
        ),
        timeout=5.0,
    )
