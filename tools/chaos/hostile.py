"""Hostile input among the normal traffic (the `hostile` scenario, issue 13): what a buggy or
hostile POS sends, interleaved with each customer's ordinary operations.

Two families, one request each (so the driver's model stays "one operation of a customer at a
time" and the invariants apply unchanged):
- hostile amounts: values at and beyond the contract's limits (money below 10^12, quantities
  below 10^6 with at most 3 decimals, line amounts and totals below 10^12), other scripts'
  digits, too many decimals; and the balance overflow of the issue's wedge reproduction (a
  campaign of at-limit advances or sales on account until the balance would reach 10^13 and
  is refused `amount_out_of_range`, then the same customer's 0.01 operation, which must end);
- cross-chain ids: a POS-chosen `sale_id` already used in another chain (accepted as this
  chain's own sale), another chain's customer, card and sale ids (the answer a non-existent
  object gets: `404`, or `422 card_not_found` for a card named in a sale).

Each hostile operation names the final statuses (and codes) it may get; anything else, and any
5xx, is a violation (`Driver.send`). A hostile operation that is accepted is folded into the
model like any other, so the money invariants cover it too.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.chaos.driver import CustomerModel, Operation

#: the largest amount a request may carry (money below 10^12)
AT_LIMIT = "999999999999.99"
#: steps of an overflow campaign: 10 at-limit amounts reach 9,999,999,999,999.90, the 11th
#: would take the balance past 10^13 and must be refused
CAMPAIGN_STEPS = 12
#: share of the customers that run an overflow campaign at some point of their traffic
CAMPAIGN_SHARE = 0.25
OTHER_DIGITS = ("\u0661\u0660", "\uff11\uff10", "\u0967\u0966", "\U0001d7cf\U0001d7ce")
#: hostile single operations and their weights
KINDS = {
    "price_past_limit": 2,
    "quantity_past_limit": 2,
    "quantity_four_decimals": 1,
    "line_overflow": 2,
    "total_overflow": 2,
    "total_at_limit": 2,
    "amount_past_limit": 2,
    "amount_at_limit": 2,
    "amount_too_many_decimals": 1,
    "other_scripts_digits": 3,
    "foreign_sale_id": 3,
    "foreign_customer": 2,
    "foreign_card": 2,
    "foreign_card_lookup": 1,
    "foreign_sale_read": 1,
    "foreign_sale_return": 2,
    "foreign_customer_read": 1,
}
INVALID = frozenset({422})


@dataclass
class World:
    """What the customers of every chain have made, for the cross-chain ids: the sale ids
    accepted per chain, the ids reused in a chain, the customers of each chain."""

    sales: dict[str, list[str]] = field(default_factory=dict)
    known: dict[str, set[str]] = field(default_factory=dict)
    customers: dict[str, list[CustomerModel]] = field(default_factory=dict)

    def add_sale(self, chain_id: str, sale_id: str) -> None:
        if sale_id not in self.known.setdefault(chain_id, set()):
            self.known[chain_id].add(sale_id)
            self.sales.setdefault(chain_id, []).append(sale_id)

    def foreign_sales(self, chain_id: str, *, reusable: bool) -> list[str]:
        """Other chains' sale ids this chain does not have. Ids whose first hex digit is 0-7
        may be reused as a POS-chosen sale_id; the others are only ever read or returned
        against (404): no read can race with a reuse of the same id."""
        own = self.known.get(chain_id, set())
        return [
            s
            for chain, ids in sorted(self.sales.items())
            if chain != chain_id
            for s in ids
            if s not in own and (s[0] in "01234567") == reusable
        ]

    def foreign_customers(self, chain_id: str) -> list[CustomerModel]:
        return [c for chain, cs in sorted(self.customers.items()) if chain != chain_id for c in cs]


def _line(quantity: str, price: str, name: str = "Dress") -> dict[str, str]:
    return {
        "sku": name.upper(),
        "barcode": "4820000000017",
        "name": name,
        "quantity": quantity,
        "unit_price": price,
        "discount": "0.00",
    }


def _sale(
    c: CustomerModel, lines: list[dict[str, str]], total: str, method: str = "card"
) -> dict[str, Any]:
    return {
        "sale_id": str(uuid.uuid4()),
        "card_number": c.card,
        "lines": lines,
        "payments": [{"method": method, "amount": total}],
    }


def operation(rng: random.Random, c: CustomerModel, world: World, normal: Operation) -> Operation:
    """One hostile operation for customer `c` (`normal`: the ordinary operation it replaces,
    reused by `foreign_sale_id`)."""
    from tools.chaos.driver import Operation

    key = str(uuid.uuid4())
    base = f"/v1/customers/{c.customer_id}"
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]

    def hostile(
        op_kind: str,
        method: str,
        path: str,
        body: dict[str, Any],
        expect: frozenset[int] = INVALID,
        codes: frozenset[str] = frozenset(),
        admin: bool = False,
    ) -> Operation:
        return Operation(
            op_kind,
            method,
            path,
            body,
            key,
            admin=admin,
            hostile=kind,
            expect=expect,
            expect_codes=codes,
        )

    if kind == "price_past_limit":
        price = rng.choice(["1000000000000", "1000000000000.00", "999999999999999.99"])
        return hostile("sale", "POST", "/v1/sales", _sale(c, [_line("1", price)], price))
    if kind == "quantity_past_limit":
        quantity = rng.choice(["1000000", "999999999999999"])
        return hostile("sale", "POST", "/v1/sales", _sale(c, [_line(quantity, "0.01")], "10000.00"))
    if kind == "quantity_four_decimals":
        return hostile("sale", "POST", "/v1/sales", _sale(c, [_line("1.0005", "10.00")], "10.01"))
    if kind == "line_overflow":  # each value is in range, their product is not
        quantity, price = rng.choice(
            [("10", "100000000000.00"), ("999999", "999999999999.99"), ("999999.999", "9999999.99")]
        )
        total = str((Decimal(quantity) * Decimal(price)).quantize(Decimal("0.01")))
        return hostile("sale", "POST", "/v1/sales", _sale(c, [_line(quantity, price)], total))
    if kind == "total_overflow":  # each line in range, their sum is not
        lines = [_line("1", "500000000000.00"), _line("1", "500000000000.00", "Shoes")]
        if rng.random() < 0.5:
            lines = [_line("1", "400000000000.00", n) for n in ("Dress", "Shoes", "Socks")]
        total = str(sum(Decimal(line["unit_price"]) for line in lines))
        return hostile("sale", "POST", "/v1/sales", _sale(c, lines, total))
    if kind == "total_at_limit":  # the largest sale there is: accepted, paid by card
        return hostile(
            "sale",
            "POST",
            "/v1/sales",
            _sale(c, [_line("1", AT_LIMIT)], AT_LIMIT),
            expect=frozenset({201, 422}),
        )
    if kind == "amount_past_limit":
        amount = rng.choice(["1000000000000", "99999999999999.99", "1" + "0" * 30])
        return hostile(
            "advance",
            "POST",
            f"{base}/advances",
            {"amount": amount, "method": "cash", "card_number": c.card},
        )
    if kind == "amount_at_limit":  # accepted, or amount_out_of_range near 10^13
        return hostile(
            "advance",
            "POST",
            f"{base}/advances",
            {"amount": AT_LIMIT, "method": "card", "card_number": c.card},
            expect=frozenset({201, 422}),
        )
    if kind == "amount_too_many_decimals":
        return hostile(
            "take_money",
            "POST",
            f"{base}/payments",
            {"kind": "take_money", "amount": "10.001", "method": "cash", "card_number": c.card},
        )
    if kind == "other_scripts_digits":
        digits = rng.choice(OTHER_DIGITS)
        where = rng.choice(["amount", "unit_price", "quantity"])
        if where == "amount":
            return hostile(
                "advance",
                "POST",
                f"{base}/advances",
                {"amount": digits, "method": "cash", "card_number": c.card},
            )
        line = _line(digits, "10.00") if where == "quantity" else _line("1", digits)
        return hostile("sale", "POST", "/v1/sales", _sale(c, [line], "10.00", "cash"))
    # -- cross-chain ids --
    chain = c.chain.chain_id
    if kind == "foreign_sale_id":
        reusable = world.foreign_sales(chain, reusable=True)
        if reusable:
            if normal.kind != "sale":
                from tools.chaos.driver import _sale as ordinary_sale

                normal = ordinary_sale(rng, c)
            sale_id = rng.choice(reusable)
            world.add_sale(chain, sale_id)  # reserved at once: no other customer reuses it
            normal.body["sale_id"] = sale_id
            normal.hostile = kind  # an ordinary sale of this chain: 201 or a 422 refusal
            return normal
        kind = "foreign_customer"
    others = world.foreign_customers(chain)
    foreign_sales = world.foreign_sales(chain, reusable=False)
    if kind in ("foreign_sale_read", "foreign_sale_return") and not foreign_sales:
        kind = "foreign_customer"
    if not others:
        return normal
    other = rng.choice(others)
    if kind == "foreign_customer":
        return hostile(
            "take_money",
            "POST",
            f"/v1/customers/{other.customer_id}/payments",
            {"kind": "take_money", "amount": "5.00", "method": "cash", "card_number": other.card},
            expect=frozenset({404}),
        )
    if kind == "foreign_card":
        body = _sale(c, [_line("1", "10.00")], "10.00", "on_account")
        body["card_number"] = other.card
        return hostile("sale", "POST", "/v1/sales", body, codes=frozenset({"card_not_found"}))
    if kind == "foreign_card_lookup":
        return hostile("read", "GET", f"/v1/cards/{other.card}", {}, expect=frozenset({404}))
    if kind == "foreign_customer_read":
        return hostile(
            "read",
            "GET",
            f"/v1/customers/{other.customer_id}",
            {},
            expect=frozenset({404}),
            admin=True,
        )
    sale_id = rng.choice(foreign_sales)
    if kind == "foreign_sale_read":
        return hostile("read", "GET", f"/v1/sales/{sale_id}", {}, expect=frozenset({404}))
    return hostile(
        "return",
        "POST",
        f"/v1/sales/{sale_id}/returns",
        {"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash"},
        expect=frozenset({404}),
    )


def campaign_for(rng: random.Random, c: CustomerModel) -> str | None:
    """Whether customer `c` runs an overflow campaign, and of which balance: debt (sales on
    account: a VIP customer without a credit limit, as in the issue) or advance."""
    if rng.random() >= CAMPAIGN_SHARE:
        return None
    if c.vip and c.credit_limit is None and rng.random() < 0.5:
        return "debt"
    return "advance"


def campaign_step(c: CustomerModel, balance: str) -> Operation:
    """One at-limit amount onto `balance`: accepted until the balance would reach 10^13, then
    refused `amount_out_of_range` (or at once by an ordinary refusal: not VIP, a limit)."""
    from tools.chaos.driver import Operation

    key = str(uuid.uuid4())
    if balance == "debt":
        body = _sale(c, [_line("1", AT_LIMIT)], AT_LIMIT, "on_account")
        return Operation(
            "sale",
            "POST",
            "/v1/sales",
            body,
            key,
            hostile="overflow_debt",
            expect=frozenset({201, 422}),
        )
    return Operation(
        "advance",
        "POST",
        f"/v1/customers/{c.customer_id}/advances",
        {"amount": AT_LIMIT, "method": "card", "card_number": c.card},
        key,
        hostile="overflow_advance",
        expect=frozenset({201, 422}),
    )


def campaign_follow_up(c: CustomerModel, balance: str) -> Operation:
    """The wedge reproduction's second request: 0.01 more on the same balance, right after the
    refusal. It must end (accepted: the balance is still below 10^13 by 0.10)."""
    from tools.chaos.driver import Operation

    key = str(uuid.uuid4())
    if balance == "debt":
        body = _sale(c, [_line("1", "0.01")], "0.01", "on_account")
        return Operation(
            "sale",
            "POST",
            "/v1/sales",
            body,
            key,
            hostile="overflow_follow_up",
            expect=frozenset({201, 422}),
        )
    return Operation(
        "advance",
        "POST",
        f"/v1/customers/{c.customer_id}/advances",
        {"amount": "0.01", "method": "card", "card_number": c.card},
        key,
        hostile="overflow_follow_up",
        expect=frozenset({201, 422}),
    )
