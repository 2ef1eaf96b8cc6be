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

from contracts.envelope import make_envelope
from contracts.topics import CREDIT_EVENTS, POS_COMMANDS
from pos_gateway.config import Settings
from pos_gateway.entrypoints.app import make_definition
from servicekit.db import make_engine
from servicekit.runtime import create_app
from servicekit.testing import listener, next_envelope, publish

pytestmark = pytest.mark.integration

OPERATOR = "operator-token-for-kafka-tests-0123"


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
    app = create_app(make_definition(Settings()))
    async with (
        app.router.lifespan_context(app),
        listener(kafka_bootstrap_servers, POS_COMMANDS) as credit_side,
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            op = {"Authorization": f"Bearer {OPERATOR}"}
            chain = (await client.post("/v1/chains", json={"name": "K"}, headers=op)).json()
            admin = {"Authorization": f"Bearer {chain['admin_api_key']}"}
            store = (
                await client.post("/v1/stores", json={"code": "1", "name": "S"}, headers=admin)
            ).json()
            terminal = (
                await client.post(
                    f"/v1/stores/{store['store_id']}/terminals", json={"name": "T"}, headers=admin
                )
            ).json()
            customer = (
                await client.post(
                    "/v1/customers",
                    json={"name": "Ana", "phone": "1", "vip": True, "card_number": "K-1"},
                    headers=admin,
                )
            ).json()
            till = {
                "Authorization": f"Bearer {terminal['api_key']}",
                "Idempotency-Key": str(uuid.uuid4()),
            }
            sale = asyncio.create_task(
                client.post(
                    "/v1/sales",
                    headers=till,
                    json={
                        "card_number": "K-1",
                        "lines": [{"name": "Dress", "quantity": "2", "unit_price": "30.00"}],
                        "payments": [
                            {"method": "cash", "amount": "40.00"},
                            {"method": "on_account", "amount": "20.00"},
                        ],
                    },
                )
            )
            # the first RecordSale of this test's chain (the topic holds other runs' too)
            command = await next_envelope(
                credit_side,
                lambda e: str(e.chain_id) == chain["chain_id"] and e.type == "credit.RecordSale",
                within=30,
            )
            assert command.key == customer["customer_id"]
            outcome = credit.sale_completed(command.payload, debt="20.00")
            env = make_envelope(
                outcome,
                chain_id=None,
                key=command.key,
                correlation_id=command.correlation_id,
                causation_id=command.message_id,
            )
            await publish(kafka_bootstrap_servers, (CREDIT_EVENTS, env))
            response = await sale
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
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT type, sent_at IS NOT NULL AS sent FROM outbox WHERE topic = :t"
                    ),
                    {"t": POS_COMMANDS},
                )
            ).all()
            status = await conn.scalar(sa.text("SELECT status FROM operations"))
            outcome_json = await conn.scalar(sa.text("SELECT outcome FROM operations"))
    finally:
        await engine.dispose()
    assert [(r.type, r.sent) for r in rows] == [("credit.RecordSale", True)]
    assert status == "completed"
    assert json.loads(json.dumps(outcome_json))["sale_id"] == body["sale_id"]
