"""Hot statements sent straight through asyncpg, inside a SQLAlchemy session's transaction.

A statement sent through `AsyncSession.execute` pays SQLAlchemy's pipeline on every call
(building or coercing the statement, its cache key, the execution context, result processing:
~180 us of CPU more than asyncpg's own `fetch` for a `text()` statement, more for a Core
expression built per call; measured in docs/benchmarks/notes.md). The statements a sale runs on
every hop go through here instead: SQL with `$1`-style parameters, prepared once per connection
by asyncpg's statement cache, on the very connection and transaction of the session, so they
commit or roll back (savepoints included) with everything else the session does.

What changes for the caller: rows are `asyncpg.Record`s (by name or index), `jsonb` and `json`
columns come back decoded and are passed as JSON text (SQLAlchemy's codecs on the connection),
`numeric` is `Decimal`, `uuid` a `uuid.UUID` subclass, and errors are asyncpg's own
(`asyncpg.UniqueViolationError`, ...; `is_transient` knows both kinds). Each statement is
reported to the engine's `before_cursor_execute` listeners, so the statement budget tests and
the bench's counters see it like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

_CACHE = "servicekit.sql.driver"

#: SQLSTATEs that a retry can get past: serialization failure, deadlock, admin or crash
#: shutdown, cannot connect now, too many clients; class 08 is a connection exception.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})


def is_transient_driver_error(exc: BaseException) -> bool:
    """An asyncpg error a retry can get past (see `servicekit.consumer.is_transient`)."""
    if isinstance(exc, asyncpg.PostgresError):
        code = getattr(exc, "sqlstate", None) or ""
        return code in TRANSIENT_SQLSTATES or code.startswith("08")
    # the connection is gone, or was used while closing
    return isinstance(exc, asyncpg.InterfaceError | asyncpg.PostgresConnectionError)


async def _driver(session: AsyncSession) -> tuple[asyncpg.Connection, Connection]:
    """The asyncpg connection under the session's current transaction (BEGIN sent first when
    the session has not sent a statement yet) and the SQLAlchemy connection it belongs to."""
    # the innermost transaction: a savepoint SQLAlchemy has begun is only sent (SAVEPOINT)
    # when the session next asks for its connection
    sync = session.sync_session
    current = sync.get_nested_transaction() or sync.get_transaction()
    cached = sync.info.get(_CACHE)
    if cached is not None and current is not None and cached[0] is current:
        return cached[1], cached[2]
    conn = (await session.connection()).sync_connection
    assert conn is not None
    adapted: Any = conn.connection.dbapi_connection  # SQLAlchemy's asyncpg adapter
    # SQLAlchemy starts the database transaction lazily, with the first statement it sends
    # itself; a statement sent around it must find the transaction begun (an autocommit
    # session has none, and then each statement commits on its own, as through SQLAlchemy).
    if adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()
    driver: asyncpg.Connection = adapted._connection
    sync.info[_CACHE] = (sync.get_nested_transaction() or sync.get_transaction(), driver, conn)
    return driver, conn


def _report(
    conn: Connection | None, sql: str, args: tuple[Any, ...], engine: Engine | None = None
) -> None:
    """Tell the statement listeners of `conn` (or, for a bare driver connection, of `engine`)
    that `sql` is sent."""
    owner = conn if conn is not None else engine
    assert owner is not None
    dispatch = owner.dispatch
    if dispatch.before_cursor_execute:
        dispatch.before_cursor_execute(conn, None, sql, args, None, False)


async def fetch_reported(
    engine: AsyncEngine, driver: asyncpg.Connection, sql: str, *args: Any
) -> list[asyncpg.Record]:
    """Every row of `sql` on a driver connection outside any session (the outbox relay's own),
    reported to `engine`'s statement listeners like the statements above."""
    _report(None, sql, args, engine.sync_engine)
    rows: list[asyncpg.Record] = await driver.fetch(sql, *args)
    return rows


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Every row of `sql` run with `args`, in the session's transaction."""
    driver, conn = await _driver(session)
    _report(conn, sql, args)
    rows: list[asyncpg.Record] = await driver.fetch(sql, *args)
    return rows


async def fetchrow(session: AsyncSession, sql: str, *args: Any) -> asyncpg.Record | None:
    """The first row of `sql` (None when there is none), in the session's transaction."""
    driver, conn = await _driver(session)
    _report(conn, sql, args)
    return await driver.fetchrow(sql, *args)


async def fetchval(session: AsyncSession, sql: str, *args: Any) -> Any:
    """The first column of the first row of `sql` (None when there is none)."""
    driver, conn = await _driver(session)
    _report(conn, sql, args)
    return await driver.fetchval(sql, *args)


async def execute(session: AsyncSession, sql: str, *args: Any) -> str:
    """Run `sql` for its effect; the command tag (`INSERT 0 3`)."""
    driver, conn = await _driver(session)
    _report(conn, sql, args)
    tag: str = await driver.execute(sql, *args)
    return tag


async def lock_row(
    session: AsyncSession,
    locking_sql: str,
    args: Sequence[Any],
    insert_sql: str | None = None,
    insert_args: Sequence[Any] = (),
) -> asyncpg.Record | None:
    """A row locked until the transaction ends, created first when it is missing.

    `locking_sql` is a `SELECT ... FOR UPDATE` (SKIP LOCKED allowed) of one row, run with
    `args`; `insert_sql` an `INSERT ... ON CONFLICT DO NOTHING` of it run with `insert_args`
    (None: never create). One statement when the row exists, the common case (a customer's
    every operation after the first); three on first sight. Two first sights at once: both
    insert, one waits for the other's row and inserts nothing, then both lock it in turn. With
    SKIP LOCKED, None when another transaction holds the row."""
    row = await fetchrow(session, locking_sql, *args)
    if row is None and insert_sql is not None:
        await execute(session, insert_sql, *insert_args)
        row = await fetchrow(session, locking_sql, *args)
    return row
