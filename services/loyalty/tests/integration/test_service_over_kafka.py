"""The whole loyalty process on real Kafka and PostgreSQL: `ApplyBonuses` in, the answer out.

The other integration tests feed records to loyalty's consumer directly; this one goes through
the broker, the subscriber, the outbox relay and the producer as in production.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.credit.v1 import ApplyBonuses, BonusBase
from contracts.enums import BonusOperationKind, PaymentMethod
from contracts.envelope import decode, encode, make_envelope
from contracts.topics import LOYALTY_COMMANDS, LOYALTY_EVENTS
from loyalty.config import Settings
from loyalty.entrypoints.app import build_definition
from servicekit.runtime import create_app

pytestmark = pytest.mark.integration


async def test_bonuses_applied_over_kafka_come_back_as_bonuses_applied(
    kafka_bootstrap_servers: str, fresh_database_url: str
) -> None:
    settings = Settings(database_url=fresh_database_url,
                        kafka_bootstrap_servers=kafka_bootstrap_servers)
    app = create_app(build_definition(settings))
    customer, sale, payment = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    command = ApplyBonuses(
        operation_id=sale, operation_kind=BonusOperationKind.SALE, chain_id=uuid.uuid4(),
        customer_id=customer, store_id=uuid.uuid4(), sale_id=sale,
        occurred_at=datetime(2026, 3, 1, 12, tzinfo=UTC), bonus_accrual=True,
        bonus_rate_percent=Decimal("10.00"), bonus_expiry_days=None, minor_units=2,
        spend=Decimal("0.00"),
        accrual_bases=[BonusBase(payment_id=payment, method=PaymentMethod.CASH,
                                 base_amount=Decimal("200.00"))],
        restore_up_to=Decimal("0.00"), reverse_bases=[],
    )
    async with app.router.lifespan_context(app):
        listener = AIOKafkaConsumer(
            LOYALTY_EVENTS, bootstrap_servers=kafka_bootstrap_servers,
            group_id=f"test-{uuid.uuid4()}", auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
        await listener.start()
        await producer.start()
        try:
            env = make_envelope(command, chain_id=command.chain_id, key=str(customer),
                                correlation_id=uuid.uuid4())
            await producer.send_and_wait(LOYALTY_COMMANDS, encode(env),
                                         key=str(customer).encode())

            async def answer() -> dict[str, Any]:
                while True:
                    batch = await listener.getmany(timeout_ms=500)
                    for records in batch.values():
                        for rec in records:
                            try:
                                got = decode(rec.value)
                            except ValueError:
                                continue  # the topic is shared: other tests publish poison
                            if (got.type == "loyalty.BonusesApplied"
                                    and got.payload.get("operation_id") == str(sale)):
                                assert got.correlation_id == env.correlation_id
                                return dict(got.payload)

            payload = await asyncio.wait_for(answer(), timeout=60)
        finally:
            await producer.stop()
            await listener.stop()
    assert payload["accrued"] == "20.00"
    assert payload["balance_after"] == "20.00"
