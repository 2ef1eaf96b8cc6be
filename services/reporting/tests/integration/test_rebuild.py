"""`reporting.rebuild` replays real Kafka topics into fresh tables that match the live read
models row by row, and swaps them in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind, CreditMode, DebtPaymentKind, MoneyMethod
from contracts.envelope import Envelope, encode
from contracts.gateway import v1 as gateway
from contracts.loyalty import v1 as loyalty
from reporting.adapters.tables import READ_MODEL_TABLES
from reporting.config import Settings
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.entrypoints.rebuild import rebuild
from reporting.service_layer.projection import make_consumer
from servicekit.db import make_engine, make_session_factory, prepare_database
from servicekit.testing import envelope_of, unique_topic
from servicekit.topics import ensure_topics

D = Decimal
CHAIN, STORE, TERMINAL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)

pytestmark = pytest.mark.integration


def story(customer: uuid.UUID, n: int) -> list[Message]:
    """A customer buys on account, pays part of it and earns bonus."""
    sale_id = uuid.uuid4()
    total = D(10 + n)
    line = credit.SaleLineOutcome(
        line_no=1, sku=None, barcode=f"48{n:011d}", name=f"Item {n}", quantity=D("1"),
        unit_price=total, discount=D("0.00"), amount=total, owed=total,
    )
    return [
        gateway.CustomerRegistered(
            chain_id=CHAIN,
            customer=gateway.CustomerSnapshot(
                customer_id=customer, name=f"Customer {n}", phone=None, vip=n % 2 == 0,
                bonus_accrual=True, credit_limit=None, max_payment_delay_days=None,
                card_number=None,
            ),
            registered_at=T0,
        ),
        credit.SaleCompleted(
            sale_id=sale_id, chain_id=CHAIN, store_id=STORE, terminal_id=TERMINAL,
            customer_id=customer, card_number=None, credit_mode=CreditMode.PER_SALE,
            sold_at=T0 + timedelta(days=n), total=total, paid=D("0.00"), on_account=total,
            advance_applied=D("0.00"), change=D("0.00"), change_to_advance=D("0.00"),
            change_allocated=[], advance_added=D("0.00"),
            due_date=(T0 + timedelta(days=n + 30)).date(), bonus_accrued=D("0.00"),
            bonus_spent=D("0.00"), payments=[], lines=[line],
            customer_balances=credit.CustomerBalances(
                debt=total, advance=D("0.00"), bonus_balance=D("0.00")
            ),
            lines_changed=[credit.LineOwedChange(sale_id=sale_id, line_no=1, owed_after=total)],
        ),
        credit.DebtPaymentRecorded(
            payment_id=uuid.uuid4(), chain_id=CHAIN, customer_id=customer, store_id=STORE,
            terminal_id=TERMINAL, kind=DebtPaymentKind.TAKE_MONEY, method=MoneyMethod.CASH,
            amount=D("5.00"), allocated=[credit.Allocation(sale_id=sale_id, line_no=None,
                                                           amount=D("5.00"))],
            advance_added=D("0.00"), bonus_accrued=D("0.50"),
            occurred_at=T0 + timedelta(days=n + 1),
            customer_balances=credit.CustomerBalances(
                debt=total - 5, advance=D("0.00"), bonus_balance=D("0.50")
            ),
            lines_changed=[
                credit.LineOwedChange(sale_id=sale_id, line_no=1, owed_after=total - 5)
            ],
        ),
        loyalty.BonusMovementRecorded(
            movement_id=uuid.uuid4(), chain_id=CHAIN, customer_id=customer,
            kind=BonusMovementKind.ACCRUED, amount=D("0.50"), store_id=STORE, payment_id=None,
            sale_id=None, operation_id=None, at=T0 + timedelta(days=n + 1),
            balance_after=D("0.50"),
        ),
    ]


async def snapshot(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table in READ_MODEL_TABLES:
            rows = (await conn.execute(sa.select(table))).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


async def test_rebuilt_tables_equal_the_live_ones_row_by_row_and_are_swapped_in(
    fresh_database_url: str, kafka_bootstrap_servers: str
) -> None:
    topic_of = {
        "credit": unique_topic("credit"),
        "loyalty": unique_topic("loyalty"),
        "masterdata": unique_topic("masterdata"),
    }
    topics = list(topic_of.values())
    await ensure_topics(kafka_bootstrap_servers, topics, partitions=3)
    envelopes: list[Envelope] = []
    for n in range(12):
        customer = uuid.uuid4()
        envelopes.extend(envelope_of(m, key=customer) for m in story(customer, n))
    envelopes.append(envelopes[5])  # a relay that published twice: the replay must skip it
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for env in envelopes:
            namespace = env.type.split(".", 1)[0]
            await producer.send_and_wait(topic_of[namespace], encode(env), key=env.key.encode())
    finally:
        await producer.stop()

    # the live projection reads the same topics with its own group
    await prepare_database(MIGRATIONS_DIR, fresh_database_url)
    engine = make_engine(fresh_database_url, pool_size=2)
    live = make_consumer("reporting", topics)
    live.bind(make_session_factory(engine))
    reader = AIOKafkaConsumer(
        *topics, bootstrap_servers=kafka_bootstrap_servers, group_id=f"live-{uuid.uuid4()}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await reader.start()
    seen = 0
    try:
        while seen < len(envelopes):
            batch = await reader.getmany(timeout_ms=2000)
            records = [r for recs in batch.values() for r in recs]
            if records:
                await live.process_records(records)
                seen += len(records)
        assert isinstance(next(iter(reader.assignment())), TopicPartition)
    finally:
        await reader.stop()
    before = await snapshot(engine)
    assert len(before["rm_movements"]) == 12 * 3

    settings = Settings(
        database_url=fresh_database_url, kafka_bootstrap_servers=kafka_bootstrap_servers
    )
    result = await rebuild(settings, topics=topics, verify=True, progress_interval=0)
    assert result.total == len(envelopes)
    assert result.differences == {}
    assert result.swapped
    after = await snapshot(engine)
    assert after == before
    async with engine.connect() as conn:
        leftovers = await conn.scalar(
            sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rm_rebuild_%'")
        )
    assert leftovers == 0
    await engine.dispose()
