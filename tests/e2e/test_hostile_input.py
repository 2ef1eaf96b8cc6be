"""Issue 13's hostile and buggy POS client against the running stack: every finding of "the
input and API edge" answered as the contract says (api.md: Limits, Chains/stores/terminals/keys,
the webhook, report periods), nothing recorded by a refused request, no 5xx, and the keep-alive
connection the client uses stays usable throughout."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack

pytestmark = pytest.mark.e2e

#: "10" in Arabic-Indic, fullwidth, Devanagari and mathematical bold digits
TEN_IN_OTHER_SCRIPTS = ["\u0661\u0660", "\uff11\uff10", "\u0967\u0966", "\U0001d7cf\U0001d7ce"]


def _sale(
    card: str | None, amount: str = "100.00", method: str = "on_account", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lines": [{"name": "Dress", "quantity": "1", "unit_price": amount}],
        "payments": [{"method": method, "amount": amount}],
        **extra,
    }
    if card is not None:
        body["card_number"] = card
    return body


def _final(client: httpx.Client, response: httpx.Response, within: float = 10.0) -> httpx.Response:
    """The final answer of a till request: a `202` is followed to its status_url."""
    deadline = time.monotonic() + within
    while response.status_code == 202:
        assert time.monotonic() < deadline, f"still pending after {within} s: {response.text}"
        time.sleep(0.1)
        response = client.get(response.json()["status_url"])
        if response.json().get("status") == "refused":
            body = response.json()
            return httpx.Response(
                422, json=body, headers={"content-type": "application/problem+json"}
            )
        if response.json().get("status") == "completed":
            return httpx.Response(201, json=response.json())
    return response


def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error", response.text
    return [e["field"] for e in response.json()["errors"]]


# -- limits and digits (findings 2 and 5) ---------------------------------------------------------


def test_amounts_beyond_the_limits_are_422_naming_the_field_and_the_connection_stays_up(
    new_chain: Callable[..., Any],
    idem: Callable[[], dict[str, str]],
) -> None:
    chain = new_chain()
    vip = chain.customer()
    term, admin = chain.terminal, chain.admin
    cid, card = vip["customer_id"], vip["card_number"]
    answers = {
        "quantity 999999999999999": term.post(
            "/v1/sales",
            headers=idem(),
            json={
                "card_number": card,
                "lines": [{"name": "X", "quantity": "999999999999999", "unit_price": "1.00"}],
                "payments": [{"method": "cash", "amount": "1.00"}],
            },
        ),
        "price 999999999999999.99": term.post(
            "/v1/sales", headers=idem(), json=_sale(card, "999999999999999.99", "cash")
        ),
        "two lines summing past 10^12": term.post(
            "/v1/sales",
            headers=idem(),
            json={
                "card_number": card,
                "lines": [{"name": "A", "quantity": "1", "unit_price": "999999999999.99"}] * 2,
                "payments": [{"method": "on_account", "amount": "1999999999999.98"}],
            },
        ),
        "line past 10^12": term.post(
            "/v1/sales",
            headers=idem(),
            json={
                "lines": [{"name": "A", "quantity": "999999.999", "unit_price": "999999999.99"}],
                "payments": [{"method": "cash", "amount": "1.00"}],
            },
        ),
        "credit_limit 999999999999999.99": admin.post(
            "/v1/customers",
            json={"name": "Big", "phone": "1", "credit_limit": "999999999999999.99"},
        ),
        "advance 99999999999999.99": term.post(
            f"/v1/customers/{cid}/advances",
            headers=idem(),
            json={"amount": "99999999999999.99", "method": "cash", "card_number": card},
        ),
        "take_money 99999999999999.99": term.post(
            f"/v1/customers/{cid}/payments",
            headers=idem(),
            json={"kind": "take_money", "amount": "99999999999999.99", "method": "cash"},
        ),
    }
    expected = {
        "quantity 999999999999999": ["lines.0.quantity"],
        "price 999999999999999.99": ["lines.0.unit_price", "payments.0.amount"],
        "two lines summing past 10^12": ["payments.0.amount"],
        "line past 10^12": ["lines.0"],
        "credit_limit 999999999999999.99": ["credit_limit"],
        "advance 99999999999999.99": ["amount"],
        "take_money 99999999999999.99": ["amount"],
    }
    assert {name: _fields(r) for name, r in answers.items()} == expected
    total = term.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": card,
            "lines": [{"name": "A", "quantity": "1", "unit_price": "999999999999.99"}] * 2,
            "payments": [{"method": "cash", "amount": "999999999999.99"}],
        },
    )
    assert _fields(total) == ["lines"]
    for ten in TEN_IN_OTHER_SCRIPTS:
        assert _fields(term.post("/v1/sales", headers=idem(), json=_sale(card, ten, "cash"))) == [
            "lines.0.unit_price",
            "payments.0.amount",
        ]
    # the same clients (keep-alive connections) still work, and nothing was recorded
    after = admin.get(f"/v1/customers/{cid}")
    assert after.status_code == 200
    assert (after.json()["debt"], after.json()["advance"]) == ("0.00", "0.00")
    fine = term.post("/v1/sales", headers=idem(), json=_sale(card, "10.00", "cash"))
    assert fine.status_code == 201, fine.text


def test_a_body_that_is_not_json_utf8_or_is_nested_5000_deep_is_422_on_body(
    new_chain: Callable[..., Any],
    idem: Callable[[], dict[str, str]],
    operator: httpx.Client,
) -> None:
    chain = new_chain()
    headers = {**idem(), "Content-Type": "application/json"}
    for raw in (
        b"{not json",
        b'{"lines": "\xff\xfe"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",
    ):
        got = chain.terminal.post("/v1/sales", headers=headers, content=raw)
        assert _fields(got) == ["body"], raw[:20]
    xyz = operator.post("/v1/chains", json={"name": "X", "currency": "XYZ", "timezone": "UTC"})
    assert _fields(xyz) == ["currency"]
    zone = operator.post(
        "/v1/chains", json={"name": "X", "currency": "EUR", "timezone": "Mars/Olympus"}
    )
    assert _fields(zone) == ["timezone"]


# -- report periods (finding 7) -------------------------------------------------------------------


def test_report_periods_outside_the_century_or_reversed_are_422_never_503(
    new_chain: Callable[..., Any],
) -> None:
    chain = new_chain()
    cid = chain.customer()["customer_id"]
    paths = [
        "/v1/reports/payment-balance",
        "/v1/reports/bonus-statistics",
        f"/v1/customers/{cid}/statement",
    ]
    for path in paths:
        for params, fields in (
            ({"from": "0001-01-01", "to": "2026-01-31"}, ["from"]),
            ({"from": "2026-01-01", "to": "9999-12-31"}, ["to"]),
            ({"from": "2026-02-01", "to": "2026-01-31"}, ["from", "to"]),
        ):
            got = chain.admin.get(path, params=params)
            assert _fields(got) == fields, (path, params, got.text)
        assert (
            chain.admin.get(path, params={"from": "2000-01-01", "to": "2099-12-31"}).status_code
            == 200
        )


# -- occurred_at (finding 6) ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["balance", "per_sale", "per_item"])
def test_money_dated_before_the_sale_it_would_pay_is_refused_on_occurred_at_in_every_mode(
    mode: str,
    new_chain: Callable[..., Any],
    idem: Callable[[], dict[str, str]],
) -> None:
    chain = new_chain(credit_mode=mode)
    vip = chain.customer()
    term, admin = chain.terminal, chain.admin
    cid, card = vip["customer_id"], vip["card_number"]
    sold = term.post("/v1/sales", headers=idem(), json=_sale(card, "100.00"))
    assert sold.status_code == 201, sold.text
    before = (datetime.fromisoformat(sold.json()["sold_at"]) - timedelta(days=1)).isoformat()
    refused = {
        "take_money": term.post(
            f"/v1/customers/{cid}/payments",
            headers=idem(),
            json={
                "kind": "take_money",
                "amount": "101.00",
                "method": "cash",
                "card_number": card,
                "occurred_at": before,
            },
        ),
        "pay_debt": term.post(
            f"/v1/customers/{cid}/payments",
            headers=idem(),
            json={"kind": "pay_debt", "method": "card", "occurred_at": before},
        ),
        "advance": term.post(
            f"/v1/customers/{cid}/advances",
            headers=idem(),
            json={"amount": "5.00", "method": "cash", "card_number": card, "occurred_at": before},
        ),
        "named allocation": term.post(
            f"/v1/customers/{cid}/payments",
            headers=idem(),
            json={
                "kind": "take_money",
                "amount": "10.00",
                "method": "cash",
                "occurred_at": before,
                "allocations": [{"sale_id": sold.json()["sale_id"], "amount": "10.00"}],
            },
        ),
        "return": term.post(
            f"/v1/sales/{sold.json()['sale_id']}/returns",
            headers=idem(),
            json={
                "lines": [{"line_no": 1, "quantity": "1"}],
                "refund": "cash",
                "occurred_at": before,
            },
        ),
    }
    for name, response in refused.items():
        assert _fields(_final(term, response)) == ["occurred_at"], name
    time.sleep(0.5)  # anything wrongly recorded would reach the read models by now
    period = {
        "from": str((datetime.now(UTC) - timedelta(days=3)).date()),
        "to": str((datetime.now(UTC) + timedelta(days=1)).date()),
    }
    statement = admin.get(f"/v1/customers/{cid}/statement", params=period).json()
    assert [e["kind"] for e in statement["entries"]] == ["sale"], statement
    assert statement["closing"]["debt"] == "100.00"
    assert statement["closing"]["advance"] == "0.00"
    # dated after the sale the same money is taken
    after = (datetime.fromisoformat(sold.json()["sold_at"]) + timedelta(seconds=1)).isoformat()
    paid = _final(
        term,
        term.post(
            f"/v1/customers/{cid}/payments",
            headers=idem(),
            json={
                "kind": "take_money",
                "amount": "101.00",
                "method": "cash",
                "card_number": card,
                "occurred_at": after,
            },
        ),
    )
    assert paid.status_code == 201, paid.text
    assert (paid.json()["customer"]["debt"], paid.json()["customer"]["advance"]) == ("0.00", "1.00")


# -- revoke-discount race (finding 8) -------------------------------------------------------------


def test_ten_concurrent_revocations_answer_one_200_and_nine_409_already_revoked(
    new_chain: Callable[..., Any],
    idem: Callable[[], dict[str, str]],
    eventually: Callable[..., Any],
    gateway: str,
) -> None:
    chain = new_chain(overdue_discount="offer")
    vip = chain.customer()
    old = (datetime.now(UTC) - timedelta(days=45)).isoformat()
    sold = chain.terminal.post(
        "/v1/sales",
        headers=idem(),
        json={
            "card_number": vip["card_number"],
            "occurred_at": old,
            "lines": [
                {"name": "Coat", "quantity": "1", "unit_price": "110.00", "discount": "10.00"}
            ],
            "payments": [{"method": "on_account", "amount": "100.00"}],
        },
    )
    assert sold.status_code == 201, sold.text
    eventually(
        lambda: chain.admin.get(f"/v1/customers/{vip['customer_id']}").json()["overdue"], timeout=15
    )
    url = f"/v1/sales/{sold.json()['sale_id']}/revoke-discount"
    admin_key = chain.admin.headers["Authorization"]
    keys = [str(uuid.uuid4()) for _ in range(10)]
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(10)

    def revoke(key: str) -> None:
        with httpx.Client(
            base_url=gateway,
            timeout=30,
            headers={"Authorization": admin_key, "Idempotency-Key": key},
        ) as c:
            start.wait()
            answers[key] = c.post(url)

    threads = [threading.Thread(target=revoke, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(a.status_code for a in answers.values())
    assert statuses == [200] + [409] * 9, {k: a.text for k, a in answers.items()}
    assert {a.json()["code"] for a in answers.values() if a.status_code == 409} == {
        "already_revoked"
    }
    for key in keys:  # each retry gets its own first answer
        again = chain.admin.post(url, headers={"Idempotency-Key": key})
        assert again.status_code == answers[key].status_code
    debt = chain.admin.get(f"/v1/customers/{vip['customer_id']}").json()["debt"]
    assert debt == "110.00"  # the discount came back once


# -- keys (finding 10) ----------------------------------------------------------------------------


def test_replaced_and_revoked_keys_are_refused_and_past_operations_stay_in_reports(
    new_chain: Callable[..., Any],
    idem: Callable[[], dict[str, str]],
    operator: httpx.Client,
    gateway: str,
    eventually: Callable[..., Any],
) -> None:
    chain = new_chain()
    vip = chain.customer()
    sold = chain.terminal.post("/v1/sales", headers=idem(), json=_sale(vip["card_number"], "40.00"))
    assert sold.status_code == 201, sold.text
    old_terminal = chain.terminal.headers["Authorization"]
    replaced = chain.admin.post(f"/v1/terminals/{chain.terminal_id}/key", headers=idem())
    assert replaced.status_code == 201, replaced.text
    new_terminal = f"Bearer {replaced.json()['api_key']}"
    card = f"/v1/cards/{vip['card_number']}"
    with httpx.Client(base_url=gateway, timeout=15) as http:
        assert http.get(card, headers={"Authorization": old_terminal}).status_code == 401
        assert http.get(card, headers={"Authorization": new_terminal}).status_code == 200
        deleted = chain.admin.delete(f"/v1/terminals/{chain.terminal_id}")
        assert deleted.status_code == 200
        assert http.get(card, headers={"Authorization": new_terminal}).status_code == 401
        stores = chain.admin.get("/v1/stores").json()["items"]
        [terminal] = [t for s in stores for t in s["terminals"]]
        assert terminal["revoked_at"] == deleted.json()["revoked_at"]
        # the chain's day may already be tomorrow in UTC terms (Europe/Bucharest after 22:00
        # UTC), and the read model follows the sale asynchronously
        now = datetime.now(UTC).date()
        period = {"from": str(now - timedelta(days=1)), "to": str(now + timedelta(days=1))}
        goods = eventually(
            lambda: (
                chain.admin.get("/v1/reports/payment-balance", params=period).json()["totals"][
                    "goods"
                ]
                == "40.00"
            ),
            timeout=15.0,
        )
        assert goods
        old_admin = chain.admin.headers["Authorization"]
        new_admin = operator.post(f"/v1/chains/{chain.chain_id}/admin-key")
        assert new_admin.status_code == 201
        assert http.get("/v1/settings", headers={"Authorization": old_admin}).status_code == 401
        assert (
            http.get(
                "/v1/settings",
                headers={"Authorization": f"Bearer {new_admin.json()['admin_api_key']}"},
            ).status_code
            == 200
        )
    listed = operator.get("/v1/chains", params={"limit": 500}).json()["items"]
    assert chain.chain_id in {c["chain_id"] for c in listed}


# -- webhook (finding 4) --------------------------------------------------------------------------


def test_a_webhook_may_not_point_at_this_machine_or_any_private_address(
    new_chain: Callable[..., Any],
    stack: Stack,
) -> None:
    chain = new_chain()
    assert stack.env.get("NOTIFIER_WEBHOOK_ALLOW_PRIVATE") in (None, "", "false")
    for url in (
        f"http://127.0.0.1:{stack.ports.credit}/internal",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/h",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "http://93.184.215.14/hook",
    ):
        got = chain.admin.put("/v1/webhook", json={"url": url, "secret": "s" * 32})
        assert _fields(got) == ["url"], url
    bad_secret = chain.admin.put(
        "/v1/webhook", json={"url": "https://127.0.0.1/x", "secret": "whsec_" + "!" * 40}
    )
    assert bad_secret.status_code == 422
