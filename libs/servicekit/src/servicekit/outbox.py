"""Transactional outbox: events are rows written with the state change, then relayed to Kafka.

`enqueue` adds a row inside the caller's transaction; `enqueue_message` first wraps a message
model in its envelope (every service publishes through it). `OutboxRelay` publishes unsent
rows in id order with the idempotent `acks=all` producer, waits for the broker's
acknowledgements, and marks them sent. Only one relay of a service publishes at a time (a
PostgreSQL advisory lock), so rows of one key leave in the order they were written even with
several instances running. A running relay holds a connection of its own (asyncpg, no pool
checkout and no ORM session per wake-up), replaced after any failure.

A consumer batch writes its rows in one statement: between `buffer_outbox` and `flush_outbox`
(servicekit's consumer calls both around a batch's handlers, in its transaction) `enqueue` keeps
the rows in memory, in the order they were enqueued, instead of an INSERT per event. A handler
that emits its events before its last write can have that write carry them
(`carrying_buffered`): no statement of their own. A `sql.savepoint` rolled back forgets the
rows buffered inside it (they never reach the table).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import orjson
import sqlalchemy as sa
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from contracts.base import Message
from contracts.envelope import Envelope, encode, headers_of, make_envelope
from servicekit import metrics, sql
from servicekit.db import SessionFactory, plain_url
from servicekit.schema import OUTBOX

log = logging.getLogger(__name__)


async def enqueue(db: sql.Db, topic: str, envelope: Envelope) -> None:
    """Write one message to the outbox in `db`'s transaction."""
    await enqueue_many(db, [(topic, envelope)])


async def enqueue_message(
    db: sql.Db,
    topic: str,
    payload: Message,
    *,
    key: str | UUID,
    chain_id: UUID | None,
    correlation_id: UUID,
    causation_id: UUID | None = None,
    occurred_at: datetime | None = None,
    message_id: UUID | None = None,
) -> Envelope:
    """Wrap `payload` in a new envelope and write it to the outbox in `db`'s transaction; the
    envelope it wrote. `chain_id` None: the payload's own (`make_envelope`); `message_id`: a
    stable id instead of a fresh one (a redelivered failure's dead letter)."""
    env = make_envelope(
        payload,
        chain_id=chain_id,
        key=key,
        correlation_id=correlation_id,
        causation_id=causation_id,
        occurred_at=occurred_at,
    )
    if message_id is not None:
        env = env.model_copy(update={"message_id": message_id})
    await enqueue(db, topic, env)
    return env


_BUFFER = "outbox_buffer"


def outbox_message(
    topic: str,
    payload: Message,
    *,
    key: str | UUID,
    chain_id: UUID | None,
    correlation_id: UUID,
) -> tuple[Envelope, dict[str, Any]]:
    """The envelope `enqueue_message` would write and its outbox row (the columns), for a
    caller that writes the row in a statement of its own, in its transaction; that caller then
    calls `note_outbox_written` (the relay's wake-up after the commit)."""
    env = make_envelope(payload, chain_id=chain_id, key=key, correlation_id=correlation_id)
    return env, outbox_row(topic, env)


def outbox_row(topic: str, env: Envelope) -> dict[str, Any]:
    """The outbox row of one message (its columns)."""
    return {
        "message_id": env.message_id,
        "topic": topic,
        "key": env.key,
        "type": env.type,
        "value": encode(env),
        "headers": {"correlation_id": str(env.correlation_id), **headers_of(env)},
    }


def note_outbox_written(db: sql.Db) -> None:
    """This transaction wrote outbox rows: wake this process's relay once it commits."""
    sql.info_of(db)["outbox_pending"] = True


