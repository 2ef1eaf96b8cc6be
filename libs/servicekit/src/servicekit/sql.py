"""Hot statements sent straight through asyncpg, in a session's transaction or a `Tx`.

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

`Tx` is a transaction without a session: a consumer's batch begins it on a connection it keeps
between batches (BEGIN and COMMIT sent by asyncpg itself), and the statements above run on it
as on a session. A session costs ~0.1-0.2 ms of CPU per transaction on top of that (making it,
its transaction's bookkeeping, the pool checkout): measured in docs/benchmarks/notes.md. Code
that needs SQLAlchemy (`session.execute` of a Core statement, a savepoint of the session) gets
`Tx.session`, made on first use, bound to the same connection and transaction. A `Tx` made
`autocommit` is one statement that commits by itself: no BEGIN and no COMMIT (two round trips
fewer), and a second statement is refused (`OneStatementOnly`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

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


def is_disconnect(exc: BaseException) -> bool:
    """An asyncpg error that leaves its connection unusable: closed, lost, refused by a server
    shutting down or starting up, or a protocol in a state it cannot leave."""
    if isinstance(
        exc,
        OSError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.PostgresConnectionError,
    ):
        return True
    code = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and (
        code in ("57P01", "57P02", "57P03") or code.startswith("08")
    )


def _note_disconnect(conn: Connection | None, exc: BaseException) -> None:
    """What SQLAlchemy does when a statement of its own finds the connection gone: every
    connection of the pool opened before now is replaced at its next checkout, so after a
    PostgreSQL restart they do not each fail a request in turn (statements sent around
    SQLAlchemy, as here, are not seen by its handling; `Pool._invalidate` is the step it takes,
    without closing anything now)."""
    if conn is None or not is_disconnect(exc):
        return
    with contextlib.suppress(Exception):
        conn.engine.pool._invalidate(conn.connection, exc, _checkin=False)


async def _begin(adapted: Any) -> None:
    """BEGIN on SQLAlchemy's asyncpg adapter `adapted`, as it sends one itself
    (`_start_transaction`), but a failure raises asyncpg's own error, as this module's
    statements do."""
    transaction = adapted._connection.transaction(
        isolation=adapted.isolation_level, readonly=adapted.readonly, deferrable=adapted.deferrable
    )
    await transaction.start()
    adapted._transaction = transaction


#: run after a `Tx` without a session commits, with its `info` (the outbox's relay wake-up;
#: a session's commit runs SQLAlchemy's `after_commit` listeners instead)
AFTER_COMMIT: list[Callable[[dict[str, Any]], None]] = []

#: called with a transaction's `info` when a `savepoint` begins; each returns what undoes, if
#: that savepoint is rolled back, what was kept in memory for the transaction meanwhile (the
#: outbox's buffered rows)
SAVEPOINT_GUARDS: list[Callable[[dict[str, Any]], Callable[[], None]]] = []
#: `info` key: how many savepoints are open in the transaction
SAVEPOINTS_OPEN = "servicekit.sql.savepoints"


class OneStatementOnly(RuntimeError):
    """A second statement, or a session, asked of an `autocommit` `Tx`: a bug of the caller,
    which declared its work one statement."""


class Tx:
    """One transaction on a connection of the service's pool, begun and ended by asyncpg.

    `begin` sends BEGIN on `conn` (an `AsyncConnection` the caller checked out and returns);
    `commit` / `rollback` end it. The statements of this module run on it directly. `session`
    is an `AsyncSession` bound to the same connection, made on first use: what it sends is in
    this transaction (SQLAlchemy finds it begun), and `commit` then ends the transaction through
    it, so its flush and its `after_commit` listeners run. `info` is the transaction's own
    dict, the session's `info` once there is one (the outbox keeps its buffer there).

    `begin(conn, autocommit=True)` sends no BEGIN: the one statement the caller runs commits by
    itself (PostgreSQL's implicit transaction), `commit` sends nothing and runs `AFTER_COMMIT`,
    and a second statement or a session raises `OneStatementOnly` before anything is sent."""

    __slots__ = ("_adapted", "_info", "_session", "autocommit", "conn", "driver", "sent")

    def __init__(self, conn: AsyncConnection, adapted: Any, *, autocommit: bool = False) -> None:
        self.conn = conn
        self._adapted = adapted  # SQLAlchemy's asyncpg adapter: it tracks the transaction
        self.driver: asyncpg.Connection = adapted._connection
        self._session: AsyncSession | None = None
        self._info: dict[str, Any] = {}
        self.autocommit = autocommit
        self.sent = 0  # statements sent through this module

    @classmethod
    async def begin(cls, conn: AsyncConnection, *, autocommit: bool = False) -> Tx:
        adapted: Any = (await conn.get_raw_connection()).dbapi_connection
        if adapted._transaction is None and not autocommit:
            await _begin(adapted)
        return cls(conn, adapted, autocommit=autocommit and adapted._transaction is None)

    @property
    def sync_connection(self) -> Connection:
        sync = self.conn.sync_connection
        assert sync is not None
        return sync

    @property
    def info(self) -> dict[str, Any]:
        return self._info

    @property
    def session(self) -> AsyncSession:
        if self.autocommit:
            raise OneStatementOnly("a session asked of an autocommit transaction")
        if self._session is None:
            session = AsyncSession(bind=self.conn, expire_on_commit=False)
            session.sync_session.info.update(self._info)
            self._info = session.sync_session.info
            self._session = session
        return self._session

    async def commit(self) -> None:
        """Commit (through the session when there is one: its flush, its listeners)."""
        await self._end("commit")
        info, self._info = self._info, {}
        for run in AFTER_COMMIT:
            run(info)

    async def rollback(self) -> None:
        await self._end("rollback")
        self._info = {}

    async def _end(self, how: str) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                await getattr(session, how)()
            finally:
                await session.close()
        # a session ends only a transaction it took part in (it sent a statement)
        transaction, self._adapted._transaction = self._adapted._transaction, None
        if transaction is not None:
            await getattr(transaction, how)()


#: what the statements of this module run in: a session's transaction, or a `Tx`
Db = AsyncSession | Tx


@contextlib.asynccontextmanager
async def transaction_on(conn: AsyncConnection, *, autocommit: bool = False) -> AsyncIterator[Tx]:
    """A `Tx` on `conn` for the block: committed when the block ends, rolled back if it raises
    (`autocommit`: one statement, see `Tx`). If beginning or ending it fails, the state of
    `conn` is unknown, so it is invalidated (its holder must not use it again:
    `conn.invalidated`); so is an autocommit one's whose connection was lost."""
    ended = False
    try:
        tx = await Tx.begin(conn, autocommit=autocommit)
        try:
            yield tx
        except BaseException:
            await tx.rollback()
            # an autocommit block sends no ROLLBACK that would fail on a lost connection
            ended = not (tx.autocommit and tx.driver.is_closed())
            raise
        await tx.commit()
        ended = True
    except BaseException as exc:
        if not ended:
            _note_disconnect(conn.sync_connection, exc)
        raise
    finally:
        if not ended:
            with contextlib.suppress(Exception):
                await conn.invalidate()


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Tx]:
    """A `Tx` on a connection of `engine`'s pool, checked out for the block (`transaction_on`):
    a request's transaction without a session."""
    async with engine.connect() as conn, transaction_on(conn) as tx:
        yield tx


