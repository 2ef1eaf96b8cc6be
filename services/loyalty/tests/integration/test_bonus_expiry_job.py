"""The expiry job against real PostgreSQL: every expiry is recorded once, across instances."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import uuid4

from contracts.loyalty.v1 import BonusMovementRecorded
from loyalty.service_layer.expiry import expire_due_bonuses
from servicekit.db import make_engine, make_session_factory

if TYPE_CHECKING:
    from conftest import Harness

D = Decimal


async def test_two_instances_running_the_expiry_job_record_each_expiry_once(
    loyalty: Harness,
) -> None:
    # accruals made while expiry was off expire too once it is switched on
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")]))
    await loyalty.feed(
        loyalty.apply(cash=[(uuid4(), "50.00")], at=loyalty.clock.now + timedelta(days=20))
    )
    await loyalty.feed(loyalty.apply(spend="4.00", at=loyalty.clock.now + timedelta(days=21)))
    await loyalty.feed(loyalty.settings_changed(expiry_days=30), key=loyalty.chain_id)
    now = loyalty.clock.now + timedelta(days=40)

    engines = [make_engine(loyalty.url, pool_size=2) for _ in range(2)]
    try:
        counts = await asyncio.gather(
            *(expire_due_bonuses(make_session_factory(e), now=now, batch_size=10) for e in engines)
        )
        again = await expire_due_bonuses(loyalty.session_factory, now=now)
    finally:
        for e in engines:
            await e.dispose()

    assert sorted(counts) == [0, 1] and again == 0
    expired = [
        m for m in await loyalty.outbox(BonusMovementRecorded.TYPE) if m.kind.value == "expired"
    ]
    assert [(m.amount, m.at, m.balance_after) for m in expired] == [
        (D("6.00"), loyalty.clock.now + timedelta(days=30), D("5.00"))
    ]
    assert (await loyalty.bonus())["balance"] == "5.00"


async def test_the_expiry_job_leaves_bonuses_alone_while_expiry_is_off(loyalty: Harness) -> None:
    await loyalty.feed(loyalty.apply(cash=[(uuid4(), "100.00")], expiry_days=None))
    await loyalty.feed(loyalty.settings_changed(expiry_days=None), key=loyalty.chain_id)
    now = loyalty.clock.now + timedelta(days=4000)
    assert await expire_due_bonuses(loyalty.session_factory, now=now) == 0
    assert (await loyalty.bonus())["balance"] == "10.00"


async def test_an_older_settings_change_never_overrides_a_newer_one(loyalty: Harness) -> None:
    await loyalty.feed(loyalty.settings_changed(expiry_days=30), key=loyalty.chain_id)
    await loyalty.feed(
        loyalty.settings_changed(expiry_days=None, at=loyalty.clock.now - timedelta(hours=1)),
        key=loyalty.chain_id,
    )
    assert (await loyalty.bonus())["bonus_expiry_days"] == 30
