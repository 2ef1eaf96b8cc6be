"""Waking requests of this process for outcomes another gateway process consumed.

The gateway instances share the `gateway` consumer group, so an outcome is consumed by
whichever instance owns its partition, not necessarily the one whose request waits for it.
The consuming transaction sends `pg_notify('gateway_outcomes', 'chain|kind|operation')`,
which PostgreSQL delivers to every listener once that transaction commits; each instance
listens on one connection of its own and wakes its waiters. The waiters' database poll stays
as the fallback (a lost connection is opened again; notifications sent meanwhile are found by
the poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg

from pos_gateway.domain.operations import OperationKey
from servicekit.db import plain_url

log = logging.getLogger(__name__)

CHANNEL = "gateway_outcomes"


def payload_of(key: OperationKey) -> str:
    chain_id, kind, operation_id = key
    return f"{chain_id}|{kind}|{operation_id}"


def key_of(payload: str) -> OperationKey | None:
    try:
        chain_id, kind, operation_id = payload.split("|")
        return UUID(chain_id), kind, UUID(operation_id)
    except ValueError:
        return None


class OutcomeListener:
    """LISTEN on `CHANNEL` on a connection of its own; `on_key` for every notification."""

    def __init__(
        self, dsn: str, on_key: Callable[[OperationKey], None], *, retry_seconds: float = 1.0
    ) -> None:
        self.dsn = plain_url(dsn)
        self.on_key = on_key
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
        key = key_of(payload)
        if key is not None:
            self.on_key(key)

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
