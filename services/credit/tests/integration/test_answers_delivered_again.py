"""Loyalty's answers keep no inbox row in credit (`NO_INBOX_FOR`): an answer delivered again
(Kafka redelivers after a crash or a rebalance) runs its handler again, which finds its
operation no longer pending and changes nothing, even while the customer's next operation
waits for its own answer."""

from __future__ import annotations

import uuid
from decimal import Decimal

from contracts.credit.v1 import ApplyBonuses
from contracts.envelope import Envelope
from credit.testing import (
    bonuses_applied,
    bonuses_refused,
    customer_snapshot,
    one_line_sale,
    settings_snapshot,
)

CHAIN = uuid.UUID("22222222-2222-2222-2222-222222222222")


async def _asked(harness) -> ApplyBonuses:
    return ApplyBonuses.model_validate((await harness.outbox("loyalty.ApplyBonuses"))[-1].payload)


async def _state(harness, customer_id: uuid.UUID) -> tuple[list[Envelope], object, int]:
    return (
        await harness.outbox(),
        await harness.credit(CHAIN, customer_id),
        await harness.count("operations"),
    )


async def test_an_answer_delivered_again_changes_nothing(harness) -> None:
    customer = customer_snapshot()
    settings = settings_snapshot()
    key = str(customer.customer_id)
    await harness.send(one_line_sale(CHAIN, customer, settings, "50.00"), key=key)
    first = await _asked(harness)
    applied = harness.envelope(bonuses_applied(first, [], Decimal("0.00")), key)
    await harness.send_envelope(applied)  # the first sale completes
    await harness.send(one_line_sale(CHAIN, customer, settings, "30.00", at=1), key=key)
    second = await _asked(harness)
    assert second.operation_id != first.operation_id  # the second sale waits for loyalty
    before = await _state(harness, customer.customer_id)

    await harness.send_envelope(applied)  # the first answer, delivered again

    assert await _state(harness, customer.customer_id) == before
    # no inbox row for the answers (nor for the commands)
    assert await harness.count("inbox") == 0
    # the second sale completes with its own answer
    await harness.send_envelope(harness.envelope(bonuses_applied(second, [], Decimal("0.00")), key))
    completed = await harness.events("credit.SaleCompleted")
    assert [e["customer_balances"]["debt"] for e in completed] == ["50.00", "80.00"]


async def test_a_refusal_delivered_again_changes_nothing(harness) -> None:
    customer = customer_snapshot()
    settings = settings_snapshot()
    key = str(customer.customer_id)
    await harness.send(one_line_sale(CHAIN, customer, settings, "50.00"), key=key)
    refused = harness.envelope(bonuses_refused(await _asked(harness), Decimal("0.00")), key)
    await harness.send_envelope(refused)  # the sale is refused and voided
    await harness.send(one_line_sale(CHAIN, customer, settings, "30.00", at=1), key=key)
    before = await _state(harness, customer.customer_id)

    await harness.send_envelope(refused)

    assert await _state(harness, customer.customer_id) == before
    assert await harness.count("inbox") == 0
    await harness.send_envelope(
        harness.envelope(bonuses_applied(await _asked(harness), [], Decimal("0.00")), key)
    )
    assert [e["code"] for e in await harness.events("credit.OperationRefused")] == [
        "insufficient_bonus"
    ]
    completed = await harness.events("credit.SaleCompleted")
    assert [e["customer_balances"]["debt"] for e in completed] == ["30.00"]
