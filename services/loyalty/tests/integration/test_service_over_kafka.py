"""The whole loyalty process on real Kafka and PostgreSQL: `ApplyBonuses` in, the answer out.

The other integration tests feed records to loyalty's consumer directly; this one goes through
the broker, the subscriber, the outbox relay and the producer as in production.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts.credit.v1 import ApplyBonuses, BonusBase
from contracts.enums import BonusOperationKind, PaymentMethod
from contracts.topics import LOYALTY_COMMANDS, LOYALTY_EVENTS
from loyalty.config import Settings
from loyalty.entrypoints.app import make_definition
from servicekit.runtime import create_app
from servicekit.testing import answer_over_kafka, envelope_of

pytestmark = pytest.mark.integration


async def test_bonuses_applied_over_kafka_come_back_as_bonuses_applied(
    kafka_bootstrap_servers: str, fresh_database_url: str
) -> None:
    settings = Settings(
        database_url=fresh_database_url, kafka_bootstrap_servers=kafka_bootstrap_servers
    )
    app = create_app(make_definition(settings))
    customer, sale, payment = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    command = ApplyBonuses(
        operation_id=sale,
        operation_kind=BonusOperationKind.SALE,
        chain_id=uuid.uuid4(),
        customer_id=customer,
        store_id=uuid.uuid4(),
        sale_id=sale,
        occurred_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        bonus_accrual=True,
        bonus_rate_percent=Decimal("10.00"),
        bonus_expiry_days=None,
        minor_units=2,
        spend=Decimal("0.00"),
        accrual_bases=[
            BonusBase(payment_id=payment, method=PaymentMethod.CASH, base_amount=Decimal("200.00"))
        ],
        restore_up_to=Decimal("0.00"),
        reverse_bases=[],
    )
    env = envelope_of(command, key=customer, chain_id=command.chain_id)
    got = await answer_over_kafka(
        app,
        kafka_bootstrap_servers,
        (LOYALTY_COMMANDS, env),
        LOYALTY_EVENTS,
        lambda e: e.type == "loyalty.BonusesApplied" and e.payload.get("operation_id") == str(sale),
    )
    assert got.correlation_id == env.correlation_id
    assert got.payload["accrued"] == "20.00"
    assert got.payload["balance_after"] == "20.00"
