"""The statement lists the bonus movements of one moment in the order the ledger applied them.

A mixed payment (bonus + cash) spends and accrues at the same instant. Loyalty spends first,
so the running bonus balance goes 20.00 -> 0.00 -> 3.00; listing the accrual first would
show 23.00, a balance the customer never had, and the order would depend on random message
ids.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from reporting_helpers import bonus_movement
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.enums import BonusMovementKind
from contracts.loyalty.v1 import BonusMovementRecorded
from reporting.domain.model import Period
from reporting.service_layer import reports
from servicekit.consumer import Consumer
from servicekit.db import make_session_factory
from servicekit.testing import envelope_of, record_of

pytestmark = pytest.mark.integration

D = Decimal
CHAIN, STORE = uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def movement(
    customer: uuid.UUID, kind: BonusMovementKind, amount: str, at: datetime, after: str
) -> BonusMovementRecorded:
    return bonus_movement(
        CHAIN, STORE, customer, kind, amount, at, after, operation_id=uuid.uuid4()
    )


async def test_a_spend_and_an_accrual_of_one_moment_are_listed_spend_first(
    engine: AsyncEngine, consumer: Consumer
) -> None:
    customer = uuid.uuid4()
    earned = movement(customer, BonusMovementKind.ACCRUED, "20.00", T0, "20.00")
    spent = movement(customer, BonusMovementKind.SPENT, "20.00", T1, "0.00")
    accrued = movement(customer, BonusMovementKind.ACCRUED, "3.00", T1, "3.00")
    # message ids that sort the accrual before the spend, as random ids often do
    spent_env = envelope_of(spent, key=customer).model_copy(
        update={"message_id": uuid.UUID(int=2**128 - 1)}
    )
    accrued_env = envelope_of(accrued, key=customer).model_copy(
        update={"message_id": uuid.UUID(int=1)}
    )
    await consumer.process_records(
        [
            record_of(earned, key=customer),
            record_of(spent_env),
            record_of(accrued_env),
        ]
    )

    async with make_session_factory(engine)() as session:
        body, _ = await reports.statement(session, CHAIN, customer, Period(None, None))

    assert [(e["kind"], e["bonus_balance"]) for e in body["entries"]] == [
        ("bonus_accrued", "20.00"),
        ("bonus_spent", "0.00"),
        ("bonus_accrued", "3.00"),
    ]
