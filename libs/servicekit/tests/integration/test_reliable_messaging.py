"""Outbox, inbox and dead letters against real PostgreSQL and real Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import (
    SCHEMA_VERSION_HEADER,
    TYPE_HEADER,
    Envelope,
    decode,
    encode,
    headers_of,
    make_envelope,
)
from contracts.topics import DEAD_LETTERS
from servicekit.consumer import Consumer, MessageContext, PermanentError
from servicekit.db import make_engine, make_session_factory, plain_url
from servicekit.outbox import OutboxRelay, enqueue
from servicekit.runtime import make_broker
from servicekit.schema import OUTBOX, messaging_tables
from servicekit.settings import ServiceSettings, bootstrap_list
from servicekit.testing import carrier_letter, unique_topic
from servicekit.topics import ensure_topics

pytestmark = pytest.mark.integration

METADATA = sa.MetaData()
messaging_tables(METADATA)
EFFECTS = sa.Table(
    "effects",
    METADATA,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("amount", sa.Numeric(18, 2), nullable=False),
)


def _any_registered_model() -> BaseModel:
    """A real registered message to carry through the pipe (a dead letter is the simplest)."""
    return carrier_letter()


def _envelope(key: str = "customer-1") -> Envelope:
    return make_envelope(
        _any_registered_model(), chain_id=uuid.uuid4(), key=key, correlation_id=uuid.uuid4()
    )


def _poison() -> Envelope:
    """A message whose handler (`reason == "poison"`) fails for good."""
    return make_envelope(
        _any_registered_model().model_copy(update={"reason": "poison"}),
        chain_id=None,
        key="customer-1",
        correlation_id=uuid.uuid4(),
    )


@pytest.fixture
async def session_factory(fresh_database_url: str) -> AsyncIterator[Any]:
    engine = make_engine(fresh_database_url, pool_size=5)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    yield make_session_factory(engine)
    await engine.dispose()


def _recording_consumer(topic: str, fail_first: list[BaseException] | None = None) -> Consumer:
    failures = list(fail_first or [])

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        if failures:
            raise failures.pop(0)
        if payload.reason == "poison":
            raise PermanentError("this message can never be applied")
        await ctx.session.execute(
            sa.insert(EFFECTS).values(
                message_id=str(ctx.envelope.message_id), amount=Decimal("1.10")
            )
        )

    return Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=[topic],
        handlers={DeadLetter: apply},
        retry_backoff_seconds=0.01,
    )


def _record(
    env: Envelope | bytes,
    topic: str = "t",
    offset: int = 0,
    headers: dict[str, str] | None = None,
) -> Any:
    """A record as Kafka delivers it; `headers` as the outbox relay would set them."""
    from aiokafka.structs import ConsumerRecord

    value = env if isinstance(env, bytes) else encode(env)
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"customer-1",
        value=value,
        checksum=None,
        serialized_key_size=10,
        serialized_value_size=len(value),
        headers=tuple((k, v.encode()) for k, v in (headers or {}).items()),
    )


async def _count(session_factory: Any, table: sa.Table, *where: Any) -> int:
    async with session_factory() as session:
        return int(
            await session.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0
        )


@pytest.mark.parametrize("sort", [True, False])
async def test_a_batch_sorted_by_key_keeps_each_keys_order(
    session_factory: Any, sort: bool
) -> None:
    """`sort_batch_by_key`: the handlers see the batch in key order, one key's messages in the
    order they came; without it, in the order they came."""
    from servicekit.testing import carrier_letter, record_of

    seen: list[tuple[str, int]] = []

    async def note(ctx: MessageContext, letter: DeadLetter) -> None:
        seen.append((ctx.envelope.key, letter.offset))

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: note},
        sort_batch_by_key=sort,
    )
    consumer.bind(session_factory)
    came = [("customer-b", 1), ("customer-a", 2), ("customer-b", 3), ("customer-a", 4)]
    await consumer.process_records(
        [record_of(carrier_letter(offset=n), key=key) for key, n in came]
    )
    by_key = [("customer-a", 2), ("customer-a", 4), ("customer-b", 1), ("customer-b", 3)]
    assert seen == (by_key if sort else came)


async def test_a_redelivered_message_is_applied_once(session_factory: Any) -> None:
    consumer = _recording_consumer("t")
    consumer.bind(session_factory)
    env = _envelope()

    await consumer.process_records([_record(env, offset=0)])
    await consumer.process_records([_record(env, offset=0)])  # redelivery of the same offset
    await consumer.process_records([_record(env, offset=7), _record(env, offset=8)])  # re-published

    assert await _count(session_factory, EFFECTS) == 1


async def test_a_failed_batch_applies_nothing_and_succeeds_when_redelivered(
    session_factory: Any,
) -> None:
    consumer = _recording_consumer("t", fail_first=[ConnectionError("database went away")])
    consumer.bind(session_factory)
    first, second = _envelope(), _envelope()
    batch = [_record(first, offset=0), _record(second, offset=1)]

    with pytest.raises(ConnectionError):
        await consumer.process_records(batch)
    assert await _count(session_factory, EFFECTS) == 0

    await consumer.process_records(batch)
    assert await _count(session_factory, EFFECTS) == 2


async def test_poison_messages_are_dead_lettered_and_the_rest_of_the_batch_applies(
    session_factory: Any,
) -> None:
    consumer = _recording_consumer("t")
    consumer.bind(session_factory)
    poison = _poison()
    good = _envelope()
    batch = [
        _record(b"not json at all", offset=0),
        _record(poison, offset=1),
        _record(good, offset=2),
    ]

    await consumer.process_records(batch)
    await consumer.process_records(batch)  # the same failures redelivered: no second letter

    assert await _count(session_factory, EFFECTS) == 1
    assert await _count(session_factory, OUTBOX, OUTBOX.c.topic == DEAD_LETTERS) == 2
    async with session_factory() as session:
        values = (await session.execute(sa.select(OUTBOX.c.value))).scalars().all()
    reasons = sorted(decode(v).payload["reason"] for v in values)
    assert reasons[0].startswith("this message can never be applied")
    assert reasons[1].startswith("undecodable message")


async def test_what_replaces_a_dead_lettered_message_is_applied_in_its_own_savepoint(
    session_factory: Any,
) -> None:
    """`on_dead_letter` runs right after the message is dead-lettered, in the same transaction:
    its effect stays; when it fails too, only its own work is rolled back and the dead letter
    and the rest of the batch still apply."""
    consumer = _recording_consumer("t")
    calls: list[str] = []

    async def instead(ctx: MessageContext, payload: DeadLetter, reason: str) -> None:
        calls.append(reason)
        await ctx.session.execute(
            sa.insert(EFFECTS).values(
                message_id=f"instead:{ctx.envelope.message_id}", amount=Decimal("0")
            )
        )
        if len(calls) == 2:
            raise RuntimeError("the replacement is broken as well")

    consumer.on_dead_letter = {DeadLetter: instead}
    consumer.bind(session_factory)

    def poison() -> Envelope:
        return make_envelope(
            _any_registered_model().model_copy(update={"reason": "poison"}),
            chain_id=None,
            key="customer-1",
            correlation_id=uuid.uuid4(),
        )

    first, second, good = poison(), poison(), _envelope()
    await consumer.process_records([_record(first, offset=0), _record(good, offset=1)])
    await consumer.process_records([_record(second, offset=2)])

    assert calls == ["this message can never be applied"] * 2
    assert (
        await _count(
            session_factory, EFFECTS, EFFECTS.c.message_id == f"instead:{first.message_id}"
        )
        == 1
    )
    assert (
        await _count(
            session_factory, EFFECTS, EFFECTS.c.message_id == f"instead:{second.message_id}"
        )
        == 0
    )
    assert await _count(session_factory, EFFECTS, EFFECTS.c.message_id == str(good.message_id)) == 1
    assert await _count(session_factory, OUTBOX, OUTBOX.c.topic == DEAD_LETTERS) == 2


async def _lock_is_free(session_factory: Any, key: int) -> bool:
    """Whether another connection (not one of the pool's, which may be the relay's own) could
    take the relay's lock now; it lets it go again at once."""
    engine = session_factory.kw["bind"]
    conn = await asyncpg.connect(plain_url(engine.url.render_as_string(hide_password=False)))
    try:
        async with conn.transaction():
            return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1::bigint)", key))
    finally:
        await conn.close()


