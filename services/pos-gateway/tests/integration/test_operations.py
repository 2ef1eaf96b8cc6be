"""Payments, advances, refunds, returns, bonus-type and revoke-discount: same pattern as sales."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.credit.v1 import (
    AdvanceRecorded,
    CustomerBalances,
    DebtPaymentRecorded,
    DiscountRevoked,
    OperationRefused,
    RefundRecorded,
    ReturnedLine,
    ReturnRecorded,
    RevokedDiscountLine,
)
from contracts.enums import OperationKind, RefusalCode
from contracts.loyalty.v1 import PaymentBonusCancelled

pytestmark = pytest.mark.integration

D = Decimal
BAL = CustomerBalances(debt=D("30.00"), advance=D("0.00"), bonus_balance=D("7.00"))
SALE = {
    "card_number": "CARD-1",
    "lines": [
        {
            "sku": "D1",
            "barcode": "4820000000017",
            "name": "Dress",
            "quantity": "2",
            "unit_price": "30.00",
        },
    ],
    "payments": [{"method": "on_account", "amount": "60.00"}],
}


async def _last_command(harness: Any, topic: str = "pos.commands.v1") -> Any:
    return [env for t, env in await harness.outbox() if t == topic][-1]


async def _completed_sale(harness: Any, credit: Any, terminal: str) -> dict[str, Any]:
    await harness.client.post("/v1/sales", json=SALE, headers=harness.till(terminal))
    cmd = (await _last_command(harness)).payload
    await harness.deliver("credit.events.v1", credit.sale_completed(cmd, debt="60.00"))
    return dict(cmd)


def _at_the_till(command: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """Where credit says a till command's operation happened: its chain, store and terminal."""
    return {
        "chain_id": command["chain_id"],
        "customer_id": customer_id,
        "store_id": command["store_id"],
        "terminal_id": command["terminal_id"],
    }


