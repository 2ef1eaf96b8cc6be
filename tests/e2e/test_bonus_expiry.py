"""Bonus expiry (chain setting `bonus_expiry_days`) on the real system, seen through the gateway.

Loyalty's expiry job runs every second in the e2e stack. An accrual back-dated 40 days with a
30-day expiry must be recorded as expired, dated when it expired (day 30): the balance drops,
bonus statistics show `expired`, the statement shows the movement. Accruals made before the
setting was switched on expire too; a recent accrual does not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


def _sale(chain: Any, idem: Any, card: str, cash: str, days_ago: int) -> dict[str, Any]:
    occurred_at = datetime.now(UTC) - timedelta(days=days_ago)
    response = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "occurred_at": occurred_at.isoformat(),
            "lines": [
                {
                    "sku": "BOOT-1",
                    "barcode": "4820000000062",
                    "name": "Boots",
                    "quantity": "1",
                    "unit_price": cash,
                    "discount": "0.00",
                }
            ],
            "payments": [{"method": "cash", "amount": cash}],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _expired_entries(chain: Any, customer_id: str) -> list[dict[str, Any]]:
    statement = chain.admin.get(f"/v1/customers/{customer_id}/statement").json()
    return [e for e in statement["entries"] if e["kind"] == "bonus_expired"]


def _check_expired(
    chain: Any, customer_id: str, *, expired: str, balance: str, eventually: Any
) -> dict[str, Any]:
    """Wait for the expiry in every public read; return the statement's expiry entry."""
    eventually(
        lambda: chain.admin.get(f"/v1/customers/{customer_id}").json()["bonus_balance"] == balance,
        timeout=10.0,
    )
    entries = eventually(lambda: _expired_entries(chain, customer_id), timeout=5.0)
    assert len(entries) == 1
    assert entries[0]["bonus_change"] == f"-{expired}"

    def statistics() -> Any:
        stats = chain.admin.get("/v1/reports/bonus-statistics").json()
        return stats if stats["expired"] == expired else None

    stats = eventually(statistics, timeout=5.0)
    assert stats["outstanding"] == balance
    row = next(r for r in stats["by_customer"] if r["customer_id"] == customer_id)
    assert (row["expired"], row["balance"]) == (expired, balance)
    assert [r["expired"] for r in stats["by_store"]] == [expired]
    return dict(entries[0])


def test_an_accrual_older_than_the_expiry_days_expires_dated_when_it_expired(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(bonus_expiry_days=30)
    customer = chain.customer(vip=True)
    cid = customer["customer_id"]

    old = _sale(chain, idem, customer["card_number"], "100.00", days_ago=40)
    assert old["bonus_accrued"] == "10.00"
    recent = _sale(chain, idem, customer["card_number"], "50.00", days_ago=1)
    assert recent["bonus_accrued"] == "5.00"

    entry = _check_expired(chain, cid, expired="10.00", balance="5.00", eventually=eventually)
    # in time order the expiry (day -10) comes before the recent accrual (day -1)
    assert entry["bonus_balance"] == "0.00"
    statement = chain.admin.get(f"/v1/customers/{cid}/statement").json()
    assert [
        (e["kind"], e["bonus_balance"])
        for e in statement["entries"]
        if e["kind"].startswith("bonus_")
    ] == [
        ("bonus_accrued", "10.00"),
        ("bonus_expired", "0.00"),
        ("bonus_accrued", "5.00"),
    ]
    expired_at = datetime.fromisoformat(entry["at"])
    due = datetime.fromisoformat(old["sold_at"]) + timedelta(days=30)
    assert abs(expired_at - due) < timedelta(minutes=1)

    # the expired bonus can't be spent; the recent one can
    too_much = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": customer["card_number"],
            "lines": [
                {
                    "sku": "S",
                    "barcode": "1",
                    "name": "Socks",
                    "quantity": "1",
                    "unit_price": "6.00",
                    "discount": "0.00",
                }
            ],
            "payments": [{"method": "bonus", "amount": "6.00"}],
        },
    )
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["code"] == "insufficient_bonus"


def test_accruals_made_before_expiry_was_switched_on_expire_too(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain()
    customer = chain.customer(vip=True)
    cid = customer["customer_id"]
    _sale(chain, idem, customer["card_number"], "80.00", days_ago=40)
    eventually(
        lambda: chain.admin.get(f"/v1/customers/{cid}").json()["bonus_balance"] == "8.00",
        timeout=5.0,
    )

    switched = chain.admin.put("/v1/settings", json={"bonus_expiry_days": 30})
    assert switched.status_code == 200, switched.text
    assert switched.json()["bonus_expiry_days"] == 30

    entry = _check_expired(chain, cid, expired="8.00", balance="0.00", eventually=eventually)
    assert entry["bonus_balance"] == "0.00"
    statement = chain.admin.get(f"/v1/customers/{cid}/statement").json()
    assert statement["closing"]["bonus_balance"] == "0.00"


def test_an_expired_accrual_is_not_taken_back_again_by_a_return_or_a_cancellation(
    new_chain: Callable[..., Any], idem: Any, eventually: Any
) -> None:
    chain = new_chain(bonus_expiry_days=30)
    customer = chain.customer(vip=True)
    cid = customer["customer_id"]
    old = _sale(chain, idem, customer["card_number"], "200.00", days_ago=40)
    assert old["bonus_accrued"] == "20.00"
    _sale(chain, idem, customer["card_number"], "50.00", days_ago=1)
    _check_expired(chain, cid, expired="20.00", balance="5.00", eventually=eventually)

    # the 20.00 left the balance when it expired: nothing of it is left to take back
    returned = chain.terminal.post(
        f"/v1/sales/{old['sale_id']}/returns",
        headers=idem(),
        json={"lines": [{"line_no": 1, "quantity": "0.5"}], "refund": "cash"},
    )
    assert returned.status_code == 201, returned.text
    assert returned.json()["bonus_reversed"] == "0.00"
    assert returned.json()["customer"]["bonus_balance"] == "5.00"
    cancelled = chain.admin.post(
        f"/v1/payments/{old['payments'][0]['payment_id']}/bonus-type",
        json={"bonus_type": "none"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["bonus_cancelled"] == "0.00"
    assert cancelled.json()["customer"]["bonus_balance"] == "5.00"

    stats = chain.admin.get("/v1/reports/bonus-statistics").json()
    assert (stats["expired"], stats["reversed"], stats["cancelled"]) == ("20.00", "0.00", "0.00")
    eventually(
        lambda: chain.admin.get(f"/v1/customers/{cid}").json()["bonus_balance"] == "5.00",
        timeout=5.0,
    )
