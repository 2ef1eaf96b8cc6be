"""The whole notifier process on real Kafka and PostgreSQL: an overdue sale published by
"credit" becomes an open task.

The other integration tests feed records to the notifier's consumer directly; this one goes
through the broker and the subscriber as in production.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import CreditMode, OverdueDiscountPolicy
from contracts.gateway import v1 as gateway
from contracts.topics import CREDIT_EVENTS, MASTERDATA_EVENTS
from notifier.config import Settings
from notifier.entrypoints.app import build
from servicekit.testing import envelope_of, publish

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)


async def test_a_sale_overdue_published_on_kafka_opens_a_task(
    kafka_bootstrap_servers: str, fresh_database_url: str
) -> None:
    settings = Settings(database_url=fresh_database_url,
                        kafka_bootstrap_servers=kafka_bootstrap_servers,
                        consumer_group=f"notifier-{uuid.uuid4().hex[:8]}")
    app = build(settings)
    chain, customer, sale = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    snapshot = gateway.ChainSettingsSnapshot(
        credit_mode=CreditMode.PER_SALE, max_payment_delay_days=30,
        overdue_discount=OverdueDiscountPolicy.KEEP, block_credit_when_overdue=False,
        reminder_repeat_days=7, bonus_rate_percent=Decimal("10.00"), bonus_expiry_days=None,
        timezone="Europe/Bucharest", currency="EUR", minor_units=2,
    )
    messages: list[tuple[str, Message]] = [
        (MASTERDATA_EVENTS, gateway.ChainRegistered(
            chain_id=chain, name="Kids", settings=snapshot, registered_at=T0)),
        (MASTERDATA_EVENTS, gateway.CustomerRegistered(
            chain_id=chain, registered_at=T0, customer=gateway.CustomerSnapshot(
                customer_id=customer, name="Ana Pop", phone="+40700000000", vip=True,
                bonus_accrual=True, credit_limit=None, max_payment_delay_days=None,
                card_number="C1"))),
        (CREDIT_EVENTS, credit.SaleOverdue(
            sale_id=sale, chain_id=chain, customer_id=customer, credit_mode=CreditMode.PER_SALE,
            sold_at=T0, due_date=date(2026, 1, 31), amount_owed=Decimal("40.00"),
            days_overdue=1, discount=Decimal("0.00"), discount_revoked=False,
            lines=[credit.OverdueLine(line_no=1, barcode="4820000000017", name="Dress",
                                      quantity=Decimal("1"), amount_owed=Decimal("40.00"))],
            detected_at=T0 + timedelta(days=31))),
    ]
    async with app.router.lifespan_context(app):
        await publish(kafka_bootstrap_servers, *(
            (topic, envelope_of(message, key=customer, chain_id=chain))
            for topic, message in messages
        ))

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://notifier") as http:

            async def open_task() -> dict[str, Any]:
                while True:
                    listed = await http.get(f"/internal/v1/chains/{chain}/tasks",
                                            params={"status": "open"})
                    assert listed.status_code == 200, listed.text
                    if listed.json()["items"]:
                        return dict(listed.json()["items"][0])
                    await asyncio.sleep(0.1)

            task = await asyncio.wait_for(open_task(), timeout=60)
    assert task["customer_id"] == str(customer)
    assert task["level"] == 1
    assert [s["sale_id"] for s in task["sales"]] == [str(sale)]
    assert task["overdue_amount"] == "40.00"
