"""Read your writes: after a `201`, the customer's reads through the gateway reflect it within 1 s.

api.md ("Timing") promises 1 s under normal load. The test measures it for a series of sales
(on account, so every one changes the debt the back office reads, and in cash, so every one
changes the bonus balance), polling `GET /v1/customers/{id}` every 10 ms from the moment the
`201` arrives. The bound is the documented one; the machine is shared, so the measured p50 and
maximum are printed for the record rather than asserted tighter.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

SALES = 20
BOUND_SECONDS = 1.0
POLL_SECONDS = 0.01


def test_every_sale_is_visible_in_the_customer_read_within_one_second(
    new_chain: Callable[..., Any], idem: Any
) -> None:
    chain = new_chain()
    customer = chain.customer()
    cid, card = customer["customer_id"], customer["card_number"]
    lags: list[float] = []
    debt = bonus = Decimal("0.00")

    for i in range(SALES):
        on_account = i % 2 == 0
        price = Decimal("10.00") + i
        response = chain.terminal.post(
            "/v1/sales",
            headers=idem(),
            json={
                "card_number": card,
                "lines": [
                    {
                        "sku": f"SKU{i}",
                        "barcode": "4820000000017",
                        "name": "Item",
                        "quantity": "1",
                        "unit_price": f"{price:.2f}",
                        "discount": "0.00",
                    }
                ],
                "payments": [
                    {"method": "on_account" if on_account else "cash", "amount": f"{price:.2f}"}
                ],
            },
        )
        answered = time.monotonic()
        assert response.status_code == 201, response.text
        if on_account:
            debt += price
        else:
            bonus += (price / 10).quantize(Decimal("0.01"))
        expected = (f"{debt:.2f}", f"{bonus:.2f}")
        assert (
            response.json()["customer"]["debt"],
            response.json()["customer"]["bonus_balance"],
        ) == expected
        while True:
            seen = chain.admin.get(f"/v1/customers/{cid}").json()
            lag = time.monotonic() - answered
            if (seen["debt"], seen["bonus_balance"]) == expected:
                break
            assert lag <= BOUND_SECONDS, f"sale {i}: {seen} after {lag:.3f}s, expected {expected}"
            time.sleep(POLL_SECONDS)
        lags.append(lag)

    p50, worst = statistics.median(lags), max(lags)
    print(
        f"\nread-your-writes over {SALES} sales: p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )
    assert worst <= BOUND_SECONDS
