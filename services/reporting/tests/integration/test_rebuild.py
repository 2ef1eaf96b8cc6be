"""`reporting.rebuild` replays real Kafka topics into fresh tables that match the live read
models row by row, and swaps them in; from the newest snapshot plus the log since once retention
has dropped the older log, and never from a snapshot the log no longer continues."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from reporting_helpers import bonus_movement, debt_payment, sale_completed
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind, CreditMode, DebtPaymentKind
from contracts.envelope import Envelope, encode
from contracts.gateway import v1 as gateway
from contracts.topics import DAY_MS
from reporting.adapters.tables import READ_MODEL_TABLES
from reporting.config import Settings
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.entrypoints.rebuild import RebuildRefused, rebuild
from reporting.service_layer.handlers import make_consumer
from reporting.service_layer.snapshots import list_snapshots, take_snapshot
from servicekit.consumer import Consumer
from servicekit.db import make_engine, make_session_factory, prepare_database
from servicekit.testing import envelope_of, record_of, unique_topic
from servicekit.topics import ensure_topics

D = Decimal
CHAIN, STORE, TERMINAL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)

pytestmark = pytest.mark.integration


def story(customer: uuid.UUID, n: int) -> list[Message]:
    """A customer buys on account, pays part of it and earns bonus."""
    sale_id = uuid.uuid4()
    total = D(10 + n)
    paid_at = T0 + timedelta(days=n + 1)
    line = credit.SaleLineOutcome(
        line_no=1,
        sku=None,
        barcode=f"48{n:011d}",
        name=f"Item {n}",
        quantity=D("1"),
        unit_price=total,
        discount=D("0.00"),
        amount=total,
        owed=total,
    )
    return [
        gateway.CustomerRegistered(
            chain_id=CHAIN,
            customer=gateway.CustomerSnapshot(
                customer_id=customer,
                name=f"Customer {n}",
                phone=None,
                vip=n % 2 == 0,
                bonus_accrual=True,
                credit_limit=None,
                max_payment_delay_days=None,
                card_number=None,
            ),
            registered_at=T0,
        ),
        sale_completed(
            chain_id=CHAIN,
            customer_id=customer,
            sale_id=sale_id,
            when=T0 + timedelta(days=n),
            lines=[line],
            store_id=STORE,
            terminal_id=TERMINAL,
            mode=CreditMode.PER_SALE,
            card_number=None,
        ),
        debt_payment(
            CHAIN,
            STORE,
            TERMINAL,
            customer,
            paid_at,
            "5.00",
            DebtPaymentKind.TAKE_MONEY,
            [(sale_id, None, "5.00")],
            [(sale_id, 1, str(total - 5))],
            credit.CustomerBalances(debt=total - 5, advance=D("0.00"), bonus_balance=D("0.50")),
        ),
        bonus_movement(CHAIN, STORE, customer, BonusMovementKind.ACCRUED, "0.50", paid_at, "0.50"),
    ]


async def snapshot(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table in READ_MODEL_TABLES:
            rows = (await conn.execute(sa.select(table))).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


async def test_rebuilt_tables_equal_the_live_ones_row_by_row_and_are_swapped_in(
    engine: AsyncEngine, fresh_database_url: str, kafka_bootstrap_servers: str
) -> None:
    topic_of = _topic_names()
    topics = list(topic_of.values())
    await ensure_topics(kafka_bootstrap_servers, topics, partitions=3)
    envelopes = _stories(0, 12)
    envelopes.append(envelopes[5])  # a relay that published twice: the replay must skip it
    await _publish(kafka_bootstrap_servers, topic_of, envelopes)

    # the live projection reads the same topics with its own group
    live = make_consumer("reporting", topics)
    live.bind(make_session_factory(engine))
    reader = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=kafka_bootstrap_servers,
        group_id=f"live-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
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


# -- snapshots and finite retention ------------------------------------------------------------
#
# Retention drops a closed segment once its newest record is older than `retention.ms`. The
# records of the "old" phase are produced with a timestamp two days back (as if the chain had
# sold them then); with `segment.ms` at one minute each of them closes its segment at once (its
# segment is "older" than a minute). The topics keep everything until the live projection has
# read the old phase; then they are set to keep one day (as servicekit sets a topic whose
# configuration differs), and the broker drops the old phase at its next retention check
# (devstack checks every 5 s) while the "new" phase stays. (Created with one day from the start,
# retention could drop an old record before a slow consumer had read it: a flaky test on a
# busy machine.) On a broker with Kafka's default check interval (5 min) the wait is longer:
# the tests allow for it.
RETENTION_CHECK_WAIT = 330.0
SHORT_LOG = {"segment.ms": "60000"}


def _stories(first: int, count: int) -> list[Envelope]:
    envelopes: list[Envelope] = []
    for n in range(first, first + count):
        customer = uuid.uuid4()
        envelopes.extend(envelope_of(m, key=customer) for m in story(customer, n))
    return envelopes


def _topic_names() -> dict[str, str]:
    """A new topic for each namespace the stories publish in."""
    return {
        "credit": unique_topic("credit"),
        "loyalty": unique_topic("loyalty"),
        "masterdata": unique_topic("masterdata"),
    }


async def _short_lived_topics(bootstrap: str) -> dict[str, str]:
    topic_of = _topic_names()
    await _keep(bootstrap, list(topic_of.values()), retention_ms=-1)  # for ever, for now
    return topic_of


async def _keep(bootstrap: str, topics: list[str], *, retention_ms: int) -> None:
    await ensure_topics(
        bootstrap, topics, partitions=2, retention_ms=retention_ms, extra_configs=SHORT_LOG
    )


async def _publish(
    bootstrap: str,
    topic_of: dict[str, str],
    envelopes: list[Envelope],
    *,
    age: timedelta = timedelta(0),
) -> None:
    stamp = int((time.time() - age.total_seconds()) * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for env in envelopes:
            namespace = env.type.split(".", 1)[0]
            await producer.send_and_wait(
                topic_of[namespace], encode(env), key=env.key.encode(), timestamp_ms=stamp
            )
    finally:
        await producer.stop()


class Live:
    """The live projection: its own group on the topics, batches of a few records."""

    def __init__(self, bootstrap: str, topics: list[str], engine: Any) -> None:
        self.consumer = make_consumer("reporting", topics)
        self.consumer.bind(make_session_factory(engine))
        self.reader = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=f"live-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.seen = 0

    async def consume(self, until: int, *, max_records: int = 5) -> None:
        async with asyncio.timeout(120):
            while self.seen < until:
                batch = await self.reader.getmany(timeout_ms=1000, max_records=max_records)
                records = [r for recs in batch.values() for r in recs]
                if records:
                    await self.consumer.process_records(records)
                    await self.reader.commit()
                    self.seen += len(records)


async def _ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (0, 1)]
        return dict(await reader.end_offsets(parts))
    finally:
        await reader.stop()


async def _until_log_starts_at(bootstrap: str, wanted: dict[TopicPartition, int]) -> None:
    """Keep the topics one day from now on, then wait until retention has moved each
    partition's log start offset to `wanted`."""
    await _keep(bootstrap, sorted({tp.topic for tp in wanted}), retention_ms=DAY_MS)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        async with asyncio.timeout(RETENTION_CHECK_WAIT):
            while True:
                begin = await reader.beginning_offsets(list(wanted))
                if all(begin[tp] >= offset for tp, offset in wanted.items()):
                    assert begin == wanted, "retention dropped more than the old phase"
                    return
                await asyncio.sleep(1.0)
    finally:
        await reader.stop()