#: Rows in the order given (ids follow it: the relay publishes in id order), one statement
#: whatever their number, prepared once per connection. `{0}`..`{5}`: its parameters' numbers.
_INSERT_ROWS_NUMBERED = (
    "INSERT INTO outbox (message_id, topic, key, type, value, headers) "
    "SELECT m, t, k, y, v, h FROM unnest(${0}::uuid[], ${1}::text[], ${2}::text[], "
    "${3}::text[], ${4}::bytea[], ${5}::jsonb[]) WITH ORDINALITY AS u(m, t, k, y, v, h, n) "
    "ORDER BY n"
)
_INSERT_ROWS = _INSERT_ROWS_NUMBERED.format(*range(1, 7))


def _row_arrays(rows: Sequence[dict[str, Any]]) -> tuple[list[Any], ...]:
    """The parameters of `_INSERT_ROWS` (and of `_rows_cte`): one array per column."""
    return (
        [row["message_id"] for row in rows],
        [row["topic"] for row in rows],
        [row["key"] for row in rows],
        [row["type"] for row in rows],
        [row["value"] for row in rows],
        # JSON text of the headers (jsonb keeps their content, not the text's spacing): orjson,
        # 0.14 us a row instead of json.dumps' 2.0
        [orjson.dumps(row["headers"]).decode() for row in rows],
    )


async def _insert_rows(db: sql.Db, rows: Sequence[dict[str, Any]]) -> None:
    await sql.execute(db, _INSERT_ROWS, *_row_arrays(rows))


#: `_INSERT_ROWS` as a data-modifying CTE put in front of another statement (PostgreSQL runs it
#: once, whatever the statement reads of it), its parameters numbered after that statement's
def _rows_cte(first: int) -> str:
    return f"_outbox_rows AS ({_INSERT_ROWS_NUMBERED.format(*range(first, first + 6))})"


_WITH = re.compile(r"\s*with\s+", re.IGNORECASE)


def carrying_buffered(
    db: sql.Db, statement: str, args: Sequence[Any]
) -> tuple[str, tuple[Any, ...]]:
    """`statement` (with its `args`) made to write the outbox rows buffered so far as well, so
    that they cost no statement of their own: a handler that emits its events first and then
    sends its last write through this saves a round trip per batch.

    Unchanged when nothing is buffered, outside `buffer_outbox` (the rows were written at
    `enqueue`), or inside a `sql.savepoint` (its rollback must not take rows of the steps before
    it with it). The rows leave the buffer: they are written by this statement, in the order
    they were enqueued, or not at all if it fails (and then the transaction fails with it).
    `statement` may begin with its own `WITH` (not `WITH RECURSIVE`)."""
    info = sql.info_of(db)
    buffered: list[dict[str, Any]] | None = info.get(_BUFFER)
    if not buffered or info.get(sql.SAVEPOINTS_OPEN, 0):
        return statement, tuple(args)
    cte = _rows_cte(len(args) + 1)
    opening = _WITH.match(statement)
    if opening is None:
        combined = f"WITH {cte} {statement}"
    else:
        rest = statement[opening.end() :]
        if rest[:10].lower().startswith("recursive"):
            raise ValueError("carrying_buffered: a WITH RECURSIVE statement cannot carry rows")
        combined = f"WITH {cte}, {rest}"
    rows = list(buffered)
    buffered.clear()
    note_outbox_written(db)
    return combined, (*args, *_row_arrays(rows))


async def enqueue_many(db: sql.Db, items: Sequence[tuple[str, Envelope]]) -> None:
    if not items:
        return
    rows = [outbox_row(topic, env) for topic, env in items]
    buffered: list[dict[str, Any]] | None = sql.info_of(db).get(_BUFFER)
    if buffered is not None:
        buffered.extend(rows)
        return
    await _insert_rows(db, rows)
    note_outbox_written(db)


def _rows_kept_since(info: dict[str, Any]) -> Callable[[], None]:
    """A `sql.savepoint` begins: if it is rolled back, forget the rows buffered inside it."""
    buffered: list[dict[str, Any]] | None = info.get(_BUFFER)
    if buffered is None:
        return lambda: None
    mark = len(buffered)

    def forget() -> None:
        del buffered[mark:]

    return forget


