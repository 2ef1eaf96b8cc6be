"""Waiting for an operation's outcome: woken at once in-process, else by polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from pos_gateway.service_layer.waiter import OutcomeWaiter

KEY = (uuid.uuid4(), "sale", uuid.uuid4())


class CountedReads:
    """A waiter's check that counts its reads of the row: the outcome is there from read
    `found_at` on (never if None)."""

    def __init__(self, found_at: int | None = None, outcome: str = "done") -> None:
        self.reads, self.found_at, self.outcome = 0, found_at, outcome

    async def __call__(self) -> str | None:
        self.reads += 1
        found = self.found_at is not None and self.reads >= self.found_at
        return self.outcome if found else None


@pytest.mark.parametrize(("check_first", "reads"), [(True, 2), (False, 1)])
async def test_a_waiting_request_is_woken_as_soon_as_its_outcome_is_stored(
    check_first: bool, reads: int
) -> None:
    # check_first=False: the caller has just committed the operation, so a read at once could
    # only say "pending": the one read comes after the wake-up
    waiter = OutcomeWaiter()
    state: dict[str, str] = {}
    seen: list[float] = []

    async def check() -> str | None:
        seen.append(time.monotonic())
        return state.get("outcome")

    async def complete() -> None:
        await asyncio.sleep(0.05)
        state["outcome"] = "completed"
        waiter.notify(KEY)

    started = time.monotonic()
    task = asyncio.create_task(complete())
    result = await waiter.wait_for(
        KEY, check, wait_seconds=5, poll_interval=10, check_first=check_first
    )
    await task
    assert result == "completed"
    assert time.monotonic() - started < 1
    assert len(seen) == reads and seen[-1] - started >= 0.04


async def test_an_outcome_stored_by_another_instance_is_found_by_polling() -> None:
    waiter = OutcomeWaiter()
    check = CountedReads(found_at=3)
    assert await waiter.wait_for(KEY, check, wait_seconds=2, poll_interval=0.01) == "done"


async def test_no_outcome_within_the_wait_gives_none() -> None:
    waiter = OutcomeWaiter()

    async def check() -> str | None:
        return None

    started = time.monotonic()
    assert await waiter.wait_for(KEY, check, wait_seconds=0.1, poll_interval=0.02) is None
    assert time.monotonic() - started < 0.5
    assert not waiter._events  # nothing left registered


async def test_the_fallback_poll_backs_off_so_a_long_wait_reads_the_row_a_few_times_only() -> None:
    waiter = OutcomeWaiter()
    check = CountedReads()
    # 1 s at a 0.01 s interval was 100 reads; doubling up to 0.16 s makes about a dozen
    assert (
        await waiter.wait_for(
            KEY, check, wait_seconds=1.0, poll_interval=0.01, max_poll_interval=0.16
        )
        is None
    )
    assert 5 <= check.reads <= 15


async def test_a_fresh_operation_whose_outcome_came_before_the_wait_is_found_by_the_poll() -> None:
    waiter = OutcomeWaiter()

    async def check() -> str | None:
        return "completed"  # stored before the wait began: no wake-up will come

    started = time.monotonic()
    result = await waiter.wait_for(
        KEY, check, wait_seconds=5, poll_interval=0.05, check_first=False
    )
    assert result == "completed"
    assert time.monotonic() - started < 1


def test_a_notification_names_the_operation_and_anything_else_is_ignored() -> None:
    from pos_gateway.adapters.outcome_listener import key_of, parse, payload_of
    from servicekit.db import plain_url

    assert key_of(payload_of(KEY)) == KEY
    assert parse(payload_of(KEY)) == (KEY, None)  # the row did not fit: the key alone
    assert key_of("not|a key") is None and key_of("x|sale|y") is None
    assert parse(f"{payload_of(KEY)}|not json") is None
    assert parse(f'{payload_of(KEY)}|{{"status": "completed"}}') is None  # not a whole row
    assert plain_url("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"


async def test_a_request_is_waiting_for_its_key_only_while_it_waits() -> None:
    waiter = OutcomeWaiter()
    state: dict[str, str] = {}

    async def check() -> str | None:
        return state.get("outcome")

    assert not waiter.is_waiting(KEY)
    task = asyncio.create_task(
        waiter.wait_for(KEY, check, wait_seconds=5, poll_interval=10, check_first=False)
    )
    await asyncio.sleep(0)  # the task registers before its first wait
    assert waiter.is_waiting(KEY)
    assert not waiter.is_waiting((KEY[0], "payment", KEY[2]))
    state["outcome"] = "completed"
    waiter.notify(KEY)
    assert await task == "completed"
    assert not waiter.is_waiting(KEY)


async def test_a_notification_s_row_is_decoded_only_for_a_key_a_request_here_waits_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pos_gateway.adapters import outcome_listener
    from pos_gateway.adapters.outcome_listener import OutcomeListener, payload_of

    decoded: list[dict[str, Any]] = []
    monkeypatch.setattr(outcome_listener, "_row", lambda data: decoded.append(data) or data)
    waiter = OutcomeWaiter()
    listener = OutcomeListener("postgresql://u@h/db", waiter.notify, wanted=waiter.is_waiting)
    payload = f'{payload_of(KEY)}|{{"status": "completed"}}'

    listener._notified(None, 0, "gateway_outcomes", payload)  # nobody waits here
    assert decoded == []

    async def never() -> None:
        return None

    task = asyncio.create_task(
        waiter.wait_for(KEY, never, wait_seconds=5, poll_interval=10, check_first=False)
    )
    await asyncio.sleep(0)  # the task registers before its first wait
    assert waiter.is_waiting(KEY)
    listener._notified(None, 0, "gateway_outcomes", payload)
    assert await asyncio.wait_for(task, 1) == {"status": "completed"}
    assert decoded == [{"status": "completed"}]
