"""The whole credit process on real Kafka and PostgreSQL: a command in, the outcome out."""

from __future__ import annotations

import uuid

from contracts.topics import CREDIT_EVENTS, POS_COMMANDS
from credit.config import Settings
from credit.entrypoints.app import make_definition
from credit.testing import one_line_sale, settings_snapshot
from servicekit.runtime import create_app
from servicekit.testing import answer_over_kafka, envelope_of


async def test_a_sale_published_on_kafka_comes_back_as_sale_completed(
    kafka_bootstrap_servers: str, fresh_database_url: str
) -> None:
    settings = Settings(
        database_url=fresh_database_url, kafka_bootstrap_servers=kafka_bootstrap_servers
    )
    app = create_app(make_definition(settings))
    cmd = one_line_sale(uuid.uuid4(), None, settings_snapshot(), "7.00", paid_with="cash")
    env = envelope_of(cmd, key=cmd.sale_id)
    got = await answer_over_kafka(
        app,
        kafka_bootstrap_servers,
        (POS_COMMANDS, env),
        CREDIT_EVENTS,
        lambda e: e.type == "credit.SaleCompleted" and e.payload.get("sale_id") == str(cmd.sale_id),
    )
    assert got.correlation_id == env.correlation_id
    assert got.payload["total"] == "7.00" and got.payload["paid"] == "7.00"