sql.SAVEPOINT_GUARDS.append(_rows_kept_since)


def buffer_outbox(db: sql.Db) -> None:
    """From now on, keep the rows `enqueue` writes in memory until `flush_outbox` (the caller
    must flush before its commit; a rollback simply drops them with the transaction)."""
    sql.info_of(db)[_BUFFER] = []


async def flush_outbox(db: sql.Db) -> int:
    """Write the buffered rows in one statement (ids in enqueue order) and stop buffering;
    returns how many there were."""
    rows: list[dict[str, Any]] = sql.info_of(db).pop(_BUFFER, None) or []
    if rows:
        await _insert_rows(db, rows)
        note_outbox_written(db)
    return len(rows)


async def enqueue_raw(
    db: sql.Db,
    *,
    topic: str,
    key: str,
    value: bytes,
    type_: str,
    message_id: UUID,
    headers: dict[str, Any] | None = None,
) -> None:
    """Outbox row for bytes that are not an envelope (dead letters carry the original bytes)."""
    await sql.session_of(db).execute(
        sa.insert(OUTBOX).values(
            message_id=message_id,
            topic=topic,
            key=key,
            type=type_,
            value=value,
            headers=headers or {},
        )
    )
    note_outbox_written(db)


#: A wake-up is two round trips and no transaction (each statement commits on its own):
#: 1. `_CLAIM`: the relay's advisory lock, taken for the connection (a session lock: the CTE of
#:    a volatile function is evaluated once) and, only if it was got, the oldest unsent rows.
#:    One row with `got` false when another relay holds the lock; one with null columns when
#:    the lock was got and nothing waits, and then the same statement has let the lock go
#:    (`freed`: PostgreSQL runs a SELECT in WITH only where it is referenced, so the unused
#:    `freed` column is what makes the unlock happen; keep it).
#: 2. the rows are published and every acknowledgement awaited, then `_MARK_SENT_AND_CLAIM`
#:    marks them sent and, in the same statement, takes the rows committed meanwhile: if there
#:    are some, the lock is kept and they are published in turn (under load a cycle is one
#:    round trip); if not, the lock is let go. After `batch_size` rows, or when the relay
#:    stops, `_MARK_SENT` marks them and lets the lock go whatever waits.
#: Until the mark no other relay of the service publishes. A failure in between leaves the rows
#: unsent (published again by the next wake-up: consumers are idempotent) and closes the
#: connection, which lets the lock go. Both go through asyncpg directly (`servicekit.sql`):
#: they run on every wake-up and poll of every process.
_CLAIM = (
    "WITH lock AS MATERIALIZED (SELECT pg_try_advisory_lock($1::bigint) AS got), "
    "unsent AS MATERIALIZED (SELECT id, topic, key, value, headers, created_at FROM outbox "
    "WHERE (SELECT got FROM lock) AND sent_at IS NULL ORDER BY id LIMIT $2), "
    "freed AS MATERIALIZED (SELECT pg_advisory_unlock($1::bigint) FROM lock "
    "WHERE got AND NOT EXISTS (SELECT FROM unsent)) "
    "SELECT lock.got, (SELECT count(*) FROM freed) AS freed, "
    "u.id, u.topic, u.key, u.value, u.headers, u.created_at "
    "FROM lock LEFT JOIN unsent AS u ON true"
)
_MARK_SENT = (
    "WITH sent AS (UPDATE outbox SET sent_at = now(), attempts = attempts + 1 "
    "WHERE id = ANY($2::bigint[])) "
    "SELECT pg_advisory_unlock($1::bigint)"
)
#: `_MARK_SENT` and, in the same round trip, the rows committed while those were published
#: (the statement's snapshot does not see its own UPDATE, hence the ids left out): the lock is
#: kept while there are some, and let go when there are none. Under load a cycle of the relay
#: is then one round trip instead of two. One row with null columns when nothing waits.
_MARK_SENT_AND_CLAIM = (
    "WITH sent AS (UPDATE outbox SET sent_at = now(), attempts = attempts + 1 "
    "WHERE id = ANY($2::bigint[])), "
    "unsent AS MATERIALIZED (SELECT id, topic, key, value, headers, created_at FROM outbox "
    "WHERE sent_at IS NULL AND NOT (id = ANY($2::bigint[])) ORDER BY id LIMIT $3), "
    "freed AS MATERIALIZED (SELECT pg_advisory_unlock($1::bigint) "
    "WHERE NOT EXISTS (SELECT FROM unsent)) "
    "SELECT true AS got, (SELECT count(*) FROM freed) AS freed, "
    "u.id, u.topic, u.key, u.value, u.headers, u.created_at "
    "FROM (SELECT 1) AS one LEFT JOIN unsent AS u ON true"
)

