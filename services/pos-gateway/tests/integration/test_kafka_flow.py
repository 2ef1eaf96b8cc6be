"""The whole gateway on real Kafka and PostgreSQL: the command leaves through the outbox
relay, and an outcome event consumed from `credit.events.v1` (or, for a payment bonus's
cancellation, loyalty's answer on `loyalty.events.v1`) answers the waiting POS."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts.envelope import make_envelope
from contracts.loyalty.v1 import PaymentBonusCancelled
from contracts.topics import CREDIT_EVENTS, LOYALTY_COMMANDS, LOYALTY_EVENTS, POS_COMMANDS
from pos_gateway.bootstrap import Gateway
from pos_gateway.config import Settings
from pos_gateway.entrypoints.app import make_definition
from servicekit.db import make_engine
from servicekit.runtime import create_app
from servicekit.testing import listener, next_envelope, publish

pytestmark = pytest.mark.integration

OPERATOR = "operator-token-for-kafka-tests-0123"


@pytest.fixture
def gateway_env(
    fresh_database_url: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> pytest.MonkeyPatch:
    monkeypatch.setenv("OPERATOR_TOKEN", OPERATOR)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
    monkeypatch.setenv("GATEWAY_SALE_WAIT_SECONDS", "20")
    return monkeypatch


async def _sold_over_kafka(
    client: httpx.AsyncClient, commands: Any, kafka_bootstrap_servers: str, credit: Any
) -> tuple[dict[str, str], httpx.Response, Any]:
    """A chain (its admin's headers), and a sale of its VIP customer whose command is read
    from Kafka and whose outcome is published there as credit would: the answer, the command."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    chain = (await client.post("/v1/chains", json={"name": "K"}, headers=op)).json()
    admin = {"Authorization": f"Bearer {chain['admin_api_key']}"}
    store = (await client.post("/v1/stores", json={"code": "1", "name": "S"}, headers=admin)).json()
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
    till = {"Authorization": f"Bearer {terminal['api_key']}", "Idempotency-Key": str(uuid.uuid4())}
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
        commands,
        lambda e: str(e.chain_id) == chain["chain_id"] and e.type == "credit.RecordSale",
        within=30,
    )
    assert command.key == customer["customer_id"]
    outcome = credit.sale_completed(command.payload, debt="20.00")
    await publish(kafka_bootstrap_servers, (CREDIT_EVENTS, _answering(outcome, command)))
    return admin, await sale, command


def _answering(payload: Any, command: Any) -> Any:
    return make_envelope(
        payload,
        chain_id=None,
        key=command.key,
        correlation_id=command.correlation_id,
        causation_id=command.message_id,
    )


async def test_a_sale_goes_out_over_kafka_and_its_outcome_from_kafka_answers_201(
    gateway_env: pytest.MonkeyPatch,
    fresh_database_url: str,
    kafka_bootstrap_servers: str,
    credit: Any,
) -> None:
    app = create_app(make_definition(Settings()))
    async with (
        app.router.lifespan_context(app),
        listener(kafka_bootstrap_servers, POS_COMMANDS) as commands,
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            _, response, command = await _sold_over_kafka(
                client, commands, kafka_bootstrap_servers, credit
            )
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


async def test_a_bonus_cancellations_answer_from_kafka_reaches_the_member_that_reads_loyalty(
    gateway_env: pytest.MonkeyPatch, kafka_bootstrap_servers: str, credit: Any
) -> None:
    """The gateway's group has two members: credit's outcomes handed over at once, loyalty's
    events gathered for `GATEWAY_BONUS_ANSWERS_FETCH_WAIT_MS` (kept by the runtime, whose
    service-wide wait is 0 here). Loyalty's answer to a cancellation, published on Kafka,
    answers the request waiting for it."""
    gateway_env.setenv("GATEWAY_BONUS_ANSWERS_FETCH_WAIT_MS", "150")
    settings = Settings()
    gw = Gateway(settings)
    start = gw.start

    def credit_api(request: httpx.Request) -> httpx.Response:
        # the answer carries credit's own debt and advance of the customer
        assert request.url.path.endswith("/credit"), request.url
        return httpx.Response(200, json={"debt": "20.00", "advance": "0.00"})

    def start_with_credit_api(session_factory: Any, **_: Any) -> None:
        start(session_factory, credit_transport=httpx.MockTransport(credit_api))

    gateway_env.setattr(gw, "start", start_with_credit_api)
    definition = make_definition(settings, gw)
    app = create_app(definition)
    async with (
        app.router.lifespan_context(app),
        listener(kafka_bootstrap_servers, POS_COMMANDS, LOYALTY_COMMANDS) as commands,
    ):
        members = {tuple(c.topics): c for c in definition.consumers}
        assert {c.name for c in members.values()} == {"gateway"}
        assert set(members) == {(CREDIT_EVENTS,), (LOYALTY_EVENTS,)}
        assert members[(CREDIT_EVENTS,)].fetch_wait_ms == 0
        assert members[(LOYALTY_EVENTS,)].fetch_wait_ms == 150
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            admin, sold, command = await _sold_over_kafka(
                client, commands, kafka_bootstrap_servers, credit
            )
            assert sold.status_code == 201, sold.text
            payment_id = sold.json()["payments"][0]["payment_id"]
            cancel = asyncio.create_task(
                client.post(
                    f"/v1/payments/{payment_id}/bonus-type",
                    json={"bonus_type": "none"},
                    headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
                )
            )
            asked = await next_envelope(
                commands,
                lambda e: (
                    e.type == "loyalty.CancelPaymentBonus" and e.payload["payment_id"] == payment_id
                ),
                within=30,
            )
            answer = PaymentBonusCancelled(
                payment_id=uuid.UUID(payment_id),
                chain_id=command.chain_id,
                customer_id=uuid.UUID(command.key),
                cancelled=Decimal("6.00"),
                balance_after=Decimal("1.00"),
                already=False,
                cancelled_at=datetime.now(UTC),
            )
            await publish(kafka_bootstrap_servers, (LOYALTY_EVENTS, _answering(answer, asked)))
            response = await cancel
    assert response.status_code == 200, response.text
    assert response.json()["bonus_cancelled"] == "6.00"
    assert response.json()["customer"]["bonus_balance"] == "1.00"