@pytest.mark.parametrize("connection", ["own", "borrowed"])
async def test_a_relay_wake_up_is_two_round_trips_and_a_failed_publish_leaves_rows_and_lock_free(
    session_factory: Any, kafka_bootstrap_servers: str, connection: str
) -> None:
    """A wake-up that publishes sends two statements and nothing else (no BEGIN, no COMMIT):
    the lock with the rows, then, once Kafka acknowledged them, the mark with the lock let go.
    A publish that fails leaves the rows unsent and the lock free for the other relays, on the
    relay's own connection (closed) and on one borrowed from the pool (discarded)."""
    from faststream.exceptions import IncorrectState

    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    async with session_factory() as session, session.begin():
        for _ in range(3):
            await enqueue(session, topic, _envelope())
    service = f"svc-{uuid.uuid4().hex[:6]}"
    stopped = KafkaBroker(bootstrap_list(kafka_bootstrap_servers))  # never connected
    failing = OutboxRelay(service=service, session_factory=session_factory, broker=stopped)
    if connection == "own":
        await failing.open()
    with pytest.raises(IncorrectState, match="connect broker first"):
        await failing.publish_once()
    assert await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)) == 3
    assert await _lock_is_free(session_factory, failing._lock_key)  # noqa: SLF001

    broker = KafkaBroker(bootstrap_list(kafka_bootstrap_servers), acks="all")
    await broker.start()
    relay = OutboxRelay(service=service, session_factory=session_factory, broker=broker)
    await relay.open()
    sent: list[str] = []
    try:
        assert await relay.publish_once() == 3
        assert await _lock_is_free(session_factory, relay._lock_key)  # noqa: SLF001
        # counted once the connection knows the statements' types (asyncpg asks on first use)
        relay._own.add_query_logger(lambda record: sent.append(record.query))  # type: ignore[union-attr]  # noqa: SLF001
        async with session_factory() as session, session.begin():
            await enqueue(session, topic, _envelope())
        assert await relay.publish_once() == 1
        await asyncio.sleep(0)  # the query loggers are called soon after each query
        assert len(sent) == 2, sent
        assert "pg_try_advisory_lock" in sent[0] and "FROM outbox" in sent[0]
        assert "UPDATE outbox SET sent_at" in sent[1] and "pg_advisory_unlock" in sent[1]
        assert await _lock_is_free(session_factory, relay._lock_key)  # noqa: SLF001
        # nothing left: one round trip, which lets the lock go by itself (and, at most once a
        # minute, the purge of rows sent long ago)
        sent.clear()
        assert await relay.publish_once() == 0
        await asyncio.sleep(0)
        assert len([q for q in sent if not q.startswith("DELETE FROM outbox")]) == 1, sent
        assert await _lock_is_free(session_factory, relay._lock_key)  # noqa: SLF001
    finally:
        await relay.close()
        await broker.stop()
    assert await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)) == 0


async def _read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first `count` records of `topic`, in the order of its (one key's) partition."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while len(records) < count:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "timed out waiting for relayed messages"
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def test_rows_committed_during_a_publish_are_taken_by_the_statement_that_marks_it(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """While a wake-up's rows are published, a commit writes more: the statement that marks the
    first rows sent takes them (the lock kept), they are published in turn, and the statement
    that marks those finds nothing and lets the lock go. Two cycles, three round trips (two
    each before), every row once, in id order."""
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    written = [_envelope() for _ in range(3)]
    async with session_factory() as session, session.begin():
        for env in written[:2]:
            await enqueue(session, topic, env)
    broker = KafkaBroker(bootstrap_list(kafka_bootstrap_servers), acks="all")
    await broker.start()
    relay = OutboxRelay(
        service=f"svc-{uuid.uuid4().hex[:6]}", session_factory=session_factory, broker=broker
    )
    await relay.open()
    publish = broker.publish
    calls = 0

    async def publish_and_commit_another(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # a commit lands while the first rows are on their way
            async with session_factory() as session, session.begin():
                await enqueue(session, topic, written[2])
        return await publish(*args, **kwargs)

    sent: list[str] = []
    try:
        await relay._own.fetchval("SELECT 1")  # type: ignore[union-attr]  # noqa: SLF001
        relay._own.add_query_logger(lambda record: sent.append(record.query))  # type: ignore[union-attr]  # noqa: SLF001
        broker.publish = publish_and_commit_another  # type: ignore[method-assign]
        assert await relay.publish_once() == 3
        await asyncio.sleep(0)
        # the relay's own statements (asyncpg also asks for a new statement's types once)
        statements = [q for q in sent if "outbox" in q and not q.startswith("DELETE FROM outbox")]
        assert len(statements) == 3, statements
        assert "pg_try_advisory_lock" in statements[0]
        assert all("UPDATE outbox SET sent_at" in q for q in statements[1:])
        assert await _lock_is_free(session_factory, relay._lock_key)  # noqa: SLF001
    finally:
        broker.publish = publish  # type: ignore[method-assign]
        await relay.close()
        await broker.stop()
    assert await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)) == 0
    received = await _read_topic(kafka_bootstrap_servers, topic, 3)
    assert [decode(r.value).message_id for r in received] == [env.message_id for env in written]


async def test_the_relay_publishes_outbox_rows_in_order_and_marks_them_sent(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=3)
    envs = [_envelope(key="customer-7") for _ in range(25)]
    async with session_factory() as session, session.begin():
        for env in envs:
            await enqueue(session, topic, env)

    broker = KafkaBroker(
        bootstrap_list(kafka_bootstrap_servers), acks="all", enable_idempotence=True
    )
    await broker.start()
    relay = OutboxRelay(
        service=f"svc-{uuid.uuid4().hex[:6]}", session_factory=session_factory, broker=broker
    )
    try:
        assert await relay.publish_once() == 25
        assert await relay.publish_once() == 0
    finally:
        await broker.stop()

    assert await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)) == 0
    records = await _read_topic(kafka_bootstrap_servers, topic, 25)
    assert [decode(r.value).message_id for r in records] == [e.message_id for e in envs]
    headers = [dict(r.headers) for r in records]
    # each record names its message in headers too, for consumers that pass it over undecoded
    assert all(h[TYPE_HEADER] == envs[0].type.encode() for h in headers)
    assert all(h[SCHEMA_VERSION_HEADER] == str(envs[0].schema_version).encode() for h in headers)


