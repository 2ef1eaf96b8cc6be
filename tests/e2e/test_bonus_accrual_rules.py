"""Accrual rules of domain.md ("Bonuses") end to end, through the public gateway.

Bonuses accrue on real money at the moment it pays for goods (cash, card, advance money spent
on goods, on-account debt paid later), only with the customer's accrual flag on, at the
chain's rate rounded half-up per payment. A balance made negative by a cancellation is filled
by later accruals first, and nothing can be spent while it is not positive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _line(price: str, name: str = "Dress") -> dict[str, str]:
    return {
        "sku": "SKU-1",
        "barcode": "4820000000017",
        "name": name,
        "quantity": "1",
        "unit_price": price,
        "discount": "0.00",
    }


def _sell(chain: Any, idem: Any, price: str, payments: list[tuple[str, str]], **extra: Any) -> Any:
    return chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            **extra,
            "lines": [_line(price)],
            "payments": [{"method": m, "amount": a} for m, a in payments],
        },
    )


def _settled_bonus(chain: Any, customer_id: str, expected: str, eventually: Any) -> None:
    """Wait until the back office sees `expected` as the customer's bonus balance."""
    eventually(
        lambda: chain.admin.get(f"/v1/customers/{customer_id}").json()["bonus_balance"] == expected,
        timeout=5.0,
    )


def test_a_customer_with_accrual_off_accrues_nothing(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True, bonus_accrual=False)

    sale = _sell(chain, idem, "100.00", [("cash", "100.00")], card_number=customer["card_number"])

    assert sale.status_code == 201, sale.text
    assert sale.json()["bonus_accrued"] == "0.00"
    assert sale.json()["payments"][0]["bonus_accrued"] == "0.00"
    assert sale.json()["customer"]["bonus_balance"] == "0.00"
    eventually(
        lambda: (
            chain.admin.get(f"/v1/customers/{customer['customer_id']}").json()["debt"] == "0.00"
        ),
        timeout=5.0,
    )
    stats = chain.admin.get("/v1/reports/bonus-statistics").json()
    assert stats["accrued"] == "0.00"
    assert stats["outstanding"] == "0.00"


def test_a_customer_named_without_a_card_accrues_on_cash(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=False, card=False)

    sale = _sell(chain, idem, "45.00", [("cash", "45.00")], customer_id=customer["customer_id"])

    assert sale.status_code == 201, sale.text
    assert sale.json()["bonus_accrued"] == "4.50"
    _settled_bonus(chain, customer["customer_id"], "4.50", eventually)


