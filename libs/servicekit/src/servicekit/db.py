"""Database plumbing: the async engine, sessions, creating the service's database, migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from servicekit.settings import to_asyncpg_url, with_database

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

SessionFactory = async_sessionmaker[AsyncSession]

#: advisory lock key held while a service migrates its database (locks are per database)
MIGRATION_LOCK_KEY = 0x5E7C_0001


#: seconds after which a pooled connection is replaced on its next checkout
POOL_RECYCLE_SECONDS = 300


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """The service's engine. No `pool_pre_ping`: the ping is a transaction of its own on every
    checkout (BEGIN, a statement, ROLLBACK), i.e. extra round trips on every session. Without
    it, a connection PostgreSQL dropped (restart, failover) fails its first statement with an
    error the consumers and the outbox relay treat as transient (they retry the batch) and a
    POS retries its request; SQLAlchemy then invalidates the whole pool, so the other dropped
    connections are replaced on their next checkout instead of failing in turn
    (`tests/integration/test_db_pool.py`). `pool_recycle` bounds a connection's age."""
    return create_async_engine(
        to_asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
    )


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions for reads only, on the same pool: autocommit, so no BEGIN before the first
    statement and no ROLLBACK at the end (two round trips of a three-round-trip lookup). Each
    statement sees what was committed when it started, as it would in a READ COMMITTED
    transaction. A write through such a session would be committed at once: never write."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


def column_arrays(
    items: Iterable[Any], **columns: str | Callable[[Any], Any]
) -> dict[str, list[Any]]:
    """The parameters of a multi-row write through `unnest(CAST(:name AS type[]), ...)`: one
    list per column, in the items' order. A column is the item's attribute of that name, or a
    function of the item."""
    rows = list(items)
    return {
        name: [get(row) if callable(get) else getattr(row, get) for row in rows]
        for name, get in columns.items()
    }


def plain_url(url: str) -> str:
    """The URL asyncpg itself takes (`postgresql://`, not SQLAlchemy's `postgresql+asyncpg://`).

    A unix socket named the libpq way (`@127.0.0.1:5432/db?host=/run/postgresql`, which
    SQLAlchemy and psql follow) moves into the host part, percent-encoded
    (`@%2Frun%2Fpostgresql:5432/db`): asyncpg's own `connect` prefers the URL's host part to
    the `host` parameter, and would otherwise quietly connect over TCP."""
    plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    parts = urlsplit(plain)
    query = parse_qsl(parts.query, keep_blank_values=True)
    sockets = [value for key, value in query if key == "host" and value.startswith("/")]
    if not sockets:
        return plain
    userinfo = parts.netloc.rpartition("@")[0]
    port = f":{parts.port}" if parts.port else ""
    netloc = (f"{userinfo}@" if userinfo else "") + quote(sockets[0], safe="") + port
    rest = urlencode([(key, value) for key, value in query if key != "host"])
    return urlunsplit((parts.scheme, netloc, parts.path, rest, parts.fragment))


async def ensure_database(url: str, *, attempts: int = 30, delay: float = 1.0) -> None:
    """Create the database named in `url` if it is missing, waiting for the server to be up."""
    plain = plain_url(url)
    name = urlsplit(plain).path.lstrip("/")
    admin_url = with_database(plain, "postgres")
    for attempt in range(1, attempts + 1):
        try:
            conn = await asyncpg.connect(admin_url)
            break
        except (OSError, asyncpg.PostgresError) as exc:
            if attempt == attempts:
                raise
            log.info("waiting for PostgreSQL (%s), attempt %d", exc.__class__.__name__, attempt)
            await asyncio.sleep(delay)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("created database %s", name)
            except asyncpg.DuplicateDatabaseError:
                pass  # another instance created it at the same moment
    finally:
        await conn.close()


def alembic_config(migrations_dir: Path, url: str) -> Config:
    """Alembic's configuration for one service's migrations on `url` (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", to_asyncpg_url(url).replace("%", "%%"))
    return cfg


def run_migrations(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` (head unless told) for one service, against `url`
    (blocking; run in a thread)."""
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, url), revision)


async def prepare_database(migrations_dir: Path, url: str) -> None:
    """What every service does at start: create its database if needed, then migrate it."""
    await ensure_database(url)
    await asyncio.to_thread(run_migrations, migrations_dir, url)


def alembic_env(target_metadata_factory: Callable[[], Any] | None = None) -> None:
    """The body of every service's `migrations/env.py` (async engine, online and offline)."""
    from alembic import context
    from sqlalchemy import pool
    from sqlalchemy.engine import Connection

    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set: run migrations through servicekit.db")
    target = target_metadata_factory() if target_metadata_factory else None

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        # Several instances start at once on a fresh database: one migrates, the others wait
        # here and then find nothing left to do (a session lock survives the commits).
        connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            connection.commit()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())