async def test_a_crash_between_the_database_commit_and_the_offset_commit_applies_once(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
    await producer.start()
    env = _envelope()
    await producer.send_and_wait(topic, encode(env), key=b"customer-1")
    await producer.stop()
    consumer = _recording_consumer(topic)

    # first life: the effect commits, then the process dies before committing the offset
    raw = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap_servers,
        group_id=consumer.name,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await raw.start()
    try:
        fetched = await raw.getmany(timeout_ms=10000)
        records = [r for rs in fetched.values() for r in rs]
        assert len(records) == 1
        consumer.bind(session_factory)
        await consumer.process_records(records)
    finally:
        await raw.stop()  # no commit: the crash
    assert await _count(session_factory, EFFECTS) == 1

    # second life: the real subscriber gets the same message again and must skip it
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap_servers)
    broker = make_broker(settings, "crash-test")
    consumer.attach(broker, session_factory)
    await broker.start()
    try:
        for _ in range(100):
            async with session_factory() as session:
                seen = await session.scalar(sa.text("SELECT count(*) FROM inbox"))
            redelivered = consumer_seen_duplicate(consumer)
            if redelivered:
                break
            await asyncio.sleep(0.1)
        assert redelivered, "the uncommitted message was not redelivered"
        assert seen == 1
    finally:
        await broker.stop()
    assert await _count(session_factory, EFFECTS) == 1


def consumer_seen_duplicate(consumer: Consumer) -> bool:
    from servicekit import metrics

    return any(
        sample.value >= 1
        for metric in metrics.MESSAGES_DUPLICATE.collect()
        for sample in metric.samples
        if sample.labels.get("consumer") == consumer.name and sample.name.endswith("_total")
    )


def _counted(counter: Any, consumer: Consumer) -> float:
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.labels.get("consumer") == consumer.name and sample.name.endswith("_total")
    )


def _statements(session_factory: Any) -> list[str]:
    """Every SQL statement the factory's engine runs from now on, in order."""
    seen: list[str] = []
    engine = session_factory.kw["bind"].sync_engine
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt))
    return seen


async def test_a_poison_message_in_a_fast_path_batch_is_dead_lettered_alone_without_an_inbox_row(
    session_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from servicekit import metrics
    from servicekit.schema import INBOX

    fixed = False

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        await ctx.session.execute(
            sa.insert(EFFECTS).values(
                message_id=str(ctx.envelope.message_id), amount=Decimal("1.10")
            )
        )
        if payload.reason == "poison" and not fixed:  # after its own write: that must go too
            raise PermanentError("this message can never be applied")

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}", topics=["t"], handlers={DeadLetter: apply}
    )
    consumer.bind(session_factory)
    poison = _poison()
    good = [_envelope() for _ in range(4)]
    batch = [_record(e, offset=i) for i, e in enumerate([good[0], good[1], poison, *good[2:]])]
    statements = _statements(session_factory)

    await consumer.process_records(batch)

    # it started on the fast path (handlers ran without savepoints, one inbox statement) and
    # went the slow way only when the poison failed
    first_savepoint = next(i for i, s in enumerate(statements) if "SAVEPOINT" in s)
    fast = statements[:first_savepoint]
    assert sum("INSERT INTO inbox" in s for s in fast) == 1
    assert sum("INSERT INTO effects" in s for s in fast) == 3  # good, good, poison
    assert "again with a savepoint per message" in caplog.text
    # the rest applied once, the poison's own write and inbox row are gone, one dead letter
    async with session_factory() as session:
        applied = set((await session.execute(sa.select(EFFECTS.c.message_id))).scalars())
        inbox = set(
            (
                await session.execute(
                    sa.select(INBOX.c.message_id).where(INBOX.c.consumer == consumer.name)
                )
            ).scalars()
        )
    assert applied == {str(e.message_id) for e in good}
    assert inbox == {e.message_id for e in good}
    assert await _count(session_factory, OUTBOX, OUTBOX.c.topic == DEAD_LETTERS) == 1
    # counted once each, although the fast path had already got past two good messages
    assert _counted(metrics.MESSAGES_PROCESSED, consumer) == 4
    assert _counted(metrics.MESSAGES_DEAD_LETTERED, consumer) == 1
    assert _counted(metrics.MESSAGES_DUPLICATE, consumer) == 0

    # re-driven after the fix: applied exactly once, the rest are duplicates
    fixed = True
    redelivered = [*good, poison]
    await consumer.process_records([_record(e, offset=10 + i) for i, e in enumerate(redelivered)])
    assert await _count(session_factory, EFFECTS) == 5
    assert _counted(metrics.MESSAGES_DUPLICATE, consumer) == 4
    assert _counted(metrics.MESSAGES_PROCESSED, consumer) == 5


@pytest.mark.parametrize(
    "without_inbox",
    [{"inbox": False}, {"no_inbox_for": frozenset({DeadLetter})}],
    ids=["inbox=False", "no_inbox_for"],
)
async def test_a_consumer_without_an_inbox_runs_its_idempotent_handler_again_on_a_redelivery(
    session_factory: Any, without_inbox: dict[str, Any]
) -> None:
    """`inbox=False`, or the message's model in `no_inbox_for`: no inbox statement and no inbox
    row; a message delivered again runs its handler again (here idempotent by itself: an insert
    of a row not there yet), a copy within one batch runs it once, and a poison message is still
    dead-lettered alone on the slow path."""
    from servicekit.schema import INBOX

    runs: list[str] = []

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        if payload.reason == "poison":
            raise PermanentError("this message can never be applied")
        runs.append(str(ctx.envelope.message_id))
        message_id = str(ctx.envelope.message_id)
        await ctx.session.execute(  # once per message, however often it comes
            sa.insert(EFFECTS).from_select(
                ["message_id", "amount"],
                sa.select(sa.literal(message_id), sa.literal(Decimal("1.10"))).where(
                    ~sa.exists().where(EFFECTS.c.message_id == message_id)
                ),
            )
        )

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: apply},
        **without_inbox,
    )
    consumer.bind(session_factory)
    first, second = _envelope(), _envelope()
    statements = _statements(session_factory)

    await consumer.process_records([_record(first, offset=0), _record(first, offset=1)])
    assert not any("inbox" in s for s in statements)
    assert runs == [str(first.message_id)]  # the copy within the batch is passed over
    await consumer.process_records([_record(first, offset=0)])  # delivered again
    assert runs == [str(first.message_id)] * 2
    # the slow path: the poison dead-lettered alone, the rest applied, still no inbox
    await consumer.process_records(
        [_record(second, offset=2), _record(_poison(), offset=3), _record(first, offset=4)]
    )
    # the fast path ran `second`, then the poison failed it; the slow path ran both
    assert runs[2:] == [str(second.message_id)] * 2 + [str(first.message_id)]
    assert not any("inbox" in s for s in statements)
    assert await _count(session_factory, EFFECTS) == 2
    assert await _count(session_factory, OUTBOX, OUTBOX.c.topic == DEAD_LETTERS) == 1
    assert await _count(session_factory, INBOX) == 0