@pytest.mark.timeout(600)
async def test_a_rebuild_from_the_newest_snapshot_equals_the_live_models_after_retention(
    fresh_database_url: str, kafka_bootstrap_servers: str
) -> None:
    bootstrap = kafka_bootstrap_servers
    topic_of = await _short_lived_topics(bootstrap)
    topics = list(topic_of.values())
    old, new = _stories(0, 8), _stories(8, 8)
    new.append(old[5])  # a relay that published an old message again: still skipped
    await prepare_database(MIGRATIONS_DIR, fresh_database_url)
    engine = make_engine(fresh_database_url, pool_size=4)
    live = Live(bootstrap, topics, engine)
    await live.reader.start()
    try:
        await _publish(bootstrap, topic_of, old, age=timedelta(days=2))
        old_ends = await _ends(bootstrap, topics)
        await live.consume(len(old))
        await _publish(bootstrap, topic_of, new)
        # the snapshot is taken while the live consumer applies the new phase batch by batch
        consuming = asyncio.create_task(live.consume(len(old) + len(new), max_records=3))
        await asyncio.sleep(0.05)
        snap = await take_snapshot(engine, "reporting")
        await consuming
    finally:
        await live.reader.stop()
    assert snap is not None
    # a partition the old phase left empty (keys are random) has no position yet: offset 0
    assert all(
        snap.positions.get((tp.topic, tp.partition), 0) >= end for tp, end in old_ends.items()
    )
    await _until_log_starts_at(bootstrap, old_ends)
    before = await snapshot(engine)

    settings = Settings(database_url=fresh_database_url, kafka_bootstrap_servers=bootstrap)
    result = await rebuild(settings, topics=topics, verify=True, progress_interval=0)
    assert result.snapshot_id == snap.snapshot_id
    assert result.snapshot_rows == snap.rows > 0
    # only what the snapshot does not hold was read from the log
    assert result.total == sum(
        end - snap.positions.get((tp.topic, tp.partition), 0)
        for tp, end in (await _ends(bootstrap, topics)).items()
    )
    assert result.differences == {}
    assert result.swapped
    assert await snapshot(engine) == before
    await engine.dispose()