async def _answered_once_credit_sent(
    harness: Any, url: str, body: dict[str, Any], headers: dict[str, str], outcome: Any
) -> Any:
    """Credit's `outcome` arrives; the till's retry (same key) is answered 201 with it."""
    await harness.deliver("credit.events.v1", outcome)
    answer = await harness.client.post(url, json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _now() -> datetime:
    return datetime.now(UTC)


def _discount_revoked(sale: dict[str, Any], customer_id: Any) -> DiscountRevoked:
    """Credit's answer to a requested revocation: the 10.00 discount of line 1 taken back."""
    return DiscountRevoked(
        sale_id=sale["sale_id"],
        chain_id=sale["chain_id"],
        customer_id=customer_id,
        amount=D("10.00"),
        lines=[RevokedDiscountLine(line_no=1, amount=D("10.00"))],
        trigger="requested",
        revoked_at=_now(),
        customer_balances=BAL,
        lines_changed=[],
    )


async def _not_overdue(harness: Any, credit: Any, sale: dict[str, Any]) -> None:
    """Credit's answer to a requested revocation of a sale that is not overdue: refused."""
    refusal = credit.refused(
        sale["sale_id"], sale["chain_id"], OperationKind.REVOKE_DISCOUNT, RefusalCode.NOT_OVERDUE
    )
    await harness.deliver("credit.events.v1", refusal)


async def test_take_money_sends_record_debt_payment_and_answers_the_outcome(
    harness: Any, credit: Any
) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    headers = harness.till(terminal, "pay-1")
    body = {
        "kind": "take_money",
        "amount": "30.00",
        "method": "cash",
        "card_number": "CARD-1",
        "allocations": [{"sale_id": sale["sale_id"], "amount": "30.00"}],
    }
    first = await harness.client.post(f"/v1/customers/{cid}/payments", json=body, headers=headers)
    assert first.status_code == 202
    cmd = await _last_command(harness)
    assert cmd.type == "credit.RecordDebtPayment"
    assert cmd.key == cid
    assert cmd.payload["allocations"] == [
        {"sale_id": sale["sale_id"], "line_no": None, "amount": "30.00"}
    ]
    payment_id = cmd.payload["payment_id"]
    assert first.json()["status_url"] == f"/v1/operations/debt_payment/{payment_id}"
    url = f"/v1/customers/{cid}/payments"
    again = await _answered_once_credit_sent(
        harness,
        url,
        body,
        headers,
        DebtPaymentRecorded(
            payment_id=payment_id,
            **_at_the_till(sale, cid),
            kind="take_money",
            method="cash",
            amount=D("30.00"),
            allocated=[{"sale_id": sale["sale_id"], "line_no": None, "amount": D("30.00")}],
            advance_added=D("0.00"),
            bonus_accrued=D("3.00"),
            occurred_at=_now(),
            customer_balances=BAL,
            lines_changed=[],
        ),
    )
    assert again == {
        "payment_id": payment_id,
        "amount": "30.00",
        "allocated": [{"sale_id": sale["sale_id"], "line_no": None, "amount": "30.00"}],
        "advance_added": "0.00",
        "bonus_accrued": "3.00",
        "customer": {"debt": "30.00", "advance": "0.00", "bonus_balance": "7.00"},
    }
    status = await harness.client.get(
        f"/v1/operations/debt_payment/{payment_id}", headers=harness.auth(admin)
    )
    assert status.json()["status"] == "completed"


async def test_pay_debt_takes_no_amount_and_no_debt_is_refused(harness: Any, credit: Any) -> None:
    _, terminal, cid = await harness.setup_with_customer()
    url = f"/v1/customers/{cid}/payments"
    with_amount = await harness.client.post(
        url,
        json={"kind": "pay_debt", "amount": "1.00", "method": "cash"},
        headers=harness.till(terminal),
    )
    assert with_amount.status_code == 422
    assert with_amount.json()["errors"][0]["field"] == "amount"
    no_amount = await harness.client.post(
        url, json={"kind": "take_money", "method": "cash"}, headers=harness.till(terminal)
    )
    assert no_amount.json()["errors"][0]["field"] == "amount"
    headers = harness.till(terminal, "pay-debt")
    await harness.client.post(url, json={"kind": "pay_debt", "method": "cash"}, headers=headers)
    cmd = await _last_command(harness)
    assert cmd.payload["amount"] is None
    await harness.deliver(
        "credit.events.v1",
        credit.refused(
            cmd.payload["payment_id"],
            cmd.payload["chain_id"],
            OperationKind.DEBT_PAYMENT,
            RefusalCode.NO_DEBT,
        ),
    )
    refused = await harness.client.post(
        url, json={"kind": "pay_debt", "method": "cash"}, headers=headers
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "no_debt"


async def test_an_advance_is_recorded_and_answered(harness: Any, credit: Any) -> None:
    _, terminal, cid = await harness.setup_with_customer()
    headers = harness.till(terminal, "adv")
    url = f"/v1/customers/{cid}/advances"
    body = {"amount": "50.00", "method": "card", "card_number": "CARD-1"}
    await harness.client.post(url, json=body, headers=headers)
    cmd = await _last_command(harness)
    assert cmd.type == "credit.RecordAdvance"
    p = cmd.payload
    answer = await _answered_once_credit_sent(
        harness,
        url,
        body,
        headers,
        AdvanceRecorded(
            payment_id=p["payment_id"],
            **_at_the_till(p, cid),
            method="card",
            amount=D("50.00"),
            applied_to_debt=D("0.00"),
            allocated=[],
            advance_added=D("50.00"),
            bonus_accrued=D("0.00"),
            occurred_at=_now(),
            customer_balances=CustomerBalances(debt=D(0), advance=D(50), bonus_balance=D(0)),
            lines_changed=[],
        ),
    )
    assert answer == {
        "payment_id": p["payment_id"],
        "amount": "50.00",
        "applied_to_debt": "0.00",
        "advance_added": "50.00",
        "bonus_accrued": "0.00",
        "customer": {"debt": "0.00", "advance": "50.00", "bonus_balance": "0.00"},
    }


async def test_a_refund_needs_the_customers_own_card(harness: Any, credit: Any) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    await harness.customer(admin, name="Other", phone="2", card_number="CARD-2")
    url = f"/v1/customers/{cid}/refunds"
    before = await harness.snapshot()
    no_card = await harness.client.post(
        url, json={"amount": "5.00", "method": "cash"}, headers=harness.till(terminal)
    )
    assert no_card.json()["code"] == "card_required"
    other_card = await harness.client.post(
        url,
        json={"amount": "5.00", "method": "cash", "card_number": "CARD-2"},
        headers=harness.till(terminal),
    )
    assert other_card.json()["code"] == "card_not_found"
    assert await harness.snapshot() == before
    headers = harness.till(terminal, "refund")
    body = {"amount": "5.00", "method": "cash", "card_number": "CARD-1"}
    await harness.client.post(url, json=body, headers=headers)
    p = (await _last_command(harness)).payload
    answer = await _answered_once_credit_sent(
        harness,
        url,
        body,
        headers,
        RefundRecorded(
            refund_id=p["refund_id"],
            **_at_the_till(p, cid),
            method="cash",
            amount=D("5.00"),
            occurred_at=_now(),
            customer_balances=CustomerBalances(debt=D(0), advance=D(45), bonus_balance=D(0)),
        ),
    )
    assert answer == {
        "refund_id": p["refund_id"],
        "amount": "5.00",
        "customer": {"debt": "0.00", "advance": "45.00", "bonus_balance": "0.00"},
    }


async def test_a_return_is_checked_against_what_the_gateway_knows(
    harness: Any, credit: Any
) -> None:
    _, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    url = f"/v1/sales/{sale['sale_id']}/returns"
    too_many = await harness.client.post(
        url,
        json={"lines": [{"line_no": 1, "quantity": "3"}], "refund": "cash"},
        headers=harness.till(terminal),
    )
    assert too_many.json()["code"] == "return_exceeds_sold"
    no_line = await harness.client.post(
        url,
        json={"lines": [{"line_no": 9, "quantity": "1"}], "refund": "cash"},
        headers=harness.till(terminal),
    )
    assert no_line.json()["errors"][0]["field"] == "lines.0.line_no"
    missing = await harness.client.post(
        f"/v1/sales/{uuid.uuid4()}/returns",
        json={"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash"},
        headers=harness.till(terminal),
    )
    assert missing.status_code == 404
    headers = harness.till(terminal, "ret")
    body = {"lines": [{"line_no": 1, "quantity": "1"}], "refund": "advance"}
    await harness.client.post(url, json=body, headers=headers)
    cmd = await _last_command(harness)
    assert cmd.type == "credit.RecordReturn"
    p = cmd.payload
    event = ReturnRecorded(
        return_id=p["return_id"],
        sale_id=sale["sale_id"],
        **_at_the_till(p, cid),
        refund="advance",
        lines=[
            ReturnedLine(
                line_no=1,
                sku="D1",
                barcode="4820000000017",
                name="Dress",
                quantity=D("1"),
                value=D("30.00"),
                debt_cancelled=D("30.00"),
            )
        ],
        value=D("30.00"),
        debt_cancelled=D("30.00"),
        bonus_restored=D("0.00"),
        refunded=D("0.00"),
        applied_to_debt=D("0.00"),
        allocated=[],
        advance_added=D("0.00"),
        bonus_reversed=D("0.00"),
        occurred_at=_now(),
        customer_balances=BAL,
        lines_changed=[],
    )
    sent = await harness.deliver("credit.events.v1", event)
    await harness.deliver_envelope("credit.events.v1", sent)  # the same message delivered again
    # and a republished duplicate
    answer = await _answered_once_credit_sent(harness, url, body, headers, event.model_copy())
    assert answer["value"] == "30.00"
    assert answer["debt_cancelled"] == "30.00"
    read = (
        await harness.client.get(f"/v1/sales/{sale['sale_id']}", headers=harness.auth(terminal))
    ).json()
    assert read["lines"][0]["returned_quantity"] == "1"
    rest = await harness.client.post(
        url,
        json={"lines": [{"line_no": 1, "quantity": "2"}], "refund": "cash"},
        headers=harness.till(terminal),
    )
    assert rest.json()["code"] == "return_exceeds_sold"


async def test_cancelling_a_payments_bonus_asks_loyalty_and_answers_the_same_twice(
    harness: Any, credit: Any
) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    # reporting's read model lags (debt 4.00); the answer takes credit's own debt and advance
    harness.internal.balances[cid] = {
        "debt": "4.00",
        "advance": "3.00",
        "bonus_balance": "7.00",
        "overdue": False,
    }
    harness.internal.credit[cid] = {"customer_id": cid, "debt": "10.00", "advance": "0.00"}
    await harness.client.post(
        "/v1/sales",
        json={**SALE, "payments": [{"method": "cash", "amount": "60.00"}]},
        headers=harness.till(terminal),
    )
    payment_id = (await _last_command(harness)).payload["payments"][0]["payment_id"]
    url = f"/v1/payments/{payment_id}/bonus-type"
    by_terminal = await harness.client.post(
        url, json={"bonus_type": "none"}, headers=harness.auth(terminal)
    )
    assert by_terminal.status_code == 403
    first = await harness.client.post(url, json={"bonus_type": "none"}, headers=harness.auth(admin))
    assert first.status_code == 202
    cmd = await _last_command(harness, "loyalty.commands.v1")
    assert cmd.type == "loyalty.CancelPaymentBonus"
    assert cmd.key == cid
    await harness.deliver(
        "loyalty.events.v1",
        PaymentBonusCancelled(
            payment_id=payment_id,
            chain_id=cmd.payload["chain_id"],
            customer_id=cid,
            cancelled=D("6.00"),
            balance_after=D("1.00"),
            already=False,
            cancelled_at=_now(),
        ),
    )
    second = await harness.client.post(
        url, json={"bonus_type": "none"}, headers=harness.auth(admin)
    )
    third = await harness.client.post(url, json={"bonus_type": "none"}, headers=harness.auth(admin))
    assert second.status_code == third.status_code == 200
    assert (
        second.json()
        == third.json()
        == {
            "payment_id": payment_id,
            "bonus_cancelled": "6.00",
            "customer": {"debt": "10.00", "advance": "0.00", "bonus_balance": "1.00"},
        }
    )
    types = [env.type for t, env in await harness.outbox() if t == "loyalty.commands.v1"]
    assert types == ["loyalty.CancelPaymentBonus"]
    unknown = await harness.client.post(
        f"/v1/payments/{uuid.uuid4()}/bonus-type",
        json={"bonus_type": "none"},
        headers=harness.auth(admin),
    )
    assert unknown.status_code == 404


async def test_a_discount_is_revoked_once_then_already_revoked(harness: Any, credit: Any) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    url = f"/v1/sales/{sale['sale_id']}/revoke-discount"
    by_terminal = await harness.client.post(url, headers=harness.auth(terminal))
    assert by_terminal.status_code == 403
    first = await harness.client.post(url, headers=harness.auth(admin))
    assert first.status_code == 202
    cmd = await _last_command(harness)
    assert cmd.type == "credit.RevokeDiscount"
    await _not_overdue(harness, credit, sale)
    not_overdue = await harness.client.post(url, headers=harness.auth(admin))
    assert not_overdue.status_code == 202  # asked again: it may be overdue by now
    await harness.deliver("credit.events.v1", _discount_revoked(sale, cid))
    status = await harness.client.get(
        f"/v1/operations/revoke_discount/{sale['sale_id']}", headers=harness.auth(admin)
    )
    assert status.json() == {
        "status": "completed",
        "sale_id": sale["sale_id"],
        "discount_revoked": "10.00",
        "customer": {"debt": "30.00", "advance": "0.00", "bonus_balance": "7.00"},
    }
    again = await harness.client.post(url, headers=harness.auth(admin))
    assert again.status_code == 409
    assert again.json()["code"] == "already_revoked"


async def test_a_not_overdue_refusal_is_answered_422(harness: Any, credit: Any) -> None:
    admin, terminal, _ = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    url = f"/v1/sales/{sale['sale_id']}/revoke-discount"
    headers = {**harness.auth(admin), "Idempotency-Key": "revoke-1"}
    await harness.client.post(url, headers=headers)
    await _not_overdue(harness, credit, sale)
    answer = await harness.client.post(url, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["code"] == "not_overdue"


async def test_a_revocation_that_failed_is_answered_422_and_the_next_request_asks_again(
    harness: Any, credit: Any
) -> None:
    """Credit refuses a requested revocation whose loyalty leg failed for good as
    `operation_failed` naming the sale: the waiting request gets it, and the next request of
    the sale sends a new command (credit records each request's attempt under its own id)."""
    admin, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    url = f"/v1/sales/{sale['sale_id']}/revoke-discount"
    headers = {**harness.auth(admin), "Idempotency-Key": "revoke-failed"}
    assert (await harness.client.post(url, headers=headers)).status_code == 202
    failed = credit.refused(
        sale["sale_id"],
        sale["chain_id"],
        OperationKind.REVOKE_DISCOUNT,
        RefusalCode.OPERATION_FAILED,
    )
    await harness.deliver("credit.events.v1", failed)
    answer = await harness.client.post(url, headers=headers)
    assert answer.status_code == 422
    assert (answer.json()["code"], answer.json()["sale_id"]) == (
        "operation_failed",
        sale["sale_id"],
    )

    again = await harness.client.post(url, headers=harness.auth(admin))
    assert again.status_code == 202
    commands = [env for t, env in await harness.outbox() if env.type == "credit.RevokeDiscount"]
    assert len(commands) == 2 and commands[0].message_id != commands[1].message_id
    await harness.deliver("credit.events.v1", _discount_revoked(sale, cid))
    status = await harness.client.get(
        f"/v1/operations/revoke_discount/{sale['sale_id']}", headers=harness.auth(admin)
    )
    assert status.json()["status"] == "completed"


async def test_tasks_are_proxied_to_the_notifier(harness: Any) -> None:
    admin, _ = await harness.setup()
    tasks = await harness.client.get("/v1/tasks?status=open", headers=harness.auth(admin))
    assert tasks.json() == {"items": [], "next": None}
    missing = await harness.client.post(
        f"/v1/tasks/{uuid.uuid4()}/complete",
        json={"outcome": "promised", "note": "Friday"},
        headers=harness.auth(admin),
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    bad = await harness.client.post(
        f"/v1/tasks/{uuid.uuid4()}/complete", json={"outcome": "maybe"}, headers=harness.auth(admin)
    )
    assert bad.status_code == 422


async def test_ten_concurrent_revocations_get_one_200_and_nine_409_already_revoked(
    harness: Any, credit: Any
) -> None:
    admin, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    harness.gateway.settings.sale_wait_seconds = 10.0  # every request waits for the outcome
    url = f"/v1/sales/{sale['sale_id']}/revoke-discount"
    keys = [f"revoke-{i}" for i in range(10)]
    requests = [
        asyncio.create_task(
            harness.client.post(url, headers={**harness.auth(admin), "Idempotency-Key": key})
        )
        for key in keys
    ]
    for _ in range(200):  # the first request's command, then let the others find it in flight
        if [env for t, env in await harness.outbox() if env.type == "credit.RevokeDiscount"]:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    await harness.deliver("credit.events.v1", _discount_revoked(sale, cid))
    answers = await asyncio.gather(*requests)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 9, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"already_revoked"}
    commands = [env for t, env in await harness.outbox() if env.type == "credit.RevokeDiscount"]
    assert len(commands) == 1
    # each retry with its key gets its own first answer again
    retries = [
        await harness.client.post(url, headers={**harness.auth(admin), "Idempotency-Key": key})
        for key in keys
    ]
    assert [r.status_code for r in retries] == [a.status_code for a in answers]
    assert [r.json() for r in retries] == [a.json() for a in answers]


async def test_a_return_or_an_allocated_payment_dated_before_its_sale_is_refused_naming_occurred_at(
    harness: Any, credit: Any
) -> None:
    _, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    before = (datetime.fromisoformat(sale["sold_at"]) - timedelta(minutes=1)).isoformat()
    recorded = await harness.snapshot()
    returned = await harness.client.post(
        f"/v1/sales/{sale['sale_id']}/returns",
        headers=harness.till(terminal),
        json={"lines": [{"line_no": 1, "quantity": "1"}], "refund": "cash", "occurred_at": before},
    )
    paid = await harness.client.post(
        f"/v1/customers/{cid}/payments",
        headers=harness.till(terminal),
        json={
            "kind": "take_money",
            "amount": "10.00",
            "method": "cash",
            "occurred_at": before,
            "allocations": [{"sale_id": sale["sale_id"], "amount": "10.00"}],
        },
    )
    for refused in (returned, paid):
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "validation_error"
        assert [e["field"] for e in refused.json()["errors"]] == ["occurred_at"]
    assert await harness.snapshot() == recorded  # nothing recorded, nothing sent


async def test_a_pos_named_occurred_at_is_flagged_on_the_command_and_a_clock_time_is_not(
    harness: Any, credit: Any
) -> None:
    _, terminal, cid = await harness.setup_with_customer()
    await _completed_sale(harness, credit, terminal)
    offline = _now().isoformat()
    for body in (
        {"amount": "5.00", "method": "cash"},
        {"amount": "5.00", "method": "cash", "occurred_at": offline},
    ):
        await harness.client.post(
            f"/v1/customers/{cid}/advances", json=body, headers=harness.till(terminal)
        )
    flags = [
        env.payload["occurred_at_given"]
        for env in await harness.commands()
        if env.type == "credit.RecordAdvance"
    ]
    assert flags == [False, True]


async def test_a_validation_error_found_by_credit_is_answered_naming_its_field(
    harness: Any, credit: Any
) -> None:
    _, terminal, cid = await harness.setup_with_customer()
    sale = await _completed_sale(harness, credit, terminal)
    headers = harness.till(terminal, "pay-before-sale")
    body = {
        "kind": "take_money",
        "amount": "101.00",
        "method": "cash",
        "occurred_at": _now().isoformat(),
    }
    first = await harness.client.post(f"/v1/customers/{cid}/payments", json=body, headers=headers)
    assert first.status_code == 202
    payment_id = (await _last_command(harness)).payload["payment_id"]
    detail = "occurred_at is before a sale that it would pay"
    await harness.deliver(
        "credit.events.v1",
        OperationRefused(
            operation_id=payment_id,
            operation_kind=OperationKind.DEBT_PAYMENT,
            chain_id=sale["chain_id"],
            customer_id=cid,
            code=RefusalCode.VALIDATION_ERROR,
            detail=detail,
            field="occurred_at",
            refused_at=_now(),
        ),
    )
    again = await harness.client.post(f"/v1/customers/{cid}/payments", json=body, headers=headers)
    assert again.status_code == 422
    assert again.json()["code"] == "validation_error"
    assert again.json()["errors"] == [{"field": "occurred_at", "message": detail}]
    status = await harness.client.get(
        f"/v1/operations/debt_payment/{payment_id}", headers=harness.auth(terminal)
    )
    assert status.json()["errors"] == [{"field": "occurred_at", "message": detail}]


async def test_an_outcome_delivered_again_changes_nothing(harness: Any, credit: Any) -> None:
    """The gateway's consumer keeps no inbox (`Consumer.inbox`): a message Kafka delivers again
    runs its handler again, and every handler stores an outcome only on an operation still
    pending. The same outcome twice, then a refusal of the completed sale: the operation stays
    as first stored, and the till's retry gets the first answer."""
    _, terminal, _ = await harness.setup_with_customer()
    headers = harness.till(terminal, "sale-once")
    await harness.client.post("/v1/sales", json=SALE, headers=headers)
    cmd = (await _last_command(harness)).payload
    sent = await harness.deliver("credit.events.v1", credit.sale_completed(cmd, debt="60.00"))

    async def stored() -> Any:
        async with harness.engine.connect() as conn:
            return (
                await conn.execute(
                    sa.text(
                        "SELECT status, outcome, code, completed_at FROM operations"
                        " WHERE operation_id = :o"
                    ),
                    {"o": cmd["sale_id"]},
                )
            ).one()

    first = await stored()
    assert first.status == "completed"
    await harness.deliver_envelope("credit.events.v1", sent)
    await harness.deliver(
        "credit.events.v1",
        credit.refused(
            cmd["sale_id"], cmd["chain_id"], OperationKind.SALE, RefusalCode.CREDIT_LIMIT_EXCEEDED
        ),
    )
    assert await stored() == first
    retry = await harness.client.post("/v1/sales", json=SALE, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["customer"]["debt"] == "60.00"
