"""The whole credit process on real Kafka and PostgreSQL: a command in, the outcome out."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.envelope import decode, encode, make_envelope
from contracts.topics import CREDIT_EVENTS, POS_COMMANDS
from credit.config import Settings
from credit.entrypoints.app import make_definition
from credit.testing import day, record_sale, sale_line, settings_snapshot
from servicekit.runtime import create_app


async def test_a_sale_published_on_kafka_comes_back_as_sale_completed(
    kafka_bootstrap_servers: str, fresh_database_url: str
) -> None:
    settings = Settings(database_url=fresh_database_url,
                        kafka_bootstrap_servers=kafka_bootstrap_servers)
    app = create_app(make_definition(settings))
    cmd = record_sale(chain_id=uuid.uuid4(), customer=None, settings=settings_snapshot(),
                      sold_at=day(0), lines=[sale_line(1, "7.00")], payments=[("cash", "7.00")])
    async with app.router.lifespan_context(app):
        listener = AIOKafkaConsumer(
            CREDIT_EVENTS, bootstrap_servers=kafka_bootstrap_servers,
            group_id=f"test-{uuid.uuid4()}", auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
        await listener.start()
        await producer.start()
        try:
            env = make_envelope(cmd, chain_id=None, key=str(cmd.sale_id),
                                correlation_id=uuid.uuid4())
            await producer.send_and_wait(POS_COMMANDS, encode(env), key=str(cmd.sale_id).encode())

            async def outcome() -> dict[str, object]:
                while True:
                    batch = await listener.getmany(timeout_ms=500)
                    for records in batch.values():
                        for rec in records:
                            try:
                                got = decode(rec.value)
                            except ValueError:
                                continue  # the topic is shared: other tests publish poison on it
                            sale_id = got.payload.get("sale_id")
                            if got.type == "credit.SaleCompleted" and sale_id == str(cmd.sale_id):
                                assert got.correlation_id == env.correlation_id
                                return got.payload

            payload = await asyncio.wait_for(outcome(), timeout=60)
        finally:
            await producer.stop()
            await listener.stop()
    assert payload["total"] == "7.00" and payload["paid"] == "7.00"
