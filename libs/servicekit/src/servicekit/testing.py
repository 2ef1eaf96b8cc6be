"""Pytest fixtures for integration and end-to-end tests against real Kafka and PostgreSQL.

Endpoints come from `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when set (`make test` and CI
start local processes and set them). Otherwise testcontainers starts them when a Docker engine
is available. Otherwise the test fails loudly: an integration test never skips silently.

Loaded for the whole repository by the root `conftest.py` (`pytest_plugins`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import Envelope, decode, encode, make_envelope
from contracts.registry import lookup
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory, alembic_config, make_engine, prepare_database
from servicekit.settings import with_database

if TYPE_CHECKING:  # httpx is a test requirement (requirements-dev.txt), not servicekit's
    import httpx

_containers: list[Any] = []

#: the Kafka of testcontainers: the version devstack runs (libs/devstack/kafka/pom.xml) and
#: docker-compose.yml uses (tests/suite/test_kafka_version.py checks it)
KAFKA_IMAGE = "apache/kafka:4.4.0"


def _start_containers() -> tuple[str, str]:
    try:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
        postgres = PostgresContainer("postgres:15", driver=None)
    except Exception as exc:  # no Docker engine: the constructor raises
        pytest.fail(
            "integration tests need real Kafka and PostgreSQL: set KAFKA_BOOTSTRAP_SERVERS and "
            "DATABASE_URL (make test does), or run a Docker engine for testcontainers "
            f"({type(exc).__name__}: {exc})",
            pytrace=False,
        )
    kafka.start()
    postgres.start()
    _containers.extend([kafka, postgres])
    return kafka.get_bootstrap_server(), postgres.get_connection_url()


@pytest.fixture(scope="session")
def infra_endpoints() -> Iterator[tuple[str, str]]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    if kafka and database:
        yield kafka, database
        return
    yield _start_containers()
    for container in _containers:
        container.stop()
    _containers.clear()


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(infra_endpoints: tuple[str, str]) -> str:
    return infra_endpoints[0]


@pytest.fixture(scope="session")
def database_server_url(infra_endpoints: tuple[str, str]) -> str:
    return infra_endpoints[1]


async def create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        for attempt in range(20):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.InsufficientPrivilegeError:
                # FORCE cannot end a superuser's backend in the database, i.e. an autovacuum
                # worker that a busy test has just woken there (PostgreSQL 15): it finishes
                # within moments, so try again
                if attempt == 19:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await conn.close()


@pytest.fixture
async def fresh_database_url(database_server_url: str) -> AsyncIterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    url = await create_database(database_server_url, name)
    try:
        yield url
    finally:
        await drop_database(database_server_url, name)


@contextlib.asynccontextmanager
async def migrated_engine(
    migrations_dir: Path, database_url: str, *, pool_size: int = 2
) -> AsyncIterator[AsyncEngine]:
    """An engine on `database_url` after the service's migrations ran there, disposed after.

    A service's `engine` fixture: `async with migrated_engine(MIGRATIONS_DIR, url) as e`."""
    await prepare_database(migrations_dir, database_url)
    engine = make_engine(database_url, pool_size=pool_size)
    try:
        yield engine
    finally:
        await engine.dispose()


async def alembic_to(migrations_dir: Path, database_url: str, action: str, revision: str) -> None:
    """`alembic <action> <revision>` ("upgrade" / "downgrade") for one service's migrations on
    `database_url`, as `servicekit.db.run_migrations` upgrades to head (run in a thread): a
    test that takes a database back to an older revision and forward again."""
    from alembic import command

    cfg = alembic_config(migrations_dir, database_url)
    await asyncio.to_thread(getattr(command, action), cfg, revision)


def consumer_for_tests(consumer: Consumer, session_factory: SessionFactory) -> Consumer:
    """A service's consumer bound to the test database, retrying a failed batch at once."""
    consumer.bind(session_factory)
    consumer.retry_backoff_seconds = 0
    return consumer


def internal_api_client(
    router: APIRouter, session_factory: SessionFactory, *, base_url: str = "http://test"
) -> httpx.AsyncClient:
    """A client of a service's internal HTTP API in this process (no server, no port): the
    routes reach the database through `app.state.runtime.session_factory`, as when running."""
    import httpx

    app = FastAPI()
    app.include_router(router)
    app.state.runtime = SimpleNamespace(session_factory=session_factory)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}.{secrets.token_hex(5)}"


# ------------------------------------------------------------------ records for Consumer tests
# Wrap message models in envelopes and aiokafka `ConsumerRecord`s, so tests can drive a
# `servicekit.consumer.Consumer` through `process_records()` exactly as the broker would.

_offsets = itertools.count()


def carrier_letter(
    *, consumer: str = "test", original_topic: str = "x", offset: int = 0
) -> DeadLetter:
    """A real registered message to carry through a pipe under test (a dead letter is the
    simplest): `reason` "carrier", failed now."""
    return DeadLetter(
        consumer=consumer,
        original_topic=original_topic,
        partition=0,
        offset=offset,
        key="k",
        reason="carrier",
        error_type="none",
        original_value="{}",
        failed_at=datetime.now(UTC),
    )