async def test_a_message_alone_in_its_batch_of_a_model_declared_one_statement_commits_without_begin(
    session_factory: Any,
) -> None:
    """`autocommit_for`: a batch with one message to handle, of such a model, sends its one
    statement alone (no BEGIN, no COMMIT) and it is applied; a batch of two has its
    transaction; a handler that sends a second statement there fails with
    `OneStatementOnly` before sending it (its first one, idempotent as a handler without an
    inbox must be, has committed), and its message is applied in a transaction on the slow
    path once its attempts are spent."""
    from servicekit.sql import OneStatementOnly, execute
    from servicekit.testing import queries_sent

    # once per message id, however often it comes
    insert = (
        "INSERT INTO effects (message_id, amount) SELECT $1, $2"
        " WHERE NOT EXISTS (SELECT FROM effects WHERE message_id = $1)"
    )
    twice: set[str] = set()

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        message_id = str(ctx.envelope.message_id)
        await execute(ctx.db, insert, message_id, Decimal("1.10"))
        if message_id in twice:
            await execute(ctx.db, insert, f"{message_id}/2", Decimal("2.20"))

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: apply},
        inbox=False,
        autocommit_for=frozenset({DeadLetter}),
        retry_backoff_seconds=0,
    )
    consumer.bind(session_factory)
    engine = session_factory.kw["bind"]
    alone, first, second, bad = _envelope(), _envelope(), _envelope(), _envelope()
    async with queries_sent(engine) as sent:
        await consumer.process_records([_record(alone, offset=0)])
    assert sent == ["INSERT"], sent
    async with queries_sent(engine) as sent:
        await consumer.process_records([_record(first, offset=1), _record(second, offset=2)])
    assert sent == ["BEGIN", "INSERT", "INSERT", "COMMIT"], sent
    twice.add(str(bad.message_id))
    for _ in range(consumer.max_attempts - 1):
        with pytest.raises(OneStatementOnly):
            await consumer.process_records([_record(bad, offset=3)])
    # the last attempt is the slow path's, in a transaction: both statements, once
    await consumer.process_records([_record(bad, offset=3)])
    async with session_factory() as session:
        rows = (await session.execute(sa.select(EFFECTS.c.message_id, EFFECTS.c.amount))).all()
    assert sorted(rows) == sorted(
        [
            (str(alone.message_id), Decimal("1.10")),
            (str(first.message_id), Decimal("1.10")),
            (str(second.message_id), Decimal("1.10")),
            (str(bad.message_id), Decimal("1.10")),
            (f"{bad.message_id}/2", Decimal("2.20")),
        ]
    ), rows


async def test_a_batch_writes_the_events_of_all_its_messages_to_the_outbox_in_one_statement(
    session_factory: Any,
) -> None:
    async def emit_three(ctx: MessageContext, payload: DeadLetter) -> None:
        for n in range(3):
            await ctx.emit(
                "events.v1", payload.model_copy(update={"reason": f"{n}"}), key=ctx.envelope.key
            )

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}", topics=["t"], handlers={DeadLetter: emit_three}
    )
    consumer.bind(session_factory)
    envs = [_envelope() for _ in range(5)]
    statements = _statements(session_factory)

    await consumer.process_records([_record(e, offset=i) for i, e in enumerate(envs)])

    assert sum("INSERT INTO outbox" in s for s in statements) == 1
    async with session_factory() as session:
        rows = (await session.execute(sa.select(OUTBOX.c.value).order_by(OUTBOX.c.id))).all()
    # every event, in the order the handlers emitted them (the relay publishes in id order)
    written = [(decode(r.value).causation_id, decode(r.value).payload["reason"]) for r in rows]
    assert written == [(e.message_id, f"{n}") for e in envs for n in range(3)]


async def test_events_of_a_message_rolled_back_on_the_slow_path_never_reach_the_outbox(
    session_factory: Any,
) -> None:
    async def emit_then_maybe_fail(ctx: MessageContext, payload: DeadLetter) -> None:
        await ctx.emit("events.v1", payload, key=ctx.envelope.key)
        if payload.reason == "poison":  # after its own event: that must go too
            raise PermanentError("this message can never be applied")

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: emit_then_maybe_fail},
    )
    consumer.bind(session_factory)
    poison = _poison()
    good = [_envelope(), _envelope()]

    await consumer.process_records(
        [_record(e, offset=i) for i, e in enumerate([good[0], poison, good[1]])]
    )

    async with session_factory() as session:
        rows = (
            await session.execute(sa.select(OUTBOX.c.topic, OUTBOX.c.value).order_by(OUTBOX.c.id))
        ).all()
    events = [decode(r.value).causation_id for r in rows if r.topic == "events.v1"]
    assert events == [good[0].message_id, good[1].message_id]
    assert [r.topic for r in rows].count(DEAD_LETTERS) == 1


async def test_the_relay_sends_nothing_while_another_relay_of_the_service_holds_the_lock(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    async with session_factory() as session, session.begin():
        for env in [_envelope(), _envelope()]:
            await enqueue(session, topic, env)
    broker = KafkaBroker(kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    await broker.start()
    relay = OutboxRelay(
        service=f"svc-{uuid.uuid4().hex[:6]}", session_factory=session_factory, broker=broker
    )
    statements = _statements(session_factory)
    try:
        async with session_factory() as other, other.begin():
            await other.execute(
                sa.select(sa.func.pg_advisory_xact_lock(relay._lock_key))  # noqa: SLF001
            )
            assert await relay.publish_once() == 0
            assert await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)) == 2
        assert await relay.publish_once() == 2  # the other relay is gone
        assert await relay.publish_once() == 0  # and nothing is left
    finally:
        await broker.stop()
    claims = [s for s in statements if "pg_try_advisory_lock" in s]
    assert claims and all("FROM outbox" in s for s in claims)  # lock and rows: one round trip


async def test_a_message_failing_every_attempt_is_dead_lettered_on_the_last_and_the_rest_applies(
    session_factory: Any,
) -> None:
    from servicekit import metrics

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        if payload.reason == "poison":
            raise ValueError("a bug in the handler")
        await ctx.session.execute(
            sa.insert(EFFECTS).values(
                message_id=str(ctx.envelope.message_id), amount=Decimal("1.10")
            )
        )

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: apply},
        retry_backoff_seconds=0.01,
        max_attempts=3,
    )
    consumer.bind(session_factory)
    poison = _poison()
    batch = [_record(e, offset=i) for i, e in enumerate([_envelope(), poison, _envelope()])]

    for _ in range(2):  # attempts 1 and 2 fail the whole batch: it is redelivered
        with pytest.raises(ValueError, match="a bug in the handler"):
            await consumer.process_records(batch)
        assert await _count(session_factory, EFFECTS) == 0
    await consumer.process_records(batch)  # attempt 3: dead-lettered, the rest applies

    assert await _count(session_factory, EFFECTS) == 2
    assert await _count(session_factory, OUTBOX, OUTBOX.c.topic == DEAD_LETTERS) == 1
    assert _counted(metrics.MESSAGES_FAILED, consumer) == 6
    assert _counted(metrics.MESSAGES_DEAD_LETTERED, consumer) == 1
    assert _counted(metrics.MESSAGES_PROCESSED, consumer) == 2


