"""Waking HTTP requests that wait for an operation's outcome.

The consumer stores an outcome on the operation row; after its transaction commits, the
requests of this process waiting for that operation are woken at once (an asyncio event per
waiting request) and handed the row it stored, so they answer without reading it again; those
of the other gateway instances are woken through PostgreSQL's NOTIFY
(`adapters.outcome_listener`), which hands them the row too when it fits in the
notification (else they read it). A short database poll is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pos_gateway.domain.operations import OperationKey
from servicekit.sql import AFTER_COMMIT, Db, info_of

T = TypeVar("T")

_INFO_KEY = "gateway_outcomes"
_waiters: list[OutcomeWaiter] = []


class _Waiting:
    """One waiting request: its wake-up, and what the waking side handed it (None: nothing)."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.value: Any = None


class OutcomeWaiter:
    def __init__(self) -> None:
        self._events: dict[OperationKey, set[_Waiting]] = {}

    def notify(self, key: OperationKey, value: Any = None) -> None:
        """Wake the requests waiting for `key` now; `value` (the stored outcome) is what their
        `wait_for` returns instead of calling its `check` again. A request that starts waiting
        later is not handed it."""
        for waiting in self._events.get(key, ()):
            if value is not None:
                waiting.value = value
            waiting.event.set()

    def is_waiting(self, key: OperationKey) -> bool:
        """Whether a request of this process waits for `key` (tests wait for this)."""
        return bool(self._events.get(key))

    async def wait_for(
        self,
        key: OperationKey,
        check: Callable[[], Awaitable[T | None]],
        *,
        wait_seconds: float,
        poll_interval: float,
        max_poll_interval: float | None = None,
        check_first: bool = True,
    ) -> T | None:
        """`check()` until it returns something or `wait_seconds` pass (then None); what
        `notify` hands over meanwhile is returned at once.

        `check_first=False`: the first `check()` comes after the first wake-up or poll
        interval, for a caller that has just created what it waits for (nothing to find yet).

        The in-process wake-up is the fast path; the poll only finds outcomes another instance
        consumed, so its interval doubles from `poll_interval` up to `max_poll_interval`
        (default 5 x `poll_interval`): under load, when every request waits longer, fixed polls
        multiplied the database reads exactly when the database had least to spare."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        ceiling = max_poll_interval if max_poll_interval is not None else 5 * poll_interval
        interval = poll_interval
        waiting = _Waiting()
        self._events.setdefault(key, set()).add(waiting)
        try:
            while True:
                if waiting.value is not None:
                    return cast(T, waiting.value)
                if check_first:
                    result = await check()
                    if result is not None:
                        return result
                check_first = True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiting.event.wait(), min(interval, remaining))
                interval = min(ceiling, interval * 2)
                waiting.event.clear()
        finally:
            others = self._events.get(key)
            if others is not None:
                others.discard(waiting)
                if not others:
                    del self._events[key]

    def register(self) -> None:
        if self not in _waiters:
            _waiters.append(self)

    def unregister(self) -> None:
        if self in _waiters:
            _waiters.remove(self)


def wake_after_commit(db: Db, key: OperationKey, outcome: Any = None) -> None:
    """Ask for `key`'s waiters to be woken once this transaction commits, and handed `outcome`
    (the operation row as stored, as `outcomes.read_operation` reads it)."""
    info_of(db).setdefault(_INFO_KEY, {})[key] = outcome


def _wake_waiters(info: dict[str, Any]) -> None:
    for key, outcome in info.pop(_INFO_KEY, {}).items():
        for waiter in _waiters:
            waiter.notify(key, outcome)


@sa.event.listens_for(Session, "after_commit")
def _wake(session: Session) -> None:
    _wake_waiters(session.info)


# a consumer batch's `Tx` that made no session (its rollback forgets what was asked)
AFTER_COMMIT.append(_wake_waiters)


@sa.event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    # fires for a real rollback only (not a savepoint's): nothing was stored, nobody to wake
    session.info.pop(_INFO_KEY, None)