def envelope_of(
    model: Message, *, key: str | uuid.UUID, chain_id: uuid.UUID | None = None
) -> Envelope:
    return make_envelope(model, chain_id=chain_id, key=str(key), correlation_id=uuid.uuid4())


def record_of(
    item: Message | Envelope,
    *,
    key: str | uuid.UUID | None = None,
    partition: int = 0,
    offset: int | None = None,
) -> ConsumerRecord[Any, Any]:
    """A record as the broker would deliver it (a model gets a fresh envelope)."""
    env = item if isinstance(item, Envelope) else envelope_of(item, key=key or "k")
    value = encode(env)
    raw_key = env.key.encode()
    return ConsumerRecord(
        topic=lookup(env.type, env.schema_version).topic,
        partition=partition,
        offset=next(_offsets) if offset is None else offset,
        timestamp=0,
        timestamp_type=0,
        key=raw_key,
        value=value,
        checksum=None,
        serialized_key_size=len(raw_key),
        serialized_value_size=len(value),
        headers=[],
    )


# ------------------------------------------------------------------ a service over real Kafka
# Each service keeps one test that goes through the broker (tests/suite/
# test_integration_marker.py): these publish to and read from the shared test broker.


async def publish(bootstrap_servers: str, *sends: tuple[str, Envelope]) -> None:
    """Send each (topic, envelope) as a producer of the system would, keyed by its key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for topic, env in sends:
            await producer.send_and_wait(topic, encode(env), key=env.key.encode())
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def listener(bootstrap_servers: str, *topics: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of `topics` from their beginning, in a group of its own, stopped after."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def next_envelope(
    consumer: AIOKafkaConsumer, match: Callable[[Envelope], bool], *, within: float = 60
) -> Envelope:
    """The first envelope `match` accepts (others, and records that are no envelope, are
    passed over: the topics are shared with other tests and their runs, poison included)."""
    async with asyncio.timeout(within):
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    try:
                        env = decode(record.value)
                    except ValueError:
                        continue
                    if match(env):
                        return env


async def answer_over_kafka(
    app: FastAPI,
    bootstrap_servers: str,
    send: tuple[str, Envelope],
    answers: str,
    match: Callable[[Envelope], bool],
) -> Envelope:
    """A service's whole path through the broker: with `app` running (its lifespan starts the
    consumers, the relay and the producer), `send` (topic, envelope) is published and the
    first envelope on the `answers` topic that `match` accepts is returned."""
    async with app.router.lifespan_context(app), listener(bootstrap_servers, answers) as events:
        await publish(bootstrap_servers, send)
        return await next_envelope(events, match)


@contextlib.contextmanager
def counted_statements(engine: AsyncEngine, *, ignore: str = "\0") -> Iterator[list[str]]:
    """The SQL statements `engine` sends meanwhile, shortened to 80 characters (a statement
    budget test's evidence); those starting with `ignore` (the test's own reads) left out.
    asyncpg's BEGIN and COMMIT are no statements here."""
    import sqlalchemy as sa

    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().startswith(ignore):
            seen.append(" ".join(statement.split())[:80])

    sa.event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", before)


@contextlib.asynccontextmanager
async def queries_sent(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """Every query asyncpg sends meanwhile on the connections of `engine` checked out meanwhile,
    BEGIN and COMMIT included (SQLAlchemy's statement listeners see neither: asyncpg sends
    them), each as its first word (`BEGIN`, `SELECT`, `WITH`, ...)."""
    import sqlalchemy as sa

    seen: list[str] = []
    loggers: list[tuple[Any, Callable[[Any], None]]] = []

    def log(record: Any) -> None:
        seen.append(record.query.split(None, 1)[0].rstrip(";").upper())

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection._connection  # SQLAlchemy's asyncpg adapter holds it
        driver.add_query_logger(log)
        loggers.append((driver, log))

    sa.event.listen(engine.sync_engine, "checkout", checkout)
    try:
        yield seen
        await asyncio.sleep(0)  # asyncpg calls its loggers soon after the query, not at once
    finally:
        sa.event.remove(engine.sync_engine, "checkout", checkout)
        for driver, callback in loggers:
            with contextlib.suppress(Exception):
                driver.remove_query_logger(callback)


@contextlib.contextmanager
def sessions_begun() -> Iterator[list[int]]:
    """The SQLAlchemy sessions that begin a transaction meanwhile, one entry each (a
    `servicekit.sql.Tx` that makes no session adds none)."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    seen: list[int] = []

    def began(*_: Any) -> None:
        seen.append(1)

    sa.event.listen(Session, "after_begin", began)
    try:
        yield seen
    finally:
        sa.event.remove(Session, "after_begin", began)
