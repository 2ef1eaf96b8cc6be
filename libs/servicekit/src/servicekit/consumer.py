"""Idempotent Kafka consumers: one database transaction per batch, an inbox row per message.

Every consumed batch is processed in one transaction that inserts `(consumer, message_id)` into
the inbox for each message, so a redelivered message is skipped and its effect is never applied
twice (unless the consumer keeps no inbox, `Consumer.inbox`, or none for the message's model,
`Consumer.no_inbox_for`: their handlers are idempotent by themselves). A message of a
registered type this consumer has no handler for has no effect here: it is passed over before
its payload is validated, with no inbox row (`messages_skipped_total`).
Offsets are committed only after the transaction commits (a failure rewinds the partitions
and the batch comes again), and not after every batch: the offsets of processed batches are
committed every `commit_interval_seconds`, when partitions are revoked and when the service
stops (each Kafka offset commit costs ~0.3 ms of the client's CPU and ~1.2 ms of the broker's,
measured; one per batch was most of Kafka's CPU per sale). A crash loses at most the commit of
that interval's batches: they are delivered again and the inbox skips them. A message that can
never be processed is written to the dead-letter topic through the outbox, and the partition
moves on.

Two paths, one outcome. The fast path runs in a `servicekit.sql.Tx`, a transaction begun by
asyncpg on a connection the consumer keeps between batches (`keep_connection`; without it, one
checked out per batch), with no SQLAlchemy session unless a handler asks for one
(`MessageContext.session`): a session and a pool checkout per batch cost more CPU than a small
batch's statements. It inserts the whole batch's inbox rows in one statement,
runs the handlers without savepoints (each would cost two round trips: SAVEPOINT, RELEASE)
and writes the events they emitted to the outbox in one statement before the commit.
When a handler fails for good (`PermanentError`, or its last allowed attempt), the fast path's
transaction is rolled back whole and the batch is processed again on the slow path: a savepoint
per message around its inbox row and its handler, so the failing message alone is rolled back
and dead-lettered (keeping no inbox row, so a re-drive applies it) while the rest applies.
Metrics of the fast path are counted only once its transaction has committed, so a batch that
goes the slow way is not counted twice.

A dead letter alone would leave whatever waited for the message waiting for ever (a till
operation's answer, a customer's parked commands). So a consumer may name, per message model,
what to do instead of the effect (`on_dead_letter`): it runs right after the message is
dead-lettered, in the same transaction, in a savepoint of its own (credit refuses the
operation as `operation_failed` and releases the customer; loyalty answers the refusal). If it
fails too, only the dead letter remains.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import traceback
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.middlewares import AckPolicy
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.base import Message
from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import SCHEMA_VERSION_HEADER, TYPE_HEADER, Envelope, decode
from contracts.registry import lookup
from contracts.topics import DEAD_LETTERS
from servicekit import metrics, sql
from servicekit.db import POOL_RECYCLE_SECONDS, SessionFactory
from servicekit.logging import chain_id_var, correlation_id_var, message_id_var
from servicekit.outbox import buffer_outbox, enqueue_message, flush_outbox
from servicekit.schema import INBOX
from servicekit.sql import TRANSIENT_SQLSTATES, is_transient_driver_error

log = logging.getLogger(__name__)

DEAD_LETTER_NAMESPACE = uuid.UUID("5b7f3c9e-0d0a-4a39-9a7e-6f2d1c0de1e7")
#: Header `python -m servicekit.deadletters redrive` puts on a re-driven message (the dead
#: letter's `partition:offset`), counted in `messages_redriven_total` when consumed.
REDRIVE_HEADER = "deadletter-redrive"

# The fast path's inbox rows of a whole batch in one statement. Arrays through `unnest` rather
# than a multi-row VALUES: the SQL text is the same for every batch size, so it is prepared once
# per connection. Rows that conflict are duplicates: only the new message ids come back. This and
# the positions' upsert run once per batch of every consumer: straight through asyncpg
# (`servicekit.sql`).
_INBOX_INSERT = (
    'INSERT INTO inbox (consumer, message_id, topic, partition, "offset") '
    "SELECT $1::text, m, t, p, o FROM unnest($2::uuid[], $3::text[], $4::integer[], "
    "$5::bigint[]) AS u(m, t, p, o) ON CONFLICT DO NOTHING RETURNING message_id"
)


# `record_positions`: a position only moves forward (a batch redelivered after a rebalance
# must not move it back).
_POSITIONS_UPSERT = (
    "INSERT INTO consumer_positions (consumer, topic, partition, next_offset) "
    "SELECT $1::text, t, p, o FROM unnest($2::text[], $3::integer[], $4::bigint[]) "
    "AS u(t, p, o) "
    "ON CONFLICT (consumer, topic, partition) DO UPDATE SET "
    "next_offset = GREATEST(consumer_positions.next_offset, EXCLUDED.next_offset), "
    "updated_at = now()"
)


#: With `Consumer.fetch_wait_ms`, the broker answers a fetch after that long or once it holds
#: this much: about a thousand events, more than a batch takes (`max_records`), so under load
#: the wait ends at once. Without it, aiokafka's defaults: an answer as soon as one byte is
#: there (else after 500 ms, an empty one).
_GATHER_BYTES = 512 * 1024


class PermanentError(Exception):
    """The message can never be processed as it is: it goes to the dead-letter topic."""


@dataclass
class MessageContext:
    """What a handler gets besides the payload: the transaction and the message's coordinates."""

    #: the batch's transaction: `servicekit.sql` statements run on it directly
    db: sql.Db
    envelope: Envelope
    consumer: str
    topic: str
    partition: int
    offset: int
    #: the message is handled on the fast path, with the rest of its batch and without a
    #: savepoint of its own: a handler may leave writes for the consumer's `before_commit`
    #: (False on the slow path, where each message's effects must be in its own savepoint)
    batched: bool = False

    @property
    def session(self) -> AsyncSession:
        """A SQLAlchemy session in the batch's transaction (made on first use on the fast path)."""
        return sql.session_of(self.db)

    async def emit(
        self,
        topic: str,
        payload: Message,
        *,
        key: str,
        chain_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        """Write an event caused by this message to the outbox, in this transaction."""
        return await enqueue_message(
            self.db,
            topic,
            payload,
            chain_id=chain_id if chain_id is not None else self.envelope.chain_id,
            key=key,
            correlation_id=self.envelope.correlation_id,
            causation_id=self.envelope.message_id,
            occurred_at=occurred_at,
        )


Handler = Callable[[MessageContext, Any], Awaitable[None]]
#: `(ctx, payload, reason)`: what a service does instead of a message's effect once the message
#: was dead-lettered (see the module docstring).
DeadLetterHandler = Callable[[MessageContext, Any, str], Awaitable[None]]


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before a rebalance takes partitions away, their processed offsets are committed, so
    their next owner does not get those batches again."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.consumer.commit_offsets(only=set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class _Isolate(Exception):  # noqa: N818 - a signal, not an error
    """A handler failed for good on the fast path: redo the batch with a savepoint per message."""

    def __init__(self, rec: ConsumerRecord[Any, Any], cause: BaseException) -> None:
        super().__init__(f"{rec.topic}[{rec.partition}]@{rec.offset}: {type(cause).__name__}")


class _PollWithoutIdleSleep(BatchSubscriber):
    """FastStream's batch subscriber, but without its sleep after an empty poll.

    FastStream sleeps `batch_timeout_ms` after every poll that found nothing; a record that
    arrives meanwhile waits out the sleep, at every hop of a sale (with a 20 ms timeout: 10 ms
    on average, 20 ms at worst, per hop, and an idle consumer woke 25 times a second). aiokafka's
    `getmany` already returns as soon as a record is there, so the poll itself is the only wait.
    """

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        batches = await consumer.getmany(
            timeout_ms=self.batch_timeout_ms, max_records=self.max_records
        )
        records = tuple(itertools.chain.from_iterable(batches.values()))
        _gather_only_while_busy(consumer, busy=bool(records))
        return records


#: the fetch a consumer with a fetch wait was configured with, per Kafka client:
#: (fetch_min_bytes, fetch_max_wait_ms)
_gathering: weakref.WeakKeyDictionary[AIOKafkaConsumer, tuple[int, int]] = (
    weakref.WeakKeyDictionary()
)

#: aiokafka's own default fetch: the broker answers as soon as one byte is there, else after
#: 500 ms with nothing
_LONG_POLL = (1, 500)


def _gather_only_while_busy(consumer: AIOKafkaConsumer, *, busy: bool) -> None:
    """A consumer with a fetch wait (`Consumer.fetch_wait_ms`) lets the broker gather records
    for a while before it answers, so batches fill; but an idle consumer then asks every
    `fetch_wait_ms` and gets nothing each time (with the read models' 50 ms, 20 fetches a
    second per consumer: measured with the stack idle, 63 ms/s of the broker's CPU and 14 ms/s
    of each read model's). So the wait applies only while records come: after a poll that
    found none the consumer long-polls (the broker answers on the first byte, else after
    500 ms), and the first record switches the wait back on for the fetches after it.

    aiokafka reads `fetch_min_bytes` / `fetch_max_wait_ms` from its fetcher for every fetch
    request it builds and has no public setter; a version without those attributes keeps the
    configured fetch (checked by `test_an_idle_consumer_long_polls_and_a_busy_one_gathers`)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        return
    gather = _gathering.get(consumer)
    if gather is None:
        gather = (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms)
        _gathering[consumer] = gather
    if gather[0] <= 1:
        return  # no fetch wait configured (aiokafka's own long poll already)
    fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = gather if busy else _LONG_POLL


def _poll_without_idle_sleep(subscriber: Any) -> None:
    """Make FastStream's batch subscriber a `_PollWithoutIdleSleep` (same slots, so the class of
    the object FastStream built can change in place; FastStream offers no hook for it)."""
    if type(subscriber) is not BatchSubscriber:
        raise TypeError(f"expected FastStream's BatchSubscriber, got {type(subscriber)!r}")
    subscriber.__class__ = _PollWithoutIdleSleep


async def _the_message_itself(message: Any) -> Any:
    """The subscriber's decoder: the handler gets FastStream's message as it is (the batch's
    records undecoded, its `nack`, its Kafka client) and nothing is injected.

    FastStream would JSON-decode every record of the batch only for `process_records` to
    validate the same bytes again as an envelope. And it hands a batch to a handler through
    FastDepends, which runs a synchronous decoder and every `Context(...)` dependency in a worker
    thread: two thread hand-offs per batch (what a message costs at low rates, when every
    message is a batch), a third of the consumer's CPU per message in a profile. An `async`
    decoder and a handler of one plain parameter need neither (`make_broker` also switches
    FastDepends off: `apply_types=False`)."""
    return message


@contextlib.contextmanager
def _message_log_ids(env: Envelope) -> Iterator[None]:
    """The message's ids on every log line written while it is handled."""
    tokens = (
        correlation_id_var.set(str(env.correlation_id)),
        chain_id_var.set(str(env.chain_id) if env.chain_id else None),
        message_id_var.set(str(env.message_id)),
    )
    try:
        yield
    finally:
        for var, token in zip(
            (correlation_id_var, chain_id_var, message_id_var), tokens, strict=True
        ):
            var.reset(token)


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure: retry the batch rather than dead-letter the message
    (SQLAlchemy's, or asyncpg's own for the statements `servicekit.sql` sends)."""
    if isinstance(exc, OSError | asyncio.TimeoutError | ConnectionError):
        return True
    if is_transient_driver_error(exc):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return code in TRANSIENT_SQLSTATES
    return False


@dataclass
class Consumer:
    """One consumer group of a service: the topics it reads and a handler per message model."""

    name: str
    topics: Sequence[str]
    handlers: dict[type[BaseModel], Handler]
    #: per message model, what to do when a message of it is dead-lettered after parsing
    on_dead_letter: dict[type[BaseModel], DeadLetterHandler] = field(default_factory=dict)
    #: per message model, which of its messages have no effect here (a test of the validated
    #: payload): passed over like a message of a model without handler, with no inbox row and
    #: no transaction of their own, counted in `messages_skipped_total`
    ignore: dict[type[BaseModel], Callable[[Any], bool]] = field(default_factory=dict)
    max_records: int = 200
    #: how long one poll waits when no record is there; a record that arrives ends the wait at
    #: once (aiokafka's `getmany`), so this sets only how often an idle consumer wakes up
    poll_timeout_ms: int = 500
    #: how long the broker may hold a fetch to gather more records for one batch (0: a record
    #: is handed over as soon as it is there). For a consumer off a sale's critical path
    #: (reporting, the notifier): its read models lag up to this much more, and in exchange its
    #: batches hold several messages, so the per-batch costs (a transaction, a commit, the
    #: inbox statement, the offsets) are paid once for all of them.
    fetch_wait_ms: int = 0
    #: `fetch_wait_ms` is this consumer's own: the runtime leaves it as it is instead of setting
    #: the service's `<PREFIX>_CONSUMER_FETCH_WAIT_MS` (a service whose consumers differ)
    own_fetch_wait: bool = False
    retry_backoff_seconds: float = 1.0
    #: unexpected handler errors are retried this many times before the message is dead-lettered
    max_attempts: int = 3
    #: a member that died without leaving (kill -9) holds its partitions until the broker has
    #: not heard from it for this long: the restarted process (or the other instances) wait
    #: that long before consuming them. 6 s is the broker's default minimum
    #: (`group.min.session.timeout.ms`); aiokafka's default is 10 s. Heartbeats every third.
    session_timeout_ms: int = 6_000
    #: Also record, in each batch's transaction, the offset after the last message read on each
    #: partition (`consumer_positions`, which the service's database must have): reporting's
    #: snapshots say from where the log must be replayed on top of them.
    record_positions: bool = False
    #: Handle a batch's messages in the order of their Kafka keys (stable: one key's messages,
    #: from one partition, keep their order; messages of different keys come from different
    #: partitions, whose relative order Kafka never gave). For a consumer whose handlers lock
    #: rows of their message's key (reporting: a customer's balances) and that reads one key
    #: from several topics, whose partitions may sit on different instances: every batch then
    #: takes those locks in one global order, so two instances never deadlock on them.
    sort_batch_by_key: bool = False
    #: processed batches' offsets are committed to Kafka this often (and on revocation and stop)
    commit_interval_seconds: float = 0.5
    #: run in a fast-path batch's transaction after its handlers: the writes they left for the
    #: whole batch (`MessageContext.batched`; reporting's projection writes a batch's events as
    #: one statement per table). A failure other than a transient one replays the batch a
    #: message at a time in savepoints, where handlers write at once and a bad message is
    #: dead-lettered alone.
    before_commit: Callable[[sql.Db], Awaitable[None]] | None = None
    #: Keep an inbox row per message (`inbox`), so a message delivered again is passed over.
    #: False only for a consumer whose every handler is idempotent by itself, by a condition on
    #: the rows it changes (the gateway's: an outcome is stored only on an operation still
    #: pending): a message delivered again then runs its handler again, which changes nothing,
    #: and each batch saves the inbox's statement. Duplicates within one batch are still passed
    #: over; `messages_duplicate_total` counts only those.
    inbox: bool = True
    #: Message models that get no inbox row although the consumer keeps one (`inbox`): their
    #: handlers are idempotent by themselves, as above (credit's handlers of loyalty's answers
    #: end an operation only while it is pending). A batch of only such messages sends no inbox
    #: statement.
    no_inbox_for: frozenset[type[Any]] = frozenset()
    #: Message models whose handler sends at most one statement (the events it emits carried
    #: by it: `outbox.carrying_buffered`) and gets no inbox row (`inbox` False, or in
    #: `no_inbox_for`). A batch with one message to handle, of such a model, runs it in an
    #: autocommit `Tx`: its statement commits by itself, without BEGIN and COMMIT, two round
    #: trips fewer (the gateway's outcomes, one per operation). A batch of several messages
    #: has one transaction, as any other. A handler that sends a second statement (an event
    #: not carried is one) or asks for a session fails with `sql.OneStatementOnly` (a bug),
    #: and is retried and isolated like any failing handler, in a transaction.
    autocommit_for: frozenset[type[Any]] = frozenset()
    #: Keep the fast path's database connection from one batch to the next (a service's
    #: consumers do: the runtime sets it, and `release_connection` gives the connection back
    #: when the service stops). Without it, each batch checks one out of the pool.
    keep_connection: bool = False
    #: a kept connection goes back to the pool once it is this old (seconds since its
    #: checkout), where `servicekit.db.POOL_RECYCLE_SECONDS` bounds every connection's age
    connection_max_age_seconds: float = POOL_RECYCLE_SECONDS
    _attempts: dict[uuid.UUID, int] = field(default_factory=dict)
    _connection: AsyncConnection | None = None
    _connection_since: float = 0.0
    _stopping_connection: bool = False
    _session_factory: SessionFactory | None = None
    _subscriber: Any = None
    _lag_partitions: set[tuple[str, int]] = field(default_factory=set)
    #: per partition, the offset after the last processed record not yet committed to Kafka
    _uncommitted: dict[TopicPartition, int] = field(default_factory=dict)
    _kafka_consumer: AIOKafkaConsumer | None = None
    _commit_task: asyncio.Task[None] | None = None
    _stopping: bool = False
    #: the labelled series of this consumer's counters, per (metric, topic): `labels()` takes a
    #: lock and builds its key on every call, and a message passes three or four of them
    _children: dict[tuple[Any, str], Any] = field(default_factory=dict)
    _histogram: Any = None
    _batch_sizes: Any = None
    #: per (type, schema_version) header values of a registered message: whether a handler
    #: here takes it (`_without_handler`)
    _handled_by_header: dict[tuple[Any, Any], bool] = field(default_factory=dict)

    def attach(self, broker: KafkaBroker, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory
        self._initialise_series()

        subscriber = broker.subscriber(
            *self.topics,
            group_id=self.name,
            batch=True,
            max_records=self.max_records,
            batch_timeout_ms=self.poll_timeout_ms,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.session_timeout_ms // 3,
            # offsets are ours to commit (`_processed`); a failed batch is nacked below
            ack_policy=AckPolicy.MANUAL,
            listener=_CommitOnRevoke(self),
            title=f"{self.name}",
            decoder=_the_message_itself,
            fetch_min_bytes=_GATHER_BYTES if self.fetch_wait_ms > 0 else 1,
            fetch_max_wait_ms=self.fetch_wait_ms if self.fetch_wait_ms > 0 else 500,
        )
        _poll_without_idle_sleep(subscriber)
        self._subscriber = subscriber

        @subscriber
        async def _consume(message: Any) -> None:
            # `message` is what `_the_message_itself` returned (with or without FastDepends: a
            # single parameter of no particular type is given the decoded body)
            kafka_consumer: AIOKafkaConsumer = message.consumer
            raw = message.raw_message
            records: tuple[ConsumerRecord[Any, Any], ...] = (
                raw if isinstance(raw, tuple) else (raw,)
            )
            try:
                await self.process_records(records)
            except BaseException:
                await message.nack()  # each partition rewound to the batch's first record
                raise
            await self._processed(kafka_consumer, records)
            self._update_lag(kafka_consumer, records)

    async def _processed(
        self, kafka_consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        """The batch's transaction committed: its offsets may be committed to Kafka, at the
        next interval (or at once while the service stops)."""
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            self._uncommitted[tp] = max(self._uncommitted.get(tp, 0), rec.offset + 1)
        self._kafka_consumer = kafka_consumer
        if self._stopping:
            await self.commit_offsets()
        elif self._commit_task is None or self._commit_task.done():
            self._commit_task = asyncio.create_task(
                self._commit_periodically(), name=f"offsets-{self.name}"
            )

    async def _commit_periodically(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.commit_interval_seconds)
            await self.commit_offsets()

    async def commit_offsets(self, only: set[TopicPartition] | None = None) -> None:
        """Commit the processed offsets not yet committed (of `only` these partitions), for the
        partitions this member still holds; those of partitions it lost are dropped (their new
        owner gets those batches again and its inbox skips them). A failed commit is logged and
        retried at the next interval."""
        kafka_consumer = self._kafka_consumer
        if kafka_consumer is None or not self._uncommitted:
            return
        assigned = kafka_consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._uncommitted.items()
            if tp in assigned and (only is None or tp in only)
        }
        for tp in list(self._uncommitted):
            if tp not in assigned or tp in offsets:
                del self._uncommitted[tp]
        if not offsets:
            return
        try:
            await kafka_consumer.commit(offsets)
        except Exception as exc:
            log.warning("consumer %s: offset commit failed (%s); retrying", self.name, exc)
            for tp, offset in offsets.items():
                self._uncommitted[tp] = max(self._uncommitted.get(tp, 0), offset)

    async def stop_committing(self) -> None:
        """The service stops: from now on each batch commits its offsets at once (the batch in
        hand finishes while the subscriber stops), and what is pending is committed now."""
        self._stopping = True
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
            self._commit_task = None
        await self.commit_offsets()

    def _series(self, metric: Any, topic: str) -> Any:
        """`metric.labels(self.name, topic)`, looked up once."""
        child = self._children.get((metric, topic))
        if child is None:
            child = self._children[(metric, topic)] = metric.labels(self.name, topic)
        return child

    def _initialise_series(self) -> None:
        """Every counter of this consumer exists from the start, at 0: `rate()` and
        `increase()` then also see the first failure or dead letter, and every name the
        dashboards use is exported before anything went wrong."""
        for topic in self.topics:
            for counter in (
                metrics.MESSAGES_CONSUMED,
                metrics.MESSAGES_PROCESSED,
                metrics.MESSAGES_SKIPPED,
                metrics.MESSAGES_DUPLICATE,
                metrics.MESSAGES_FAILED,
                metrics.MESSAGES_DEAD_LETTERED,
                metrics.MESSAGES_REDRIVEN,
            ):
                counter.labels(self.name, topic)
            metrics.MESSAGE_DELIVERY_SECONDS.labels(self.name, topic)
        self._histogram = metrics.MESSAGE_PROCESSING_SECONDS.labels(self.name)
        self._batch_sizes = metrics.CONSUMER_BATCH_MESSAGES.labels(self.name)

    async def process_records(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Process one batch in one transaction (the unit the tests drive directly)."""
        assert self._session_factory is not None, "attach() or bind() first"
        started = time.perf_counter()
        if self.sort_batch_by_key and len(records) > 1:
            records = sorted(records, key=lambda rec: rec.key or b"")
        for rec in records:
            self._series(metrics.MESSAGES_CONSUMED, rec.topic).inc()
            redrive = next((v for k, v in rec.headers or () if k == REDRIVE_HEADER), None)
            if redrive is not None:
                self._series(metrics.MESSAGES_REDRIVEN, rec.topic).inc()
                log.info(
                    "re-driven dead letter %s: %s[%d]@%d",
                    bytes(redrive).decode("utf-8", "replace"),
                    rec.topic,
                    rec.partition,
                    rec.offset,
                )
        if not self.record_positions and all(map(self._without_handler, records)):
            # nothing here handles any of them (their headers say): no transaction at all
            for rec in records:
                self._series(metrics.MESSAGES_SKIPPED, rec.topic).inc()
            self._observe(records, started)
            return
        # counters of the fast path, applied once its transaction has committed
        after_commit: list[Callable[[], None]] = []
        plan = self._plan(records, after_commit)
        if not plan[0] and not self.record_positions:
            # every record passed over once decoded (no handler here, or `ignore`d): no
            # transaction either
            for count in after_commit:
                count()
            self._observe(records, started)
            return
        try:
            try:
                async with self._transaction(autocommit=self._autocommits(plan[0])) as tx:
                    # the batch's outbox rows (events, dead letters) in one statement
                    buffer_outbox(tx)
                    await self._process_batch(tx, plan, after_commit)
                    await self._before_commit(tx, records)
                    await self._record_positions(tx, records)
                    await flush_outbox(tx)
            except _Isolate as isolate:
                log.warning(
                    "handler of %s failed: processing the batch of %d again with a savepoint"
                    " per message",
                    isolate,
                    len(records),
                )
                after_commit = []
                async with self._session_factory() as session, session.begin():
                    await self._process_isolated(session, records)
                    await self._record_positions(session, records)
        except Exception as exc:
            for rec in records:
                self._series(metrics.MESSAGES_FAILED, rec.topic).inc()
            log.warning(
                "batch of %d failed (%s: %s); it will be redelivered",
                len(records),
                type(exc).__name__,
                exc,
            )
            await asyncio.sleep(self.retry_backoff_seconds)
            raise
        for count in after_commit:
            count()
        self._observe(records, started)

    def _autocommits(
        self, planned: Sequence[tuple[ConsumerRecord[Any, Any], Envelope | None, Any]]
    ) -> bool:
        """Whether the fast path runs the batch `planned` in an autocommit `Tx`
        (`autocommit_for`): one message to handle, of such a model, and nothing else to write."""
        if len(planned) != 1 or self.record_positions or self.before_commit is not None:
            return False
        _, env, payload = planned[0]
        return (
            env is not None
            and type(payload) in self.autocommit_for
            and not self._keeps_inbox(payload)
        )

    @contextlib.asynccontextmanager
    async def _transaction(self, *, autocommit: bool = False) -> Any:
        """The fast path's `Tx` (`servicekit.sql.transaction_on`; `autocommit`: its one
        statement commits by itself), committed when the block ends, rolled back if it raises.
        Its connection is kept for the next batch (`keep_connection`) unless beginning or ending
        the transaction failed, or it is older than `connection_max_age_seconds`."""
        assert self._session_factory is not None
        conn, self._connection = self._connection, None
        if conn is None:
            conn = await self._session_factory.kw["bind"].connect()
            self._connection_since = time.monotonic()
        try:
            async with sql.transaction_on(conn, autocommit=autocommit) as tx:
                yield tx
        finally:
            young = time.monotonic() - self._connection_since < self.connection_max_age_seconds
            if (
                self.keep_connection
                and young
                and not self._stopping_connection
                and not conn.invalidated
            ):
                self._connection = conn
            else:
                await conn.close()

    async def release_connection(self) -> None:
        """Give the kept connection back to the pool (the service stops)."""
        self._stopping_connection = True
        conn, self._connection = self._connection, None
        if conn is not None:
            await conn.close()

    def _observe(self, records: Sequence[ConsumerRecord[Any, Any]], started: float) -> None:
        """The batch's time since `started`, shared by its records, in the processing histogram;
        its size in the batch-size histogram."""
        per_message = (time.perf_counter() - started) / max(1, len(records))
        hist = self._histogram
        if hist is None:  # bound without a broker (tests): the series made on first use
            hist = self._histogram = metrics.MESSAGE_PROCESSING_SECONDS.labels(self.name)
        for _ in records:
            hist.observe(per_message)
        sizes = self._batch_sizes
        if sizes is None:
            sizes = self._batch_sizes = metrics.CONSUMER_BATCH_MESSAGES.labels(self.name)
        sizes.observe(len(records))

    async def _before_commit(self, tx: sql.Tx, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """`before_commit`, on the fast path; a permanent failure isolates the batch."""
        if self.before_commit is None or not records:
            return
        try:
            await self.before_commit(tx)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _Isolate(records[-1], exc) from exc

    async def _record_positions(
        self, db: sql.Db, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        """`record_positions`: one statement per batch; rows in one order, so two instances
        that briefly share partitions during a rebalance never lock them in opposite orders."""
        if not self.record_positions or not records:
            return
        after: dict[tuple[str, int], int] = {}
        for rec in records:
            key = (rec.topic, rec.partition)
            after[key] = max(after.get(key, 0), rec.offset + 1)
        ordered = sorted(after.items())
        await sql.execute(
            db,
            _POSITIONS_UPSERT,
            self.name,
            [topic for (topic, _), _ in ordered],
            [partition for (_, partition), _ in ordered],
            [offset for _, offset in ordered],
        )

    def bind(self, session_factory: SessionFactory) -> None:
        """Use without a broker (tests feed records to `process_records`)."""
        self._session_factory = session_factory

    def _plan(
        self, records: Sequence[ConsumerRecord[Any, Any]], after_commit: list[Callable[[], None]]
    ) -> tuple[list[tuple[ConsumerRecord[Any, Any], Envelope | None, Any]], set[int]]:
        """The fast path's records decoded: (record, envelope, payload or the parse error; None
        envelope = undecodable) for each one to process, and the indexes of those repeating
        an earlier message of the batch. Skipped records are counted in `after_commit`."""
        planned: list[tuple[ConsumerRecord[Any, Any], Envelope | None, Any]] = []
        repeated: set[int] = set()  # indexes into `planned`
        first: set[uuid.UUID] = set()
        arrived = time.time()
        for rec in records:
            env, payload = self._read(rec)
            if payload is None:
                after_commit.append(self._series(metrics.MESSAGES_SKIPPED, rec.topic).inc)
                continue
            if env is not None:
                if env.message_id in first:
                    repeated.add(len(planned))
                first.add(env.message_id)
                self._series(metrics.MESSAGE_DELIVERY_SECONDS, rec.topic).observe(
                    max(0.0, arrived - env.occurred_at.timestamp())
                )
            planned.append((rec, env, payload))
        return planned, repeated

    async def _process_batch(
        self,
        tx: sql.Tx,
        plan: tuple[list[tuple[ConsumerRecord[Any, Any], Envelope | None, Any]], set[int]],
        after_commit: list[Callable[[], None]],
    ) -> None:
        """The fast path: one inbox statement for the batch, handlers without savepoints.

        Raises `_Isolate` when a handler fails for good: the caller rolls back and goes the
        slow way. Decisions are the slow path's (the same duplicates, attempts and dead letters);
        only their counters wait in `after_commit`.
        """
        planned, repeated = plan
        fresh = [
            (rec, env, payload)
            for i, (rec, env, payload) in enumerate(planned)
            if env is not None and i not in repeated and not isinstance(payload, Exception)
        ]
        kept = [(rec, env) for rec, env, payload in fresh if self._keeps_inbox(payload)]
        # the messages that need no inbox row count as new
        inserted = {env.message_id for _, env, payload in fresh if not self._keeps_inbox(payload)}
        if kept:
            rows = await sql.fetch(
                tx,
                _INBOX_INSERT,
                self.name,
                [env.message_id for _, env in kept],
                [rec.topic for rec, _ in kept],
                [rec.partition for rec, _ in kept],
                [rec.offset for rec, _ in kept],
            )
            inserted.update(row[0] for row in rows)
        # an invalid payload gets no inbox row, but one may exist from when it was valid
        invalid = [
            env.message_id
            for i, (_, env, payload) in enumerate(planned)
            if env is not None and i not in repeated and isinstance(payload, Exception)
        ]
        known_invalid: set[uuid.UUID] = set()
        if invalid and self.inbox:
            known_invalid = set(
                (
                    await tx.session.execute(
                        sa.select(INBOX.c.message_id).where(
                            INBOX.c.consumer == self.name, INBOX.c.message_id.in_(invalid)
                        )
                    )
                ).scalars()
            )
        duplicate = metrics.MESSAGES_DUPLICATE
        for i, (rec, env, payload) in enumerate(planned):
            if env is None:
                await self._dead_letter(
                    tx.session, rec, str(payload), "DecodeError", after_commit=after_commit
                )
                continue
            if i in repeated or env.message_id in known_invalid:
                after_commit.append(duplicate.labels(self.name, rec.topic).inc)
                continue
            with _message_log_ids(env):
                if isinstance(payload, Exception):
                    await self._dead_letter(
                        tx.session,
                        rec,
                        f"invalid payload: {payload}",
                        type(payload).__name__,
                        env,
                        after_commit=after_commit,
                    )
                    continue
                if env.message_id not in inserted:
                    after_commit.append(duplicate.labels(self.name, rec.topic).inc)
                    continue
                ctx = self._context(tx, rec, env, batched=True)
                try:
                    await self.handlers[type(payload)](ctx, payload)
                except PermanentError as exc:
                    raise _Isolate(rec, exc) from exc
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    attempts = self._attempts.get(env.message_id, 0) + 1
                    if attempts < self.max_attempts:
                        self._attempts[env.message_id] = attempts
                        log.exception(
                            "handler failed (attempt %d of %d)", attempts, self.max_attempts
                        )
                        raise
                    # the last attempt is the slow path's: it counts it and dead-letters
                    raise _Isolate(rec, exc) from exc
                # its failed attempts are forgotten once the batch commits: what fails after the
                # handlers (`before_commit`) replays it on the slow path, where they count on
                after_commit.append(functools.partial(self._forget_attempts, env.message_id))
                after_commit.append(self._series(metrics.MESSAGES_PROCESSED, rec.topic).inc)

    async def _process_isolated(
        self, session: AsyncSession, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        """The slow path: a savepoint per message, so a failing one is rolled back alone."""
        # (record, envelope, payload or the parse error); None envelope: the decode error
        decoded: list[tuple[ConsumerRecord[Any, Any], Envelope | None, Any]] = []
        for rec in records:
            env, payload = self._read(rec)
            if payload is None:
                self._series(metrics.MESSAGES_SKIPPED, rec.topic).inc()
                continue
            decoded.append((rec, env, payload))
        ids = [
            env.message_id
            for _, env, payload in decoded
            if env is not None and self._keeps_inbox(payload)
        ]
        seen: set[uuid.UUID] = set()
        if ids:
            seen = set(
                (
                    await session.execute(
                        sa.select(INBOX.c.message_id).where(
                            INBOX.c.consumer == self.name, INBOX.c.message_id.in_(ids)
                        )
                    )
                ).scalars()
            )
        for rec, env, payload in decoded:
            if env is None:
                await self._dead_letter(session, rec, str(payload), "DecodeError")
                continue
            if env.message_id in seen:
                self._series(metrics.MESSAGES_DUPLICATE, rec.topic).inc()
                continue
            seen.add(env.message_id)
            await self._process_one(session, rec, env, payload)

    def _keeps_inbox(self, payload: Any) -> bool:
        """Whether a message with this payload gets an inbox row (`inbox`, `no_inbox_for`)."""
        return self.inbox and type(payload) not in self.no_inbox_for

    def _forget_attempts(self, message_id: uuid.UUID) -> None:
        self._attempts.pop(message_id, None)

    def _context(
        self,
        db: sql.Db,
        rec: ConsumerRecord[Any, Any],
        env: Envelope,
        *,
        batched: bool = False,
    ) -> MessageContext:
        return MessageContext(
            db=db,
            envelope=env,
            consumer=self.name,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            batched=batched,
        )

    def _read(self, rec: ConsumerRecord[Any, Any]) -> tuple[Envelope | None, Any]:
        """The record's envelope and payload (`_payload`); no envelope for unparsable bytes,
        and then why instead of the payload; neither for a record its headers name as a
        message without a handler here (`_without_handler`)."""
        if self._without_handler(rec):
            return None, None
        try:
            env = decode(rec.value)
        except Exception as exc:  # unparsable bytes: nothing to retry
            return None, f"undecodable message: {type(exc).__name__}: {exc}"
        return env, self._payload(env)

    def _without_handler(self, rec: ConsumerRecord[Any, Any]) -> bool:
        """Whether the record's headers (`contracts.envelope.TYPE_HEADER`, set by the outbox
        relay) name a registered message this consumer has no handler for: passed over without
        decoding it, as `_payload` would after decoding. Without them, or naming no registered
        message, the record is decoded (and an unknown type dead-lettered) as before."""
        kind = version = None
        for name, value in rec.headers or ():
            if name == TYPE_HEADER:
                kind = value
            elif name == SCHEMA_VERSION_HEADER:
                version = value
        if kind is None or version is None:
            return False
        known = self._handled_by_header.get((kind, version))
        if known is None:
            try:
                model = lookup(bytes(kind).decode(), int(version)).model
            except (LookupError, ValueError):
                return False
            # only registered messages are remembered: a bounded map, whatever the headers say
            known = self._handled_by_header[(kind, version)] = model in self.handlers
        return not known

    def _payload(self, env: Envelope) -> Any:
        """The envelope's payload validated against its registered model, or why it cannot be
        (`UnknownMessageType` for an unregistered type or version, the `ValidationError`).
        None for a registered message this consumer has no handler for: it has no effect here,
        so it is neither validated nor given an inbox row (nothing to de-duplicate), only
        counted in `messages_skipped_total`; None too for a message its model's `ignore` test
        holds for (validated, then passed over the same way)."""
        try:
            model = lookup(env.type, env.schema_version).model
        except LookupError as exc:
            return exc
        if model not in self.handlers:
            return None
        try:
            payload = model.model_validate(env.payload)
        except ValidationError as exc:
            return exc
        ignored = self.ignore.get(model)
        return None if ignored is not None and ignored(payload) else payload

    async def _process_one(
        self,
        session: AsyncSession,
        rec: ConsumerRecord[Any, Any],
        env: Envelope,
        payload: Any,
    ) -> None:
        tokens = (
            correlation_id_var.set(str(env.correlation_id)),
            chain_id_var.set(str(env.chain_id) if env.chain_id else None),
            message_id_var.set(str(env.message_id)),
        )
        try:
            if isinstance(payload, Exception):
                await self._dead_letter(
                    session, rec, f"invalid payload: {payload}", type(payload).__name__, env
                )
                return
            try:
                async with session.begin_nested():
                    if self._keeps_inbox(payload) and not await self._inbox_row(session, rec, env):
                        self._series(metrics.MESSAGES_DUPLICATE, rec.topic).inc()
                        return
                    ctx = self._context(session, rec, env)
                    await self.handlers[type(payload)](ctx, payload)
            except PermanentError as exc:
                await self._dead_letter(session, rec, str(exc), type(exc).__name__, env)
                await self._after_dead_letter(session, rec, env, payload, str(exc))
                return
            except Exception as exc:
                if is_transient(exc):
                    raise
                attempts = self._attempts.get(env.message_id, 0) + 1
                self._attempts[env.message_id] = attempts
                if attempts < self.max_attempts:
                    log.exception("handler failed (attempt %d of %d)", attempts, self.max_attempts)
                    raise
                self._attempts.pop(env.message_id, None)
                log.exception("handler failed %d times: dead-lettering", attempts)
                reason = "".join(traceback.format_exception_only(exc)).strip()
                await self._dead_letter(session, rec, reason, type(exc).__name__, env)
                await self._after_dead_letter(session, rec, env, payload, reason)
                return
            self._attempts.pop(env.message_id, None)
            self._series(metrics.MESSAGES_PROCESSED, rec.topic).inc()
        finally:
            for var, token in zip(
                (correlation_id_var, chain_id_var, message_id_var), tokens, strict=True
            ):
                var.reset(token)

    async def _inbox_row(
        self, session: AsyncSession, rec: ConsumerRecord[Any, Any], env: Envelope
    ) -> bool:
        """The message's inbox row; False when it was there already (a duplicate)."""
        inserted = await session.execute(
            pg_insert(INBOX)
            .values(
                consumer=self.name,
                message_id=env.message_id,
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
            )
            .on_conflict_do_nothing()
            .returning(INBOX.c.message_id)
        )
        return inserted.first() is not None

    async def _after_dead_letter(
        self,
        session: AsyncSession,
        rec: ConsumerRecord[Any, Any],
        env: Envelope,
        payload: Any,
        reason: str,
    ) -> None:
        """The service's `on_dead_letter` for this model, in a savepoint: a failure of its own
        leaves the dead letter alone (a transient one redelivers the batch)."""
        fallback = self.on_dead_letter.get(type(payload))
        if fallback is None:
            return
        ctx = self._context(session, rec, env)
        try:
            async with session.begin_nested():
                await fallback(ctx, payload, reason)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception(
                "what replaces the dead-lettered %s[%d]@%d failed as well; only the dead letter "
                "remains",
                rec.topic,
                rec.partition,
                rec.offset,
            )

    async def _dead_letter(
        self,
        session: AsyncSession,
        rec: ConsumerRecord[Any, Any],
        reason: str,
        error_type: str,
        env: Envelope | None = None,
        *,
        after_commit: list[Callable[[], None]] | None = None,
    ) -> None:
        # No inbox row is left for the message (the handler's savepoint, inbox row included, is
        # rolled back before this; the fast path never inserts one for a message it
        # dead-letters): a re-drive after the fix applies it, exactly once.
        def count() -> None:
            self._series(metrics.MESSAGES_DEAD_LETTERED, rec.topic).inc()
            log.error("dead-lettering %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, reason)

        if after_commit is None:
            count()
        else:
            after_commit.append(count)
        key = rec.key.decode("utf-8", "replace") if isinstance(rec.key, bytes) else str(rec.key)
        value = rec.value if isinstance(rec.value, bytes) else str(rec.value).encode()
        letter = DeadLetter(
            consumer=self.name,
            original_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=key,
            reason=reason[:4000],
            error_type=error_type,
            original_value=value.decode("utf-8", "replace"),
            failed_at=datetime.now(UTC),
            original_message_id=env.message_id if env is not None else None,
            original_type=env.type if env is not None else None,
        )
        # the same failure redelivered must not make a second dead letter: a stable id
        message_id = uuid.uuid5(
            DEAD_LETTER_NAMESPACE, f"{self.name}|{rec.topic}|{rec.partition}|{rec.offset}"
        )
        exists = await session.scalar(
            sa.text("SELECT 1 FROM outbox WHERE message_id = :m"), {"m": message_id}
        )
        if not exists:
            await enqueue_message(
                session,
                DEAD_LETTERS,
                letter,
                chain_id=None,
                key=key,
                correlation_id=message_id,
                message_id=message_id,
            )

    async def refresh_lag(self) -> None:
        """Lag of every partition this instance holds, from the broker's end offsets.

        Run periodically (servicekit's `consumer-lag` job), so the gauge also moves when no
        batch gets through: a stuck or starved consumer shows a growing lag instead of its last
        value. Series of partitions no longer assigned here are removed (the new owner reports
        them), so a rebalance leaves no stale series behind.
        """
        kafka_consumer: AIOKafkaConsumer | None = getattr(self._subscriber, "consumer", None)
        if kafka_consumer is None:
            return
        assigned = set(kafka_consumer.assignment())
        held = {(tp.topic, tp.partition) for tp in assigned}
        if assigned:
            ends = await kafka_consumer.end_offsets(list(assigned))
            for tp in assigned:
                try:
                    position = await asyncio.wait_for(kafka_consumer.position(tp), 5)
                except Exception:  # revoked meanwhile, or no position yet: next round
                    continue
                end = ends.get(tp)
                if end is None:
                    continue
                metrics.CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(0, end - position)
                )
                self._lag_partitions.add((tp.topic, tp.partition))
        for topic, partition in self._lag_partitions - held:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.name, topic, str(partition))
        self._lag_partitions &= held

    def _update_lag(
        self, kafka_consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> None:
        last: dict[tuple[str, int], int] = {}
        for rec in records:
            last[(rec.topic, rec.partition)] = max(
                last.get((rec.topic, rec.partition), -1), rec.offset
            )
        for (topic, partition), offset in last.items():
            high = kafka_consumer.highwater(TopicPartition(topic, partition))
            if high is not None:
                metrics.CONSUMER_LAG.labels(self.name, topic, str(partition)).set(
                    max(0, high - offset - 1)
                )
                self._lag_partitions.add((topic, partition))
