"""Loyalty against real PostgreSQL: commands fed through servicekit's consumer, answers read
from the outbox, the ledger read through the internal query."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import uuid4

from contracts.enums import BonusOperationKind
from contracts.loyalty.v1 import (
    BonusCancellationRefused,
    BonusesApplied,
    BonusesRefused,
    BonusMovementRecorded,
    PaymentBonusCancelled,
)
from loyalty.entrypoints.app import build_consumer
from loyalty.entrypoints.http import router
from loyalty.service_layer.handlers import LoyaltyHandlers
from servicekit import sql
from servicekit.db import make_engine, make_session_factory
from servicekit.testing import internal_api_client, record_of

if TYPE_CHECKING:
    from conftest import Harness

D = Decimal
APPLIED, REFUSED = BonusesApplied.TYPE, BonusesRefused.TYPE
MOVEMENT = BonusMovementRecorded.TYPE


async def test_the_worked_example_through_the_consumer(loyalty: Harness) -> None:
    cash1, cash2 = uuid4(), uuid4()
    await loyalty.feed(loyalty.apply(cash=[(cash1, "200.00")]))
    await loyalty.feed(loyalty.apply(spend="20.00", cash=[(cash2, "30.00")]))
    await loyalty.feed(loyalty.cancel(cash2))

    first, second = await loyalty.outbox(APPLIED)
    assert (first.accrued, first.balance_after) == (D("20.00"), D("20.00"))
    assert [(p.payment_id, p.amount) for p in first.accrued_by_payment] == [(cash1, D("20.00"))]
    assert (second.spent, second.accrued, second.balance_after) == (
        D("20.00"),
        D("3.00"),
        D("3.00"),
    )
    (cancelled,) = await loyalty.outbox(PaymentBonusCancelled.TYPE)
    assert (cancelled.cancelled, cancelled.balance_after, cancelled.already) == (
        D("3.00"),
        D("0.00"),
        False,
    )

    movements = await loyalty.outbox(MOVEMENT)
    assert [(m.kind.value, m.amount, m.balance_after) for m in movements] == [
        ("accrued", D("20.00"), D("20.00")),
        ("spent", D("20.00"), D("0.00")),
        ("accrued", D("3.00"), D("3.00")),
        ("cancelled", D("3.00"), D("0.00")),
    ]
    assert (await loyalty.bonus())["balance"] == "0.00"


async def test_cancelling_a_payment_twice_changes_nothing_and_answers_the_same(
    loyalty: Harness,
) -> None:
    cash = uuid4()
    await loyalty.feed(loyalty.apply(cash=[(cash, "50.00")]))
    await loyalty.feed(loyalty.cancel(cash))
    await loyalty.feed(loyalty.cancel(cash, at=loyalty.clock.now + timedelta(hours=1)))

    first, again = await loyalty.outbox(PaymentBonusCancelled.TYPE)
    assert (again.cancelled, again.already, again.cancelled_at) == (
        first.cancelled,
        True,
        first.cancelled_at,
    )
    assert first.cancelled == D("5.00")
    assert await loyalty.count("bonus_movements") == 2


async def test_cancelling_an_unknown_payment_is_refused_as_not_found(loyalty: Harness) -> None:
    await loyalty.feed(loyalty.cancel(uuid4()))
    (refusal,) = await loyalty.outbox(BonusCancellationRefused.TYPE)
    assert refusal.code == "not_found"


async def test_a_duplicate_apply_bonuses_changes_nothing(loyalty: Harness) -> None:
    command = loyalty.apply(cash=[(uuid4(), "100.00")])
    env = await loyalty.feed(command)
    # the same message redelivered, and the same operation in another message: neither keeps
    # an inbox row (`NO_INBOX_FOR`); each finds the operation applied and answers it again
    await loyalty.feed(env)
    await loyalty.feed(command)

    answers = await loyalty.outbox(APPLIED)
    assert len(answers) == 3 and answers[0] == answers[1] == answers[2]
    assert await loyalty.count("inbox") == 0
    assert await loyalty.count("bonus_movements") == 1
    assert await loyalty.count("payment_accruals") == 1
    assert (await loyalty.bonus())["balance"] == "10.00"


async def test_a_refund_applies_nothing_and_answers_the_balance_after_a_cancellation(
    loyalty: Harness,
) -> None:
    """Credit asks about a refund only for the balance its answer shows (`operation_kind`
    refund, nothing to apply): loyalty's after every operation it answered before, here a
    back-office cancellation credit may not have read yet. Recorded once, no movement."""
    cash = uuid4()
    await loyalty.feed(loyalty.apply(cash=[(cash, "200.00")]))
    await loyalty.feed(loyalty.apply(spend="15.00"))
    await loyalty.feed(loyalty.cancel(cash))
    movements = len(await loyalty.outbox(MOVEMENT))
    refund = loyalty.apply(kind=BonusOperationKind.REFUND, operation_id=uuid4()).model_copy(
        update={"sale_id": None}
    )
    await loyalty.feed(refund)
    await loyalty.feed(refund)  # asked again: answered the same, nothing recorded twice

    *_, answer, again = await loyalty.outbox(APPLIED)
    assert answer == again
    assert (answer.operation_id, answer.operation_kind) == (
        refund.operation_id,
        refund.operation_kind,
    )
    assert (answer.spent, answer.accrued, answer.restored, answer.reversed) == (
        D(0),
        D(0),
        D(0),
        D(0),
    )
    assert answer.balance_after == D("-15.00")
    assert len(await loyalty.outbox(MOVEMENT)) == movements
    assert await loyalty.count("bonus_operations") == 3
    assert (await loyalty.bonus())["balance"] == "-15.00"


async def test_a_refusal_records_nothing(loyalty: Harness) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")]))
    before = await loyalty.bonus()

    await loyalty.feed(loyalty.apply(spend="10.01", cash=[(uuid4(), "5.00")]))

    (refusal,) = await loyalty.outbox(REFUSED)
    assert (refusal.code, refusal.balance) == ("insufficient_bonus", D("10.00"))
    assert await loyalty.bonus() == before
    assert await loyalty.count("payment_accruals") == 1
    assert len(await loyalty.outbox(MOVEMENT)) == 1


async def test_nothing_can_be_spent_from_a_balance_made_negative_by_a_cancellation(
    loyalty: Harness,
) -> None:
    cash = uuid4()
    await loyalty.feed(loyalty.apply(cash=[(cash, "200.00")]))
    await loyalty.feed(loyalty.apply(spend="15.00"))
    await loyalty.feed(loyalty.cancel(cash))
    assert (await loyalty.bonus())["balance"] == "-15.00"

    await loyalty.feed(loyalty.apply(spend="1.00"))
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "160.00")]))

    assert len(await loyalty.outbox(REFUSED)) == 1
    assert (await loyalty.bonus())["balance"] == "1.00"


async def test_two_instances_spending_the_same_last_bonuses_at_once_one_wins(
    loyalty: Harness,
) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")]))
    # two instances: each its own engine (connection pool) and consumer
    engines = [make_engine(loyalty.url, pool_size=2) for _ in range(2)]
    try:
        consumers = [build_consumer(LoyaltyHandlers(clock=loyalty.clock)) for _ in engines]
        for c, e in zip(consumers, engines, strict=True):
            c.retry_backoff_seconds = 0
            c.bind(make_session_factory(e))
        spends = [loyalty.envelope(loyalty.apply(spend="10.00")) for _ in range(2)]
        await asyncio.gather(
            *(c.process_records([record_of(env)]) for c, env in zip(consumers, spends, strict=True))
        )
    finally:
        for e in engines:
            await e.dispose()

    assert len(await loyalty.outbox(APPLIED)) == 2  # the accrual and one spend
    assert len(await loyalty.outbox(REFUSED)) == 1
    bonus = await loyalty.bonus()
    assert bonus["balance"] == "0.00"
    assert [e["kind"] for e in bonus["entries"]] == ["accrued", "spent"]


async def test_a_command_that_waited_for_the_customers_lock_reads_the_lots_left_by_its_holder(
    loyalty: Harness,
) -> None:
    """The lots are read by a statement after the lock, never by the locking one: a statement
    reads other tables as they were when it started, before the lock it waited for."""
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")]))  # a lot of 10.00
    chain, customer = loyalty.chain_id, loyalty.customer_id
    async with loyalty.session_factory() as holder, holder.begin():
        await sql.fetchrow(
            holder,
            "SELECT 1 FROM customer_bonus WHERE chain_id = $1 AND customer_id = $2 FOR UPDATE",
            chain,
            customer,
        )
        # the holder spends the whole lot (as another instance's spend would)
        await sql.execute(
            holder,
            "UPDATE bonus_lots SET remaining = 0 WHERE chain_id = $1 AND customer_id = $2",
            chain,
            customer,
        )
        await sql.execute(
            holder,
            "UPDATE customer_bonus SET balance = 0 WHERE chain_id = $1 AND customer_id = $2",
            chain,
            customer,
        )
        spend = asyncio.create_task(loyalty.feed(loyalty.apply(spend="10.00")))
        await asyncio.sleep(0.5)
        assert not spend.done()  # it waits for the lock
    await asyncio.wait_for(spend, 10)
    (refusal,) = await loyalty.outbox(REFUSED)
    assert refusal.code == "insufficient_bonus"
    assert len(await loyalty.outbox(APPLIED)) == 1  # the accrual alone


async def test_a_return_gives_back_spent_bonus_and_reverses_the_accrual_once(
    loyalty: Harness,
) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "300.00")]))  # 30.00
    sale_id, cash = uuid4(), uuid4()
    await loyalty.feed(loyalty.apply(sale_id=sale_id, spend="20.00", cash=[(cash, "80.00")]))
    assert (await loyalty.bonus())["balance"] == "18.00"

    ret = loyalty.return_of(sale_id, restore_up_to="20.00", reverse=[(cash, "40.00")])
    await loyalty.feed(ret)
    again = loyalty.return_of(sale_id, restore_up_to="20.00", reverse=[(cash, "80.00")])
    await loyalty.feed(again)  # more than is left: only what remains of it comes back

    answers = await loyalty.outbox(APPLIED)
    assert [(a.restored, a.reversed) for a in answers[2:]] == [
        (D("20.00"), D("4.00")),
        (D("0.00"), D("4.00")),
    ]
    assert (await loyalty.bonus())["balance"] == "30.00"


async def test_an_operation_records_due_expiries_before_spending(loyalty: Harness) -> None:
    await loyalty.feed(loyalty.settings_changed(expiry_days=30), key=loyalty.chain_id)
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")]))
    loyalty.clock.now += timedelta(days=31)

    await loyalty.feed(loyalty.apply(spend="5.00"))

    (refusal,) = await loyalty.outbox(REFUSED)
    assert refusal.balance == D("0.00")
    expired = [m for m in await loyalty.outbox(MOVEMENT) if m.kind.value == "expired"]
    assert [(m.amount, m.at) for m in expired] == [
        (D("10.00"), loyalty.clock.now - timedelta(days=1))
    ]


async def test_the_internal_bonus_endpoint_shows_balance_and_entries(loyalty: Harness) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "123.45")]))
    async with internal_api_client(router, loyalty.session_factory) as client:
        path = f"/internal/v1/chains/{loyalty.chain_id}/customers/{loyalty.customer_id}/bonus"
        body = (await client.get(path)).json()
        other = (
            await client.get(f"/internal/v1/chains/{uuid4()}/customers/{loyalty.customer_id}/bonus")
        ).json()

    assert body["balance"] == "12.35"
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in body["entries"]] == [
        ("accrued", "12.35", "12.35")
    ]
    assert [lot["remaining"] for lot in body["lots"]] == ["12.35"]
    assert (other["balance"], other["entries"]) == ("0.00", [])


async def test_a_payment_of_another_customer_cannot_be_cancelled(loyalty: Harness) -> None:
    cash = uuid4()
    await loyalty.feed(loyalty.apply(cash=[(cash, "100.00")]))
    stranger = loyalty.cancel(cash).model_copy(update={"customer_id": uuid4()})
    await loyalty.feed(stranger, key=stranger.customer_id)

    (refusal,) = await loyalty.outbox(BonusCancellationRefused.TYPE)
    assert refusal.code == "not_found"
    assert (await loyalty.bonus())["balance"] == "10.00"


async def test_one_batch_of_a_customers_operations_is_applied_in_order(loyalty: Harness) -> None:
    cash = uuid4()
    batch = [
        loyalty.envelope(loyalty.apply(cash=[(cash, "100.00")])),
        loyalty.envelope(loyalty.apply(spend="10.00")),
        loyalty.envelope(loyalty.apply(spend="0.01")),
        loyalty.envelope(loyalty.cancel(cash)),
    ]
    await loyalty.consumer.process_records([record_of(env) for env in batch])

    assert len(await loyalty.outbox(APPLIED)) == 2
    assert len(await loyalty.outbox(REFUSED)) == 1
    (cancelled,) = await loyalty.outbox(PaymentBonusCancelled.TYPE)
    assert cancelled.balance_after == D("-10.00")
