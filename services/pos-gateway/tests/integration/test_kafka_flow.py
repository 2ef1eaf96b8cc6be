"""The whole gateway on real Kafka and PostgreSQL: the command leaves through the outbox
relay, and an outcome event consumed from `credit.events.v1` answers the waiting POS."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.envelope import decode, encode, make_envelope
from contracts.topics import CREDIT_EVENTS, POS_COMMANDS
from pos_gateway.config import Settings
from pos_gateway.entrypoints.app import build
from servicekit.db import make_engine

pytestmark = pytest.mark.integration

OPERATOR = "operator-token-for-kafka-tests-0123"


async def _next_command(consumer: AIOKafkaConsumer, chain_id: str) -> Any:
    """The first RecordSale of this test's chain (the topic may hold older runs' messages)."""
    async with asyncio.timeout(30):
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    try:
                        env = decode(record.value)
                    except ValueError:
                        continue  # the topic is shared: other tests publish poison on it
                    if str(env.chain_id) == chain_id and env.type == "credit.RecordSale":
                        return env


async def test_a_sale_goes_out_over_kafka_and_its_outcome_from_kafka_answers_201(
    fresh_database_url: str,
    kafka_bootstrap_servers: str,
    monkeypatch: pytest.MonkeyPatch,
    credit: Any,
) -> None:
    monkeypatch.setenv("OPERATOR_TOKEN", OPERATOR)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
    monkeypatch.setenv("GATEWAY_SALE_WAIT_SECONDS", "20")
    app, _gw = build(Settings())
    credit_side = AIOKafkaConsumer(
        POS_COMMANDS, bootstrap_servers=kafka_bootstrap_servers,
        group_id=f"test-credit-{uuid.uuid4()}", auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            op = {"Authorization": f"Bearer {OPERATOR}"}
            chain = (await client.post("/v1/chains", json={"name": "K"}, headers=op)).json()
            admin = {"Authorization": f"Bearer {chain['admin_api_key']}"}
            store = (await client.post("/v1/stores", json={"code": "1", "name": "S"},
                                       headers=admin)).json()
            terminal = (await client.post(f"/v1/stores/{store['store_id']}/terminals",
                                          json={"name": "T"}, headers=admin)).json()
            customer = (await client.post(
                "/v1/customers", json={"name": "Ana", "phone": "1", "vip": True,
                                       "card_number": "K-1"}, headers=admin)).json()
            till = {"Authorization": f"Bearer {terminal['api_key']}",
                    "Idempotency-Key": str(uuid.uuid4())}
            await credit_side.start()
            await producer.start()
            try:
                sale = asyncio.create_task(client.post("/v1/sales", headers=till, json={
                    "card_number": "K-1",
                    "lines": [{"name": "Dress", "quantity": "2", "unit_price": "30.00"}],
                    "payments": [{"method": "cash", "amount": "40.00"},
                                 {"method": "on_account", "amount": "20.00"}],
                }))
                command = await _next_command(credit_side, chain["chain_id"])
                assert command.key == customer["customer_id"]
                outcome = credit.sale_completed(command.payload, debt="20.00")
                env = make_envelope(outcome, chain_id=None, key=command.key,
                                    correlation_id=command.correlation_id,
                                    causation_id=command.message_id)
                await producer.send_and_wait(CREDIT_EVENTS, encode(env),
                                             key=command.key.encode())
                response = await sale
            finally:
                await credit_side.stop()
                await producer.stop()
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["sale_id"] == command.payload["sale_id"]
            assert body["status"] == "completed"
            assert body["total"] == "60.00"
            assert body["on_account"] == "20.00"
            assert body["customer"]["debt"] == "20.00"
    engine = make_engine(fresh_database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT type, sent_at IS NOT NULL AS sent FROM outbox WHERE topic = :t"),
                {"t": POS_COMMANDS})).all()
            status = await conn.scalar(sa.text("SELECT status FROM operations"))
            outcome_json = await conn.scalar(sa.text("SELECT outcome FROM operations"))
    finally:
        await engine.dispose()
    assert [(r.type, r.sent) for r in rows] == [("credit.RecordSale", True)]
    assert status == "completed"
    assert json.loads(json.dumps(outcome_json))["sale_id"] == body["sale_id"]