@contextlib.asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[Tx]:
    """A `Tx` for one statement on a connection of `engine`'s pool, checked out for the block:
    no BEGIN, no COMMIT and no session (`transaction_on(..., autocommit=True)`), so a read
    costs one round trip and the pool's checkout. A second statement raises `OneStatementOnly`
    before it is sent."""
    async with engine.connect() as conn, transaction_on(conn, autocommit=True) as tx:
        yield tx


def session_of(db: Db) -> AsyncSession:
    """The SQLAlchemy session of `db` (a `Tx` makes its own on first use)."""
    return db.session if isinstance(db, Tx) else db


def info_of(db: Db) -> dict[str, Any]:
    """The dict that lives as long as `db`'s transaction (`Tx.info`, the session's `info`)."""
    return db.info if isinstance(db, Tx) else db.sync_session.info


@contextlib.asynccontextmanager
async def savepoint(db: Db) -> AsyncIterator[None]:
    """A savepoint in `db`'s transaction: what runs inside is rolled back alone if it raises.
    A `Tx` without a session asks asyncpg for it (a nested transaction is a savepoint).

    What the transaction keeps in memory (`SAVEPOINT_GUARDS`) is rolled back with it: an event
    a rolled-back step had emitted is not published."""
    if isinstance(db, Tx) and db.autocommit:
        raise OneStatementOnly("a savepoint asked of an autocommit transaction")
    info = info_of(db)
    undo = [guard(info) for guard in SAVEPOINT_GUARDS]
    info[SAVEPOINTS_OPEN] = info.get(SAVEPOINTS_OPEN, 0) + 1
    try:
        if isinstance(db, Tx) and db._session is None:
            async with db.driver.transaction():
                yield
        else:
            async with session_of(db).begin_nested():
                yield
    except BaseException:
        for step in undo:
            step()
        raise
    finally:
        # `info` again: a `Tx` that made its session meanwhile keeps its info there
        info = info_of(db)
        info[SAVEPOINTS_OPEN] = info.get(SAVEPOINTS_OPEN, 1) - 1