def test_the_on_account_part_accrues_only_when_the_debt_is_paid_in_cash(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    cid = customer["customer_id"]

    sale = _sell(
        chain,
        idem,
        "100.00",
        [("cash", "40.00"), ("on_account", "60.00")],
        card_number=customer["card_number"],
    )
    assert sale.status_code == 201, sale.text
    assert sale.json()["bonus_accrued"] == "4.00"
    assert sale.json()["on_account"] == "60.00"
    assert [p["method"] for p in sale.json()["payments"]] == ["cash"]
    assert sale.json()["customer"] == {"debt": "60.00", "advance": "0.00", "bonus_balance": "4.00"}

    paid = chain.terminal.post(
        f"/v1/customers/{cid}/payments",
        headers=idem(),
        json={
            "kind": "take_money",
            "amount": "60.00",
            "method": "cash",
            "card_number": customer["card_number"],
        },
    )
    assert paid.status_code == 201, paid.text
    assert paid.json()["bonus_accrued"] == "6.00"
    assert paid.json()["customer"] == {"debt": "0.00", "advance": "0.00", "bonus_balance": "10.00"}
    _settled_bonus(chain, cid, "10.00", eventually)


def test_advance_money_accrues_when_it_pays_for_goods_not_when_deposited(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    cid = customer["customer_id"]
    card = customer["card_number"]

    deposit = chain.terminal.post(
        f"/v1/customers/{cid}/advances",
        headers=idem(),
        json={"amount": "80.00", "method": "cash", "card_number": card},
    )
    assert deposit.status_code == 201, deposit.text
    assert deposit.json()["advance_added"] == "80.00"
    assert deposit.json()["bonus_accrued"] == "0.00"

    paid_by_advance = _sell(chain, idem, "50.00", [("advance", "50.00")], card_number=card)
    assert paid_by_advance.status_code == 201, paid_by_advance.text
    assert paid_by_advance.json()["payments"][0]["bonus_accrued"] == "5.00"
    assert paid_by_advance.json()["bonus_accrued"] == "5.00"

    # an on-account sale is first covered by the advance: that money pays goods and accrues
    covered = _sell(chain, idem, "30.00", [("on_account", "30.00")], card_number=card)
    assert covered.status_code == 201, covered.text
    assert covered.json()["advance_applied"] == "30.00"
    assert covered.json()["bonus_accrued"] == "3.00"
    assert covered.json()["customer"] == {
        "debt": "0.00",
        "advance": "0.00",
        "bonus_balance": "8.00",
    }
    _settled_bonus(chain, cid, "8.00", eventually)


def test_the_chain_rate_applies_rounded_half_up_per_payment(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(bonus_rate_percent="5.00")
    customer = chain.customer(vip=True)

    # 5% of 10.10 is 0.505 per payment: 0.51 twice (1.02), not 5% of 20.20 (1.01)
    sale = _sell(
        chain,
        idem,
        "20.20",
        [("cash", "10.10"), ("card", "10.10")],
        card_number=customer["card_number"],
    )

    assert sale.status_code == 201, sale.text
    assert [p["bonus_accrued"] for p in sale.json()["payments"]] == ["0.51", "0.51"]
    assert sale.json()["bonus_accrued"] == "1.02"
    _settled_bonus(chain, customer["customer_id"], "1.02", eventually)

    # accrual is on the money that paid goods: change handed back does not accrue
    with_change = _sell(
        chain, idem, "10.30", [("cash", "20.00")], card_number=customer["card_number"]
    )
    assert with_change.status_code == 201, with_change.text
    assert with_change.json()["bonus_accrued"] == "0.52"  # 0.515 rounds up
    _settled_bonus(chain, customer["customer_id"], "1.54", eventually)


def test_a_negative_balance_is_filled_first_and_blocks_spending_until_positive(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    cid = customer["customer_id"]
    card = customer["card_number"]

    earned = _sell(chain, idem, "100.00", [("cash", "100.00")], card_number=card)
    assert earned.status_code == 201, earned.text
    spent = _sell(chain, idem, "10.00", [("bonus", "10.00")], card_number=card)
    assert spent.status_code == 201, spent.text
    assert spent.json()["customer"]["bonus_balance"] == "0.00"

    cancelled = chain.admin.post(
        f"/v1/payments/{earned.json()['payments'][0]['payment_id']}/bonus-type",
        json={"bonus_type": "none"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["bonus_cancelled"] == "10.00"
    assert cancelled.json()["customer"]["bonus_balance"] == "-10.00"
    _settled_bonus(chain, cid, "-10.00", eventually)

    refused = _sell(chain, idem, "1.00", [("bonus", "0.01"), ("cash", "0.99")], card_number=card)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "insufficient_bonus"

    partly_filled = _sell(chain, idem, "50.00", [("cash", "50.00")], card_number=card)
    assert partly_filled.status_code == 201, partly_filled.text
    assert partly_filled.json()["bonus_accrued"] == "5.00"
    assert partly_filled.json()["customer"]["bonus_balance"] == "-5.00"

    still_refused = _sell(chain, idem, "1.00", [("bonus", "1.00")], card_number=card)
    assert still_refused.status_code == 422, still_refused.text
    assert still_refused.json()["code"] == "insufficient_bonus"

    filled = _sell(chain, idem, "100.00", [("cash", "100.00")], card_number=card)
    assert filled.status_code == 201, filled.text
    assert filled.json()["customer"]["bonus_balance"] == "5.00"

    spendable = _sell(chain, idem, "5.00", [("bonus", "5.00")], card_number=card)
    assert spendable.status_code == 201, spendable.text
    assert spendable.json()["customer"]["bonus_balance"] == "0.00"
    _settled_bonus(chain, cid, "0.00", eventually)

    stats = chain.admin.get("/v1/reports/bonus-statistics").json()
    assert (stats["accrued"], stats["spent"], stats["cancelled"], stats["outstanding"]) == (
        "25.00",
        "15.00",
        "10.00",
        "0.00",
    )
