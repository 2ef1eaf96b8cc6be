"""POST /v1/sales and GET /v1/sales/{id}: static checks, the command, the outcome."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.enums import OperationKind, RefusalCode
from pos_gateway.entrypoints.api import examples

pytestmark = pytest.mark.integration

#: the documented example's sale (a dress, and shoes less 10.00; 100.00 on account) with the
#: card of `harness.customer`
ON_ACCOUNT_SALE = {**examples.SALE_REQUEST, "card_number": "CARD-1"}


async def _commands(harness: Any) -> list[Any]:
    return [env for topic, env in await harness.outbox() if topic == "pos.commands.v1"]


async def test_a_sale_writes_its_request_row_and_one_record_sale_command(
    harness: Any, credit: Any
) -> None:
    admin, terminal = await harness.setup()
    customer = await harness.customer(admin)
    before = len(await harness.outbox())
    response = await harness.client.post(
        "/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.till(terminal)
    )
    assert response.status_code == 202
    sale_id = response.json()["sale_id"]
    assert response.json() == {
        "sale_id": sale_id,
        "status": "pending",
        "status_url": f"/v1/sales/{sale_id}",
    }
    new = (await harness.outbox())[before:]
    assert len(new) == 1
    topic, env = new[0]
    assert topic == "pos.commands.v1"
    assert env.type == "credit.RecordSale"
    assert env.key == customer["customer_id"]
    cmd = env.payload
    assert cmd["sale_id"] == sale_id
    assert [(ln["line_no"], ln["amount"]) for ln in cmd["lines"]] == [(1, "60.00"), (2, "40.00")]
    assert cmd["total"] == "100.00"
    assert cmd["customer"]["vip"] is True
    assert cmd["settings"]["credit_mode"] == "balance"
    assert all(uuid.UUID(p["payment_id"]) for p in cmd["payments"])
    pending = await harness.client.get(f"/v1/sales/{sale_id}", headers=harness.auth(terminal))
    assert pending.json() == {"sale_id": sale_id, "status": "pending"}


async def test_the_outcome_completes_the_waiting_request_with_201(
    harness: Any, credit: Any
) -> None:
    admin, terminal, _ = await harness.setup_with_customer()
    harness.gateway.settings.sale_wait_seconds = 5.0
    request, command = await harness.sale_waiting(ON_ACCOUNT_SALE, harness.till(terminal))
    cmd = command.payload
    await harness.deliver("credit.events.v1", credit.sale_completed(cmd, debt="100.00"))
    response = await request
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "sale_id": cmd["sale_id"],
        "status": "completed",
        "sold_at": body["sold_at"],
        "total": "100.00",
        "paid": "0.00",
        "on_account": "100.00",
        "advance_applied": "0.00",
        "due_date": "2026-12-31",
        "bonus_accrued": "0.00",
        "bonus_spent": "0.00",
        "payments": [],
        "customer": {"debt": "100.00", "advance": "0.00", "bonus_balance": "0.00"},
    }
    read = (
        await harness.client.get(f"/v1/sales/{cmd['sale_id']}", headers=harness.auth(admin))
    ).json()
    assert read["status"] == "completed"
    assert read["lines"] == examples.OPERATION_EXAMPLES["getSale"]["response"]["lines"]


async def test_a_retry_of_a_202_sale_gets_the_final_outcome_once_known(
    harness: Any, credit: Any
) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    headers = harness.till(terminal, "sale-key-1")
    first = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
    assert first.status_code == 202
    again = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
    assert again.status_code == 202
    assert again.json()["sale_id"] == first.json()["sale_id"]
    cmd = (await _commands(harness))[0].payload
    await harness.deliver("credit.events.v1", credit.sale_completed(cmd, debt="100.00"))
    final = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
    assert final.status_code == 201
    assert final.json()["sale_id"] == cmd["sale_id"]
    assert len(await _commands(harness)) == 1
    conflict = await harness.client.post(
        "/v1/sales", json={**ON_ACCOUNT_SALE, "card_number": "CARD-9"}, headers=headers
    )
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"


async def test_a_retry_after_the_201_gets_the_same_answer_rendered_from_the_operation(
    harness: Any, credit: Any
) -> None:
    # the final answer is not copied into the Idempotency-Key row (a transaction per request
    # saved): the retry renders it again from the operation the key links to
    _, terminal, _ = await harness.setup_with_customer()
    harness.gateway.settings.sale_wait_seconds = 5.0
    headers = harness.till(terminal, "sale-key-201")
    request, command = await harness.sale_waiting(ON_ACCOUNT_SALE, headers)
    await harness.deliver("credit.events.v1", credit.sale_completed(command.payload, debt="100.00"))
    first = await request
    assert first.status_code == 201
    async with harness.engine.connect() as conn:
        kept = (
            await conn.execute(
                sa.text(
                    "SELECT status_code, response, operation_id FROM idempotency_keys"
                    " WHERE key = 'sale-key-201'"
                )
            )
        ).one()
    assert kept.status_code is None and kept.response is None
    assert str(kept.operation_id) == first.json()["sale_id"]
    retries = [
        await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
        for _ in range(2)
    ]
    assert [(r.status_code, r.json()) for r in retries] == [(201, first.json())] * 2
    assert len(await _commands(harness)) == 1


async def test_concurrent_retries_with_one_key_make_one_command(harness: Any, credit: Any) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    headers = harness.till(terminal, "same-key")
    answers = await asyncio.gather(
        *[harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers) for _ in range(5)]
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["sale_id"] for a in answers}) == 1
    assert len(await _commands(harness)) == 1


@pytest.mark.parametrize("code", [RefusalCode.OPERATION_FAILED, RefusalCode.AMOUNT_OUT_OF_RANGE])
async def test_a_waiting_sale_resolves_to_a_failed_or_out_of_range_refusal_with_its_code(
    harness: Any, credit: Any, code: RefusalCode
) -> None:
    """The two ends issue 13 added: the till's waiting request (and the 202's retry) gets the
    refusal as a 422 with its code, like any other refusal."""
    _, terminal, _ = await harness.setup_with_customer()
    headers = harness.till(terminal)
    waiting, command = await harness.sale_waiting(ON_ACCOUNT_SALE, headers)
    await harness.deliver(
        "credit.events.v1",
        credit.refused(
            command.payload["sale_id"], command.payload["chain_id"], OperationKind.SALE, code
        ),
    )
    answer = await waiting
    assert answer.status_code == 422
    assert (answer.json()["code"], answer.json()["sale_id"]) == (
        code.value,
        command.payload["sale_id"],
    )
    again = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
    assert (again.status_code, again.json()["code"]) == (422, code.value)


async def test_a_credit_refusal_is_a_422_with_its_code_and_is_kept(
    harness: Any, credit: Any
) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    headers = harness.till(terminal, "refused-sale")
    first = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
    sale_id = first.json()["sale_id"]
    chain_id = (await _commands(harness))[0].payload["chain_id"]
    await harness.deliver(
        "credit.events.v1",
        credit.refused(sale_id, chain_id, OperationKind.SALE, RefusalCode.CREDIT_LIMIT_EXCEEDED),
    )
    again = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=headers)
    assert again.status_code == 422
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "credit_limit_exceeded"
    read = await harness.client.get(f"/v1/sales/{sale_id}", headers=harness.auth(terminal))
    assert read.status_code == 200
    assert read.json() == {
        "sale_id": sale_id,
        "status": "refused",
        "code": "credit_limit_exceeded",
        "detail": "refused: credit_limit_exceeded",
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"card_number": "NO-SUCH-CARD"}, "card_not_found"),
        ({"card_number": None}, "card_required"),
        ({"payments": [{"method": "on_account", "amount": "90.00"}]}, "payment_mismatch"),
        ({"payments": [{"method": "card", "amount": "110.00"}]}, "payment_mismatch"),
        (
            {"payments": [{"method": "cash", "amount": "110.00"}], "change_to_advance": "20.00"},
            "payment_mismatch",
        ),
    ],
)
async def test_static_refusals_are_answered_at_once_and_publish_nothing(
    harness: Any, change: dict[str, Any], code: str
) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    body = {k: v for k, v in {**ON_ACCOUNT_SALE, **change}.items() if v is not None}
    before = await harness.outbox()
    response = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert await harness.outbox() == before
    assert await harness.count("operations") == 0


async def test_blocked_cards_and_non_vip_customers_are_refused(harness: Any, credit: Any) -> None:
    admin, terminal = await harness.setup()
    await harness.customer(admin, vip=False)
    not_vip = await harness.client.post(
        "/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.till(terminal)
    )
    assert not_vip.json()["code"] == "not_vip"
    await harness.client.post("/v1/cards/CARD-1/block", headers=harness.auth(admin))
    blocked = await harness.client.post(
        "/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.till(terminal)
    )
    assert blocked.status_code == 422
    assert blocked.json()["code"] == "card_blocked"


async def test_another_chains_card_is_card_not_found_and_records_nothing(
    harness: Any, credit: Any
) -> None:
    _admin, terminal = await harness.setup()
    other_admin = await harness.chain(name="Other")
    await harness.customer(other_admin)  # CARD-1 lives in the other chain only
    before = await harness.snapshot()
    response = await harness.client.post(
        "/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.till(terminal)
    )
    assert response.status_code == 422
    assert response.json()["code"] == "card_not_found"
    after = await harness.snapshot()
    # only the Idempotency-Key row keeps the answer for a retry; nothing else, nothing published
    assert {k: v for k, v in after.items() if k != "idempotency_keys"} == {
        k: v for k, v in before.items() if k != "idempotency_keys"
    }


async def test_a_refusal_at_once_is_kept_under_the_pos_chosen_sale_id(
    harness: Any, credit: Any
) -> None:
    _admin, terminal = await harness.setup()
    sale_id = str(uuid.uuid4())
    body = {**ON_ACCOUNT_SALE, "sale_id": sale_id, "card_number": "NOPE"}
    response = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    assert response.json()["code"] == "card_not_found"
    assert response.json()["sale_id"] == sale_id
    read = await harness.client.get(f"/v1/sales/{sale_id}", headers=harness.auth(terminal))
    assert read.json()["status"] == "refused"
    assert read.json()["code"] == "card_not_found"
    assert not await _commands(harness)


async def test_a_pos_chosen_sale_id_behaves_like_an_idempotency_key(
    harness: Any, credit: Any
) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    body = {**ON_ACCOUNT_SALE, "sale_id": str(uuid.uuid4())}
    first = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    again = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    assert first.status_code == again.status_code == 202
    assert len(await _commands(harness)) == 1
    changed = await harness.client.post(
        "/v1/sales",
        json={
            **body,
            "payments": [{"method": "on_account", "amount": "100.00"}],
            "occurred_at": "2026-11-01T10:00:00+02:00",
        },
        headers=harness.till(terminal),
    )
    assert changed.status_code == 409
    assert changed.json()["code"] == "idempotency_conflict"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["lines"][0].update(unit_price=60.0), "lines.0.unit_price"),
        (lambda b: b.update(tip="1.00"), "tip"),
        (lambda b: b["lines"][0].pop("name"), "lines.0.name"),
        (lambda b: b["payments"][0].update(amount="-1.00"), "payments.0.amount"),
        (lambda b: b.update(occurred_at="2020-01-01T00:00:00+00:00"), "occurred_at"),
        (lambda b: b.update(occurred_at="2026-01-01T00:00:00"), "occurred_at"),
        (lambda b: b["lines"][0].update(unit_price="60.001"), "lines.0.unit_price"),
    ],
)
async def test_bad_input_is_a_validation_error_and_records_nothing(
    harness: Any, mutate: Any, field: str
) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    body = json.loads(json.dumps(ON_ACCOUNT_SALE))
    mutate(body)
    before = await harness.snapshot()
    response = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await harness.snapshot() == before


async def test_a_sale_without_idempotency_key_or_with_the_wrong_key_records_nothing(
    harness: Any,
) -> None:
    admin, terminal, _ = await harness.setup_with_customer()
    before = await harness.snapshot()
    missing = await harness.client.post(
        "/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.auth(terminal)
    )
    assert missing.status_code == 422
    assert missing.json()["errors"] == [
        {"field": "Idempotency-Key", "message": "the Idempotency-Key header is required"}
    ]
    wrong_kind = await harness.client.post(
        "/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.till(admin)
    )
    assert wrong_kind.status_code == 403
    no_key = await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.idem())
    assert no_key.status_code == 401
    assert await harness.snapshot() == before


async def test_another_chains_sale_reads_as_not_found(harness: Any, credit: Any) -> None:
    _, terminal, _ = await harness.setup_with_customer()
    sale_id = (
        await harness.client.post("/v1/sales", json=ON_ACCOUNT_SALE, headers=harness.till(terminal))
    ).json()["sale_id"]
    other_admin = await harness.chain(name="Other")
    foreign = await harness.client.get(f"/v1/sales/{sale_id}", headers=harness.auth(other_admin))
    missing = await harness.client.get(
        f"/v1/sales/{uuid.uuid4()}", headers=harness.auth(other_admin)
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


async def test_an_anonymous_cash_sale_is_keyed_by_its_sale_id(harness: Any, credit: Any) -> None:
    _admin, terminal = await harness.setup()
    body = {
        "lines": [{"name": "Socks", "quantity": "3", "unit_price": "3.33"}],
        "payments": [{"method": "cash", "amount": "10.00"}],
    }
    response = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    assert response.status_code == 202
    env = (await _commands(harness))[0]
    assert env.key == response.json()["sale_id"]
    assert env.payload["customer"] is None
    assert env.payload["total"] == "9.99"
    assert env.payload["change"] == "0.01"


async def test_a_cash_sale_naming_only_the_customer_sends_the_customer_for_accrual(
    harness: Any, credit: Any
) -> None:
    # credit computes the accrual bases and loyalty the bonus from this command: without the
    # customer (and its accrual flag) in it, nothing could accrue
    admin, terminal = await harness.setup()
    customer = await harness.customer(admin, vip=False, card_number=None, credit_limit=None)
    body = {
        "customer_id": customer["customer_id"],
        "lines": [{"name": "Socks", "quantity": "1", "unit_price": "45.00"}],
        "payments": [{"method": "cash", "amount": "45.00"}],
    }
    response = await harness.client.post("/v1/sales", json=body, headers=harness.till(terminal))
    assert response.status_code == 202, response.text
    env = (await _commands(harness))[0]
    assert env.key == customer["customer_id"]
    assert env.payload["card_number"] is None
    assert env.payload["customer"]["customer_id"] == customer["customer_id"]
    assert env.payload["customer"]["bonus_accrual"] is True
    assert [(p["method"], p["amount"]) for p in env.payload["payments"]] == [("cash", "45.00")]