@pytest.mark.timeout(600)
async def test_a_rebuild_is_refused_when_retention_dropped_what_no_snapshot_covers(
    engine: AsyncEngine, fresh_database_url: str, kafka_bootstrap_servers: str
) -> None:
    bootstrap = kafka_bootstrap_servers
    topic_of = await _short_lived_topics(bootstrap)
    topics = list(topic_of.values())
    settings = Settings(database_url=fresh_database_url, kafka_bootstrap_servers=bootstrap)
    stale = await take_snapshot(engine, "reporting")  # before anything was sold
    assert stale is not None and stale.positions == {}
    old, new = _stories(0, 6), _stories(6, 2)
    live = Live(bootstrap, topics, engine)
    await live.reader.start()
    try:
        await _publish(bootstrap, topic_of, old, age=timedelta(days=2))
        old_ends = await _ends(bootstrap, topics)
        await _publish(bootstrap, topic_of, new)
        await live.consume(len(old) + len(new))
    finally:
        await live.reader.stop()
    await _until_log_starts_at(bootstrap, old_ends)
    before = await snapshot(engine)

    with pytest.raises(RebuildRefused, match=rf"snapshot #{stale.snapshot_id} .* older than"):
        await rebuild(settings, topics=topics, progress_interval=0)
    with pytest.raises(RebuildRefused, match=r"no snapshot .* no longer starts at offset 0"):
        await rebuild(settings, topics=topics, progress_interval=0, from_log=True)
    assert await snapshot(engine) == before  # the live read models are untouched
    async with engine.connect() as conn:
        leftovers = await conn.scalar(
            sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rm_rebuild_%'")
        )
        assert [s.snapshot_id for s in await list_snapshots(conn)] == [stale.snapshot_id]
    assert leftovers == 0


async def test_the_projection_records_its_position_past_duplicates_and_dead_letters(
    engine: AsyncEngine,
) -> None:
    consumer: Consumer = make_consumer("reporting")
    consumer.bind(make_session_factory(engine))
    first = _stories(0, 1)[0]
    applied = record_of(first, partition=0, offset=10)
    again = dataclasses.replace(applied, offset=11)  # the same message published twice
    poison = dataclasses.replace(applied, partition=1, offset=5, value=b"\x00not json")
    await consumer.process_records([applied, again, poison])
    redelivered = dataclasses.replace(applied, offset=3)  # an old batch again: no step back
    await consumer.process_records([redelivered])
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT partition, next_offset FROM consumer_positions "
                    "WHERE consumer = 'reporting' ORDER BY partition"
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [(0, 12), (1, 6)]