async def _driver(db: Db) -> tuple[asyncpg.Connection, Connection]:
    """The asyncpg connection under `db`'s current transaction (for a session: BEGIN sent
    first when it has not sent a statement yet) and the SQLAlchemy connection it belongs to."""
    if isinstance(db, Tx):
        if db.autocommit and db.sent:
            raise OneStatementOnly("a second statement in an autocommit transaction")
        db.sent += 1
        return db.driver, db.sync_connection
    session = db
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
        try:
            await _begin(adapted)
        except BaseException as exc:
            _note_disconnect(conn, exc)
            raise
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


async def _send(db: Db, how: str, sql: str, args: tuple[Any, ...]) -> Any:
    """`driver.<how>(sql, *args)` on `db`'s connection, reported to its statement listeners; a
    disconnect is noted for the pool (`_note_disconnect`)."""
    driver, conn = await _driver(db)
    _report(conn, sql, args)
    try:
        return await getattr(driver, how)(sql, *args)
    except BaseException as exc:
        _note_disconnect(conn, exc)
        raise


async def fetch(db: Db, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Every row of `sql` run with `args`, in `db`'s transaction."""
    rows: list[asyncpg.Record] = await _send(db, "fetch", sql, args)
    return rows


async def fetchrow(db: Db, sql: str, *args: Any) -> asyncpg.Record | None:
    """The first row of `sql` (None when there is none), in `db`'s transaction."""
    row: asyncpg.Record | None = await _send(db, "fetchrow", sql, args)
    return row


async def fetchval(db: Db, sql: str, *args: Any) -> Any:
    """The first column of the first row of `sql` (None when there is none)."""
    return await _send(db, "fetchval", sql, args)


async def execute(db: Db, sql: str, *args: Any) -> str:
    """Run `sql` for its effect; the command tag (`INSERT 0 3`)."""
    tag: str = await _send(db, "execute", sql, args)
    return tag


async def lock_row(
    db: Db,
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
    row = await fetchrow(db, locking_sql, *args)
    if row is None and insert_sql is not None:
        await execute(db, insert_sql, *insert_args)
        row = await fetchrow(db, locking_sql, *args)
    return row