async def test_a_wedged_consumer_client_is_replaced_by_the_watchdog_and_nothing_is_lost(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """The client of a running subscriber stops working (as one did after a broker kill -9 in
    `make chaos`): its fetches return nothing and its requests never complete. The watchdog's
    probe fails, the subscriber is restarted with a new client, and every message published
    meanwhile is applied exactly once."""
    from servicekit.watchdog import ConsumerWatchdog

    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    consumer = _recording_consumer(topic)
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap_servers)
    broker = make_broker(settings, "watchdog-test")
    consumer.attach(broker, session_factory)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
    await broker.start()
    await producer.start()

    async def applied(expected: int) -> int:
        for _ in range(200):
            found = await _count(session_factory, EFFECTS)
            if found >= expected:
                break
            await asyncio.sleep(0.1)
        return found

    try:
        for _ in range(3):
            await producer.send_and_wait(topic, encode(_envelope()), key=b"customer-1")
        assert await applied(3) == 3

        old = consumer._subscriber.consumer

        wedged_fetches = 0

        async def nothing(*args: Any, **kwargs: Any) -> dict[Any, Any]:
            nonlocal wedged_fetches
            wedged_fetches += 1
            await asyncio.sleep(0.05)
            return {}

        async def never(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(3600)

        old.getmany = nothing  # wedged: fetches nothing, requests never complete
        old.end_offsets = never
        old.topics = never
        # a fetch already under way when the wedge began has returned once the loop fetches
        # through the wedged call
        for _ in range(100):
            if wedged_fetches >= 2:
                break
            await asyncio.sleep(0.05)
        assert wedged_fetches >= 2, "the consume loop never fetched through the wedge"
        for _ in range(4):
            await producer.send_and_wait(topic, encode(_envelope()), key=b"customer-1")
        await asyncio.sleep(1.0)
        assert await _count(session_factory, EFFECTS) == 3  # the wedge holds

        watchdog = ConsumerWatchdog(
            consumer, stall_seconds=0.0, probe_timeout_seconds=0.5, stop_timeout_seconds=5.0
        )
        assert await watchdog.check() is True
        assert consumer._subscriber.consumer is not old
        assert await applied(7) == 7
        await asyncio.sleep(0.5)
        assert await _count(session_factory, EFFECTS) == 7  # nothing applied twice
        assert await watchdog.check() is False  # the new client passes the probe
    finally:
        await producer.stop()
        await broker.stop()


def _unhandled(*, valid: bool = True) -> Envelope:
    """A registered message the recording consumers have no handler for (credit's
    `SaleSettled`); `valid=False`: its payload violates the schema, so a validation would show
    as a dead letter."""
    from datetime import UTC, datetime

    from contracts.credit.v1 import SaleSettled

    settled = SaleSettled(
        sale_id=uuid.uuid4(),
        chain_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        was_overdue=False,
        customer_overdue_amount=Decimal("0.00"),
        settled_at=datetime.now(UTC),
    )
    env = make_envelope(settled, chain_id=None, key="customer-1", correlation_id=uuid.uuid4())
    return env if valid else env.model_copy(update={"payload": {"sale_id": "not a uuid"}})


async def test_a_message_without_a_handler_is_skipped_without_validation_or_inbox_row(
    session_factory: Any,
) -> None:
    from servicekit import metrics
    from servicekit.schema import INBOX
    from servicekit.testing import counted_statements

    consumer = _recording_consumer("t")
    consumer.bind(session_factory)
    batch = [_record(_unhandled(), offset=0), _record(_unhandled(valid=False), offset=1)]

    pool = session_factory.kw["bind"].sync_engine.pool
    checkouts: list[object] = []

    def checkout(*_: object) -> None:
        checkouts.append(1)

    sa.event.listen(pool, "checkout", checkout)
    with counted_statements(session_factory.kw["bind"]) as statements:
        await consumer.process_records(batch)
        await consumer.process_records(batch)  # redelivered: skipped again, still no statement

    # no inbox row (nothing to de-duplicate), no payload validation (the invalid one is not
    # dead-lettered): a batch of such messages costs no statement, not even a transaction
    assert statements == []
    assert checkouts == []
    assert await _count(session_factory, INBOX) == 0
    assert await _count(session_factory, OUTBOX) == 0
    assert _counted(metrics.MESSAGES_SKIPPED, consumer) == 4
    assert _counted(metrics.MESSAGES_PROCESSED, consumer) == 0
    # mixed with a handled message: only that one gets an inbox row and its effect
    handled = _envelope()
    checkouts.clear()
    with counted_statements(session_factory.kw["bind"]) as statements:
        await consumer.process_records([*batch, _record(handled, offset=2)])
    sa.event.remove(pool, "checkout", checkout)
    assert [s.split(" (")[0] for s in statements] == ["INSERT INTO inbox", "INSERT INTO effects"]
    assert checkouts == [1]  # the batch's one transaction
    async with session_factory() as session:
        inbox = (await session.execute(sa.select(INBOX.c.message_id))).scalars().all()
    assert inbox == [handled.message_id]
    assert _counted(metrics.MESSAGES_SKIPPED, consumer) == 6
    assert _counted(metrics.MESSAGES_PROCESSED, consumer) == 1


async def test_a_message_its_model_ignores_is_skipped_like_one_without_a_handler(
    session_factory: Any,
) -> None:
    """`Consumer.ignore`: a handled model's message the test holds for gets no inbox row, no
    handler call and, alone in its batch, no transaction; the others of the model are applied."""
    from servicekit import metrics
    from servicekit.schema import INBOX
    from servicekit.testing import counted_statements

    consumer = _recording_consumer("t")
    consumer.ignore = {DeadLetter: lambda letter: letter.reason == "ignored here"}
    consumer.bind(session_factory)
    ignored = make_envelope(
        _any_registered_model().model_copy(update={"reason": "ignored here"}),
        chain_id=None,
        key="customer-1",
        correlation_id=uuid.uuid4(),
    )
    with counted_statements(session_factory.kw["bind"]) as statements:
        await consumer.process_records([_record(ignored, offset=0)])
    assert statements == []
    applied = _envelope()
    await consumer.process_records([_record(ignored, offset=1), _record(applied, offset=2)])
    async with session_factory() as session:
        inbox = (await session.execute(sa.select(INBOX.c.message_id))).scalars().all()
    assert inbox == [applied.message_id]
    assert await _count(session_factory, EFFECTS) == 1
    assert _counted(metrics.MESSAGES_SKIPPED, consumer) == 2


async def test_the_slow_path_skips_a_message_without_a_handler_the_same_way(
    session_factory: Any,
) -> None:
    from servicekit import metrics
    from servicekit.schema import INBOX

    consumer = _recording_consumer("t")
    consumer.bind(session_factory)
    poison = _poison()
    good = _envelope()
    unknown = _envelope().model_copy(update={"type": "credit.NoSuchEvent"})
    batch = [
        _record(_unhandled(), offset=0),
        _record(poison, offset=1),  # sends the batch the slow way
        _record(_unhandled(valid=False), offset=2),
        _record(unknown, offset=3),
        _record(good, offset=4),
    ]

    await consumer.process_records(batch)

    async with session_factory() as session:
        inbox = (await session.execute(sa.select(INBOX.c.message_id))).scalars().all()
        letters = (
            (await session.execute(sa.select(OUTBOX.c.value).where(OUTBOX.c.topic == DEAD_LETTERS)))
            .scalars()
            .all()
        )
    assert inbox == [good.message_id]
    assert await _count(session_factory, EFFECTS) == 1
    # the poison and the unknown type are dead letters; the unhandled ones, valid or not, not
    assert sorted(decode(v).payload["offset"] for v in letters) == [1, 3]
    assert _counted(metrics.MESSAGES_SKIPPED, consumer) == 2  # once, not on both paths
    assert _counted(metrics.MESSAGES_DEAD_LETTERED, consumer) == 2
    assert _counted(metrics.MESSAGES_PROCESSED, consumer) == 1


async def test_a_message_its_headers_name_as_without_a_handler_is_skipped_undecoded(
    session_factory: Any,
) -> None:
    """The relay's headers name each message: a consumer passes over one it has no handler for
    without decoding it (its bytes here are no envelope at all, which decoding would
    dead-letter) and without a session. Headers naming a handled message, or no registered
    one, leave the record to be decoded as before."""
    from servicekit import metrics
    from servicekit.testing import counted_statements

    consumer = _recording_consumer("t")
    consumer.bind(session_factory)
    settled = headers_of(_unhandled())
    with counted_statements(session_factory.kw["bind"]) as statements:
        await consumer.process_records([_record(b"not an envelope", offset=0, headers=settled)])
    assert statements == []
    assert _counted(metrics.MESSAGES_SKIPPED, consumer) == 1
    assert await _count(session_factory, OUTBOX) == 0  # not dead-lettered: never decoded

    handled = _envelope()
    unknown_type = {**settled, TYPE_HEADER: "credit.NoSuchEvent"}
    await consumer.process_records(
        [
            _record(b"not an envelope", offset=1, headers=settled),
            _record(handled, offset=2, headers=headers_of(handled)),
            _record(b"not an envelope either", offset=3, headers=unknown_type),
            _record(b"{}", offset=4, headers={**settled, SCHEMA_VERSION_HEADER: "x"}),
        ]
    )
    assert await _count(session_factory, EFFECTS) == 1  # the handled one, decoded and applied
    async with session_factory() as session:
        letters = (
            (await session.execute(sa.select(OUTBOX.c.value).where(OUTBOX.c.topic == DEAD_LETTERS)))
            .scalars()
            .all()
        )
    # headers naming no registered message: decoded, and undecodable bytes are dead letters
    assert sorted(decode(v).payload["offset"] for v in letters) == [3, 4]
    assert _counted(metrics.MESSAGES_SKIPPED, consumer) == 2


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offset of each partition of `topic` (0 where none)."""
    from aiokafka import TopicPartition

    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    try:
        return [(await reader.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)]
    finally:
        await reader.stop()


async def _applied(session_factory: Any, expected: int) -> int:
    found = 0
    for _ in range(300):
        found = await _count(session_factory, EFFECTS)
        if found >= expected:
            break
        await asyncio.sleep(0.05)
    return found


async def _started(
    consumer: Consumer, session_factory: Any, bootstrap: str
) -> tuple[KafkaBroker, AIOKafkaProducer, list[int]]:
    """The consumer attached to a running broker, a producer, and a list that grows by one for
    every offset commit the consumer's Kafka client sends."""
    broker = make_broker(ServiceSettings(kafka_bootstrap_servers=bootstrap), "offsets-test")
    consumer.attach(broker, session_factory)
    await broker.start()
    commits: list[int] = []
    client = consumer._subscriber.consumer
    commit = client.commit

    async def counted_commit(*args: Any, **kwargs: Any) -> None:
        commits.append(1)
        await commit(*args, **kwargs)

    client.commit = counted_commit
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    return broker, producer, commits


async def test_processed_offsets_are_committed_in_bulk_not_once_per_batch(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """Twelve messages sent one by one are twelve batches; their offsets reach Kafka in a few
    commits, one per interval, and all of them do."""
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    consumer = _recording_consumer(topic)
    consumer.commit_interval_seconds = 0.4
    broker, producer, commits = await _started(consumer, session_factory, kafka_bootstrap_servers)
    try:
        for n in range(1, 13):
            await producer.send_and_wait(topic, encode(_envelope()), key=b"customer-1")
            assert await _applied(session_factory, n) == n  # one batch each
        for _ in range(40):
            if await _committed(kafka_bootstrap_servers, consumer.name, topic, 1) == [12]:
                break
            await asyncio.sleep(0.1)
        assert await _committed(kafka_bootstrap_servers, consumer.name, topic, 1) == [12]
        assert 1 <= len(commits) < 12
    finally:
        await producer.stop()
        await broker.stop()


async def test_a_stopping_service_commits_what_it_processed_at_once(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """With an interval far away, the offsets of the batches processed are committed when the
    service stops (the runtime calls `stop_committing` before stopping the broker)."""
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    consumer = _recording_consumer(topic)
    consumer.commit_interval_seconds = 3600
    broker, producer, _commits = await _started(consumer, session_factory, kafka_bootstrap_servers)
    try:
        for _ in range(5):
            await producer.send_and_wait(topic, encode(_envelope()), key=b"customer-1")
        assert await _applied(session_factory, 5) == 5
        assert await _committed(kafka_bootstrap_servers, consumer.name, topic, 1) == [0]
        await consumer.stop_committing()
    finally:
        await producer.stop()
        await broker.stop()
    assert await _committed(kafka_bootstrap_servers, consumer.name, topic, 1) == [5]


async def test_partitions_taken_away_by_a_rebalance_have_their_offsets_committed_first(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """A second member joins the group: before the first gives its partitions up, it commits
    what it processed on them, so the new owner does not get those batches again."""
    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=2)
    consumer = _recording_consumer(topic)
    consumer.commit_interval_seconds = 3600
    broker, producer, _commits = await _started(consumer, session_factory, kafka_bootstrap_servers)
    second = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap_servers,
        group_id=consumer.name,
        enable_auto_commit=False,
    )
    try:
        for i in range(6):
            await producer.send_and_wait(
                topic, encode(_envelope()), key=b"customer-1", partition=i % 2
            )
        assert await _applied(session_factory, 6) == 6
        assert await _committed(kafka_bootstrap_servers, consumer.name, topic, 2) == [0, 0]
        await second.start()  # joins: the group rebalances, the first member's revoke commits
        for _ in range(100):
            if second.assignment():
                break
            await asyncio.sleep(0.1)
        assert second.assignment()
        assert await _committed(kafka_bootstrap_servers, consumer.name, topic, 2) == [3, 3]
    finally:
        await second.stop()
        await producer.stop()
        await broker.stop()


@contextlib.asynccontextmanager
async def _running_relay(
    session_factory: Any, bootstrap: str, *, poll_interval: float
) -> AsyncIterator[tuple[str, OutboxRelay]]:
    """A relay running (`run`) for a service of its own, publishing to a topic of its own:
    (the topic, the relay); stopped, and its broker with it, on the way out."""
    topic = unique_topic()
    await ensure_topics(bootstrap, [topic], partitions=1)
    broker = KafkaBroker(bootstrap, acks="all", enable_idempotence=True)
    await broker.start()
    relay = OutboxRelay(
        service=f"svc-{uuid.uuid4().hex[:6]}",
        session_factory=session_factory,
        broker=broker,
        poll_interval=poll_interval,
    )
    running = asyncio.create_task(relay.run())
    try:
        yield topic, relay
    finally:
        relay.stop()
        await asyncio.wait_for(running, 10)
        await broker.stop()


async def _all_sent(session_factory: Any, *, within: float) -> None:
    """Wait until the outbox has no unsent row, for at most `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)):
        assert asyncio.get_running_loop().time() < deadline, "still unsent"
        await asyncio.sleep(0.02)


async def test_a_relay_that_found_another_publishing_tries_again_soon_not_at_the_next_poll(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """Two instances of a service share one outbox: while one relay publishes (holds the lock),
    the other's wake-up finds nothing it may send. It tries again after `busy_retry`, so its
    rows leave right after the lock is released, not a poll interval later."""
    # the poll alone would leave the row unsent for the whole test
    async with _running_relay(session_factory, kafka_bootstrap_servers, poll_interval=60.0) as (
        topic,
        relay,
    ):
        async with session_factory() as other, other.begin():
            await other.execute(
                sa.select(sa.func.pg_advisory_xact_lock(relay._lock_key))  # noqa: SLF001
            )
            async with session_factory() as session, session.begin():
                await enqueue(session, topic, _envelope())  # commits: the relay is woken
            await asyncio.sleep(0.5)
            assert await _count(session_factory, OUTBOX, OUTBOX.c.sent_at.is_(None)) == 1
        await _all_sent(session_factory, within=5.0)


async def test_a_running_relay_whose_connection_was_ended_reconnects_and_publishes(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """`run` wakes up on a connection of its own, not the pool's. PostgreSQL ending it (a
    restart, an administrator) fails one wake-up; the relay then opens a new one, and rows
    written afterwards still leave without anyone restarting it."""
    async with _running_relay(session_factory, kafka_bootstrap_servers, poll_interval=0.1) as (
        topic,
        relay,
    ):
        async with session_factory() as session, session.begin():
            await enqueue(session, topic, _envelope())
        await _all_sent(session_factory, within=10.0)
        own = relay._own  # noqa: SLF001
        assert own is not None, "run holds a connection of its own"
        async with session_factory() as session, session.begin():
            ended = await session.scalar(
                sa.select(sa.func.pg_terminate_backend(own.get_server_pid()))
            )
        assert ended
        async with session_factory() as session, session.begin():
            await enqueue(session, topic, _envelope())
        await _all_sent(session_factory, within=10.0)
        assert relay._own is not None and relay._own is not own  # noqa: SLF001
    assert relay._own is None  # noqa: SLF001  (closed when run ends)


async def _batch_counting(bootstrap: str, *, fetch_wait_ms: int) -> tuple[str, Consumer, list[int]]:
    """A recording consumer with that fetch wait on a topic of its own, and the size of each
    batch it processes, in order."""
    topic = unique_topic()
    await ensure_topics(bootstrap, [topic], partitions=1)
    consumer = _recording_consumer(topic)
    consumer.fetch_wait_ms = fetch_wait_ms
    batches: list[int] = []
    process = consumer.process_records

    async def counted(records: Any) -> None:
        batches.append(len(records))
        await process(records)

    consumer.process_records = counted  # type: ignore[method-assign]
    return topic, consumer, batches


async def test_an_idle_consumer_long_polls_and_a_busy_one_gathers(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """With a fetch wait of 200 ms, an idle consumer does not ask the broker every 200 ms (it
    long-polls: the broker answers on the first record, else after 500 ms), and once records
    come it gathers them again: ten messages 20 ms apart arrive in a few batches."""
    topic, consumer, batches = await _batch_counting(kafka_bootstrap_servers, fetch_wait_ms=200)
    broker, producer, _commits = await _started(consumer, session_factory, kafka_bootstrap_servers)
    fetches: list[float] = []
    client = consumer._subscriber.consumer._client
    send = client.send

    async def counted_send(node_id: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if type(request).__name__.startswith("FetchRequest"):
            fetches.append(asyncio.get_running_loop().time())
        return await send(node_id, request, *args, **kwargs)

    client.send = counted_send
    try:
        await asyncio.sleep(1.5)  # the group joined, the first polls found nothing
        idle_from = len(fetches)
        await asyncio.sleep(3.0)
        idle_fetches = len(fetches) - idle_from
        # gathering all along would be ~15 fetches in 3 s; long polls ~6
        assert idle_fetches <= 9, idle_fetches
        for _ in range(10):
            await producer.send_and_wait(topic, encode(_envelope()), key=b"customer-1")
            await asyncio.sleep(0.02)
        assert await _applied(session_factory, 10) == 10
        assert sum(batches) == 10
        assert len(batches) <= 4, batches  # the first record alone, then gathered
    finally:
        await producer.stop()
        await broker.stop()


async def test_a_consumer_that_may_wait_gets_messages_sent_apart_in_few_batches(
    session_factory: Any, kafka_bootstrap_servers: str
) -> None:
    """`fetch_wait_ms`: ten messages sent 20 ms apart reach the handler in a few batches, not
    one each (the broker holds the fetch up to 600 ms to gather them)."""
    topic, consumer, batches = await _batch_counting(kafka_bootstrap_servers, fetch_wait_ms=600)
    broker, producer, _commits = await _started(consumer, session_factory, kafka_bootstrap_servers)
    try:
        for _ in range(10):
            await producer.send_and_wait(topic, encode(_envelope()), key=b"customer-1")
            await asyncio.sleep(0.02)
        assert await _applied(session_factory, 10) == 10
        assert sum(batches) == 10
        assert len(batches) <= 3, batches
    finally:
        await producer.stop()
        await broker.stop()


def _deferring_consumer() -> Consumer:
    """Handlers that leave their write for the batch's `before_commit` on the fast path (as
    reporting's projection does) and write at once on the slow path; a "poison" message's
    write fails only when written (its amount does not fit the column)."""

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        amount = Decimal("1e20") if payload.reason == "poison" else Decimal("1.10")
        row = {"message_id": str(ctx.envelope.message_id), "amount": amount}
        if ctx.batched:
            ctx.session.info.setdefault("deferred", []).append(row)
            return
        await ctx.session.execute(sa.insert(EFFECTS).values(row))

    async def flush(session: Any) -> None:
        rows = session.info.pop("deferred", [])
        flushes.append(len(rows))
        if rows:
            await session.execute(sa.insert(EFFECTS), rows)

    flushes: list[int] = []
    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: apply},
        retry_backoff_seconds=0.01,
        before_commit=flush,
    )
    consumer.flushes = flushes  # type: ignore[attr-defined]
    return consumer


async def test_writes_left_for_the_batch_are_written_once_before_its_commit(
    session_factory: Any,
) -> None:
    consumer = _deferring_consumer()
    consumer.bind(session_factory)
    batch = [_record(_envelope(), offset=n) for n in range(5)]
    await consumer.process_records(batch)
    await consumer.process_records(batch)  # redelivered: the inbox leaves nothing to write
    assert await _count(session_factory, EFFECTS) == 5
    assert consumer.flushes == [5, 0]  # type: ignore[attr-defined]


async def test_a_batch_whose_left_writes_fail_is_replayed_a_message_at_a_time(
    session_factory: Any,
) -> None:
    """The batch's one write fails for the poison message's row: nothing of the batch is
    applied on the fast path; replayed in savepoints, each message writes at once, and the
    poison one, an unexpected error, fails the batch until its last attempt, where it is
    dead-lettered alone and the others apply."""
    consumer = _deferring_consumer()
    consumer.bind(session_factory)
    good = [_envelope() for _ in range(3)]
    batch = [
        _record(good[0], offset=0),
        _record(_poison(), offset=1),
        _record(good[1], offset=2),
        _record(good[2], offset=3),
    ]
    for _ in range(consumer.max_attempts - 1):  # redelivered, as Kafka would
        with pytest.raises(sa.exc.DBAPIError):
            await consumer.process_records(batch)
        assert await _count(session_factory, EFFECTS) == 0
    await consumer.process_records(batch)
    async with session_factory() as session:
        applied = set((await session.execute(sa.select(EFFECTS.c.message_id))).scalars())
    assert applied == {str(env.message_id) for env in good}
    assert await _count(session_factory, OUTBOX, OUTBOX.c.topic == DEAD_LETTERS) == 1


async def test_a_services_consumer_keeps_one_connection_and_makes_no_session_unasked(
    session_factory: Any,
) -> None:
    """The fast path runs each batch in a `servicekit.sql.Tx` on a connection kept from one
    batch to the next (a service's consumers keep it): one pool checkout for many batches, and
    no SQLAlchemy session while the handlers use only `ctx.db`. A kept connection that died
    fails its batch (redelivered, so nothing is lost) and is discarded: the next batch checks
    out another; an old one goes back to the pool. `release_connection` gives it back too."""
    from sqlalchemy.orm import Session

    from servicekit import sql

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        await sql.execute(
            ctx.db,
            "INSERT INTO effects (message_id, amount) VALUES ($1, 1.10)",
            str(ctx.envelope.message_id),
        )

    consumer = Consumer(
        name=f"test-{uuid.uuid4().hex[:6]}",
        topics=["t"],
        handlers={DeadLetter: apply},
        retry_backoff_seconds=0.01,
    )
    consumer.bind(session_factory)
    consumer.keep_connection = True
    pool = session_factory.kw["bind"].sync_engine.pool
    checkouts: list[int] = []
    sessions: list[int] = []

    def checkout(*_: object) -> None:
        checkouts.append(1)

    def session_began(*_: object) -> None:
        sessions.append(1)

    sa.event.listen(pool, "checkout", checkout)
    sa.event.listen(Session, "after_begin", session_began)
    try:
        for offset in range(5):
            await consumer.process_records([_record(_envelope(), offset=offset)])
        assert (len(checkouts), sessions) == (1, [])

        kept = consumer._connection
        assert kept is not None
        driver = (await kept.get_raw_connection()).driver_connection
        url = session_factory.kw["bind"].url.render_as_string(hide_password=False)
        killer = await asyncpg.connect(plain_url(url))
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", driver.get_server_pid())
        finally:
            await killer.close()
        # the server's goodbye reaches the idle client (waited for: racing it, the next BEGIN
        # could fail in any of asyncpg's ways, CI saw three)
        deadline = time.monotonic() + 10
        while not driver.is_closed():
            assert time.monotonic() < deadline, "the terminated connection never closed"
            await asyncio.sleep(0.01)
        batch = [_record(_envelope(), offset=5)]
        with pytest.raises(asyncpg.InterfaceError, match="closed"):
            await consumer.process_records(batch)
        assert consumer._connection is None  # discarded
        await consumer.process_records(batch)  # redelivered: applied on another connection
        assert (len(checkouts), sessions) == (2, [])
        # a kept connection goes back to the pool once it is old (where `pool_recycle` applies)
        consumer.connection_max_age_seconds = 0.0
        await consumer.process_records([_record(_envelope(), offset=6)])
        assert consumer._connection is None and pool.checkedout() == 0
        consumer.connection_max_age_seconds = 3600.0
        await consumer.process_records([_record(_envelope(), offset=7)])
        assert (len(checkouts), sessions) == (3, [])
    finally:
        sa.event.remove(pool, "checkout", checkout)
        sa.event.remove(Session, "after_begin", session_began)
        await consumer.release_connection()
    assert pool.checkedout() == 0
    assert await _count(session_factory, EFFECTS) == 8


async def test_a_handled_message_records_how_long_it_took_to_arrive_and_a_skipped_one_does_not(
    session_factory: Any,
) -> None:
    """`message_delivery_seconds`: from the envelope's `occurred_at` (made in the producer's
    transaction) to the consumer's batch, per consumer and topic: one hop, as operations see
    it in Grafana. Skipped messages are not decoded, so they are not in it."""
    from datetime import UTC, datetime, timedelta

    from servicekit import metrics

    def delivery(consumer: Consumer, suffix: str) -> float:
        return sum(
            sample.value
            for metric in metrics.MESSAGE_DELIVERY_SECONDS.collect()
            for sample in metric.samples
            if sample.labels.get("consumer") == consumer.name
            and sample.labels.get("topic") == "t"
            and sample.name.endswith(suffix)
        )

    consumer = _recording_consumer("t")
    consumer.name = f"delivery-{uuid.uuid4().hex[:8]}"
    consumer.bind(session_factory)
    made = datetime.now(UTC) - timedelta(seconds=3)
    late = _envelope().model_copy(update={"occurred_at": made})
    await consumer.process_records([_record(late, offset=0), _record(_unhandled(), offset=1)])
    assert delivery(consumer, "_count") == 1  # the skipped one is not counted
    assert 3.0 <= delivery(consumer, "_sum") < 30.0
    # a clock behind the producer's counts 0, not a negative time
    ahead = _envelope().model_copy(update={"occurred_at": datetime.now(UTC) + timedelta(hours=1)})
    await consumer.process_records([_record(ahead, offset=2)])
    assert delivery(consumer, "_count") == 2
    assert 3.0 <= delivery(consumer, "_sum") < 30.0


async def test_each_batch_records_its_size_once(session_factory: Any) -> None:
    """`consumer_batch_messages`: how many records a batch held (a batch's costs are shared by
    them), once per batch, whether its records were handled or passed over."""
    from servicekit import metrics

    def sizes(consumer: Consumer, suffix: str) -> float:
        return sum(
            sample.value
            for metric in metrics.CONSUMER_BATCH_MESSAGES.collect()
            for sample in metric.samples
            if sample.labels.get("consumer") == consumer.name and sample.name.endswith(suffix)
        )

    consumer = _recording_consumer("t")
    consumer.name = f"batches-{uuid.uuid4().hex[:8]}"
    consumer.bind(session_factory)
    await consumer.process_records([_record(_envelope(), offset=n) for n in range(3)])
    await consumer.process_records([_record(_unhandled(), offset=3)])
    assert sizes(consumer, "_count") == 2
    assert sizes(consumer, "_sum") == 4
