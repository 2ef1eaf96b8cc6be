"""The whole notifier process on real Kafka and PostgreSQL: an overdue sale published by
"credit" becomes an open task.

The other integration tests feed records to the notifier's consumer directly; this one goes
through the broker and the subscriber as in production.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from contracts.base import Message
from contracts.gateway import v1 as gateway
from contracts.topics import CREDIT_EVENTS, MASTERDATA_EVENTS
from notifier.config import Settings
from notifier.entrypoints.app import make_definition
from notifier.testing import T0, chain_settings, sale_overdue, vip_customer
from servicekit.runtime import create_app
from servicekit.testing import envelope_of, publish

pytestmark = pytest.mark.integration


async def test_a_sale_overdue_published_on_kafka_opens_a_task(
    kafka_bootstrap_servers: str, fresh_database_url: str
) -> None:
    settings = Settings(
        database_url=fresh_database_url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        consumer_group=f"notifier-{uuid.uuid4().hex[:8]}",
    )
    app = create_app(make_definition(settings))
    chain, customer, sale = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    messages: list[tuple[str, Message]] = [
        (
            MASTERDATA_EVENTS,
            gateway.ChainRegistered(
                chain_id=chain, name="Kids", settings=chain_settings(), registered_at=T0
            ),
        ),
        (MASTERDATA_EVENTS, vip_customer(chain, customer)),
        (CREDIT_EVENTS, sale_overdue(chain, customer, sale, "40.00")),
    ]
    async with app.router.lifespan_context(app):
        await publish(
            kafka_bootstrap_servers,
            *(
                (topic, envelope_of(message, key=customer, chain_id=chain))
                for topic, message in messages
            ),
        )

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://notifier"
        ) as http:

            async def open_task() -> dict[str, Any]:
                while True:
                    listed = await http.get(
                        f"/internal/v1/chains/{chain}/tasks", params={"status": "open"}
                    )
                    assert listed.status_code == 200, listed.text
                    if listed.json()["items"]:
                        return dict(listed.json()["items"][0])
                    await asyncio.sleep(0.1)

            task = await asyncio.wait_for(open_task(), timeout=60)
    assert task["customer_id"] == str(customer)
    assert task["level"] == 1
    assert [s["sale_id"] for s in task["sales"]] == [str(sale)]
    assert task["overdue_amount"] == "40.00"
