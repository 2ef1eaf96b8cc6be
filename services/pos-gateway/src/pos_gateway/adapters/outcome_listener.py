"""Waking requests of this process for outcomes another gateway process consumed.

The gateway instances share the `gateway` consumer group, so an outcome is consumed by
whichever instance owns its partition, not necessarily the one whose request waits for it.
The consuming transaction sends `pg_notify('gateway_outcomes', 'chain|kind|operation|row')`,
which PostgreSQL delivers to every listener once that transaction commits; each instance
listens on one connection of its own and wakes its waiters, handing them the operation row
the notification carries (`row`: the stored row as JSON, the columns `Operations.read`
reads), so a request woken this way answers without reading it. A row that would make the
payload 8,000 bytes or more (PostgreSQL's limit) is left out (`chain|kind|operation`): its
waiters read it. The waiters' database poll stays as the fallback (a lost connection is
opened again; notifications sent meanwhile are found by the poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa

from pos_gateway.adapters import tables as t
from pos_gateway.domain.operations import OperationKey
from servicekit.db import plain_url

log = logging.getLogger(__name__)

CHANNEL = "gateway_outcomes"
#: PostgreSQL refuses a NOTIFY payload of this many bytes or more
PAYLOAD_LIMIT = 8000

#: an operation row as `Operations.read` reads it: every column but the `request`, and the
#: chain's minor units
ANSWER_COLUMNS: list[sa.Column[Any]] = [c for c in t.operations.columns if c.name != "request"]
_ROW_COLUMNS = [*ANSWER_COLUMNS, t.chains.c.minor_units]


def payload_of(key: OperationKey) -> str:
    """The notification's key part (`pg_notify`'s payload is it, `|`, the row's JSON)."""
    chain_id, kind, operation_id = key
    return f"{chain_id}|{kind}|{operation_id}"


def key_of(payload: str) -> OperationKey | None:
    parsed = parse(payload)
    return parsed[0] if parsed is not None else None


def parse(
    payload: str, wanted: Callable[[OperationKey], bool] | None = None
) -> tuple[OperationKey, SimpleNamespace | None] | None:
    """The operation's key and the row the notification carries (None when it carried none:
    too long to fit); None for a payload that is neither, or whose key `wanted` declines (its
    row is then not decoded: ~50 us a row, and every instance hears every outcome)."""
    try:
        chain_id, kind, operation_id, *rest = payload.split("|", 3)
        key = (UUID(chain_id), kind, UUID(operation_id))
        if wanted is not None and not wanted(key):
            return None
        return key, (_row(json.loads(rest[0])) if rest else None)
    except (ValueError, TypeError, KeyError):
        return None


def _row(data: dict[str, Any]) -> SimpleNamespace:
    """The row from its JSON (PostgreSQL's `to_jsonb`), with the types a read gives."""
    values: dict[str, Any] = {}
    for column in _ROW_COLUMNS:
        value = data[column.name]
        if value is not None and isinstance(column.type, sa.Uuid):
            value = UUID(value)
        elif value is not None and isinstance(column.type, sa.DateTime):
            value = datetime.fromisoformat(value)
        values[column.name] = value
    return SimpleNamespace(**values)


class OutcomeListener:
    """LISTEN on `CHANNEL` on a connection of its own; `on_outcome(key, row or None)` for every
    notification whose key `wanted(key)` accepts (all of them without `wanted`). PostgreSQL
    delivers every outcome to every instance, the one that consumed it included, while a
    request waits in one of them at most: `wanted` (the waiter's `is_waiting`) spares decoding
    the rows nobody here waits for."""

    def __init__(
        self,
        dsn: str,
        on_outcome: Callable[[OperationKey, Any], None],
        *,
        wanted: Callable[[OperationKey], bool] | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self.dsn = plain_url(dsn)
        self.on_outcome = on_outcome
        self.wanted = wanted
        self.retry_seconds = retry_seconds
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outcome-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parsed = parse(payload, self.wanted)
        if parsed is not None:
            self.on_outcome(*parsed)

    async def _run(self) -> None:
        while True:
            lost = asyncio.Event()
            try:
                self._conn = await asyncpg.connect(self.dsn)
                self._conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await self._conn.add_listener(CHANNEL, self._notified)
                self.listening.set()
                await lost.wait()
                log.warning("outcome listener lost its connection; opening another")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outcome listener cannot listen (%s); the poll covers meanwhile",
                    type(exc).__name__,
                )
            finally:
                self.listening.clear()
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(self.retry_seconds)