_BACKLOG = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
_PURGE = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1"

_local_relays: list[OutboxRelay] = []


def _wake_relays(info: dict[str, Any]) -> None:
    # Waking the relay right after the commit keeps latency low; the poll interval is only the
    # safety net (for rows written by another process, or a wake that came too early).
    if info.pop("outbox_pending", False):
        for relay in _local_relays:
            relay.kick()


@sa.event.listens_for(Session, "after_commit")
def _wake_relays_after_commit(session: Session) -> None:
    _wake_relays(session.info)


sql.AFTER_COMMIT.append(_wake_relays)


class _Unsent(NamedTuple):
    id: int
    topic: str
    key: str
    value: bytes
    headers: dict[str, Any]
    created_at: datetime


def _unsent(result: Sequence[Any]) -> list[_Unsent]:
    """The rows of `_CLAIM` / `_MARK_SENT_AND_CLAIM` (none: one row with null columns)."""
    return sorted(
        (_Unsent(*row[2:]) for row in result if row["id"] is not None), key=lambda row: row.id
    )


class OutboxRelay:
    """Publishes this service's outbox to Kafka; run it as one background task per process."""

    def __init__(
        self,
        *,
        service: str,
        session_factory: SessionFactory,
        broker: KafkaBroker,
        poll_interval: float = 1.0,
        batch_size: int = 500,
        keep_sent: timedelta = timedelta(hours=24),
        busy_retry: float = 0.02,
    ) -> None:
        self.service = service
        self.session_factory = session_factory
        self.broker = broker
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.keep_sent = keep_sent
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock_key = zlib.crc32(f"outbox-relay:{service}".encode())
        self._last_purge = 0.0
        #: seconds before trying again when another relay of the service held the lock
        self.busy_retry = busy_retry
        self._busy = False
        engine = session_factory.kw["bind"]
        self._engine: AsyncEngine = engine
        #: the database the relay's own connection goes to (asyncpg's form of the engine's URL)
        self._url = plain_url(engine.url.render_as_string(hide_password=False))
        #: the connection `run` holds for its wake-ups (None until the first, or after a failure)
        self._own: asyncpg.Connection | None = None

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        _local_relays.append(self)
        try:
            while not self._stopping:
                try:
                    await self.open()
                    sent = await self.publish_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    metrics.OUTBOX_PUBLISH_FAILURES.inc()
                    log.exception("outbox relay iteration failed; retrying")
                    await self.close()  # a broken connection is replaced, not reused
                    await asyncio.sleep(min(5.0, max(self.poll_interval, 0.5)))
                    continue
                if sent >= self.batch_size:
                    continue  # more waiting: go on without sleeping
                if self._busy:
                    # another instance's relay is publishing: what woke this one (its own
                    # commit) must not wait for the next poll, so try again shortly
                    await asyncio.sleep(min(self.busy_retry, self.poll_interval))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
                self._wake.clear()
        finally:
            _local_relays.remove(self)
            await self.close()

    async def open(self) -> None:
        """Hold a connection of the relay's own for its wake-ups (`run` does, and reopens it
        after a failure)."""
        if self._own is None:
            own = await asyncpg.connect(self._url)
            # `headers` comes back decoded, as on the engine's connections
            await own.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            self._own = own

    async def close(self) -> None:
        """Close the relay's own connection (wake-ups then borrow one from the pool)."""
        own, self._own = self._own, None
        if own is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(own.close(), timeout=2.0)
            if not own.is_closed():
                own.terminate()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def publish_once(self) -> int:
        """Publish one batch; returns the rows sent (0 when another relay holds the lock).

        It runs on the relay's own connection while `run` holds one (no pool checkout and no
        ORM session on a wake-up), else on one borrowed from the engine's pool. A connection
        that failed mid-way may still hold the relay's lock: its own is closed, a borrowed one
        discarded, which lets the lock go."""
        if self._own is not None:
            try:
                return await self._publish_on(self._own)
            except BaseException:
                await self.close()
                raise
        async with self._engine.connect() as borrowed:
            driver: asyncpg.Connection = (await borrowed.get_raw_connection()).driver_connection
            try:
                return await self._publish_on(driver)
            except BaseException:
                await borrowed.invalidate()
                raise

    async def _publish_on(self, conn: asyncpg.Connection) -> int:
        # the lock and the rows in one round trip: no row comes back without the lock
        result = await self._fetch(conn, _CLAIM, self._lock_key, self.batch_size)
        self._busy = not result or not result[0]["got"]
        if self._busy:
            return 0
        rows = _unsent(result)
        await self._update_gauges(conn, rows)
        if not rows:  # `_CLAIM` has let the lock go
            await self._purge(conn)
            return 0
        published = 0
        while rows:
            await self._send(rows)
            ids = [row.id for row in rows]
            if self._stopping or published + len(rows) >= self.batch_size:
                await self._fetch(conn, _MARK_SENT, self._lock_key, ids)
                more: list[_Unsent] = []
            else:
                # the wake-ups of the commits whose rows this statement takes are spent
                self._wake.clear()
                more = _unsent(
                    await self._fetch(
                        conn, _MARK_SENT_AND_CLAIM, self._lock_key, ids, self.batch_size
                    )
                )
                await self._update_gauges(conn, more)
            for row in rows:
                metrics.OUTBOX_PUBLISHED.labels(row.topic).inc()
            published += len(rows)
            rows = more
        return published

    async def _send(self, rows: Sequence[_Unsent]) -> None:
        """Publish `rows` in order and wait for every acknowledgement (a failure raises first:
        the caller closes the connection, the rows stay unsent, the lock is let go)."""
        futures = []
        for row in rows:
            fut = await self.broker.publish(
                row.value,
                topic=row.topic,
                key=row.key.encode(),
                headers={k: str(v) for k, v in (row.headers or {}).items()},
                no_confirm=True,
            )
            futures.append(fut)
        await asyncio.gather(*futures)

    async def _fetch(self, conn: asyncpg.Connection, statement: str, *args: Any) -> list[Any]:
        return await sql.fetch_reported(self._engine, conn, statement, *args)

    async def _update_gauges(self, conn: asyncpg.Connection, rows: Sequence[Any]) -> None:
        if len(rows) < self.batch_size:
            metrics.OUTBOX_BACKLOG.set(len(rows))
        else:
            backlog = await self._fetch(conn, _BACKLOG)
            metrics.OUTBOX_BACKLOG.set(backlog[0][0] or 0)
        if rows:
            age = (datetime.now(UTC) - rows[0].created_at).total_seconds()
            metrics.OUTBOX_OLDEST_AGE.set(max(0.0, age))
        else:
            metrics.OUTBOX_OLDEST_AGE.set(0)

    async def _purge(self, conn: asyncpg.Connection) -> None:
        now = time.monotonic()
        if now - self._last_purge < 60:
            return
        self._last_purge = now
        await self._fetch(conn, _PURGE, datetime.now(UTC) - self.keep_sent)
