"""The gateway's periodic purges (`make_definition`'s jobs): each runs its purge in one
transaction with what its setting keeps, and logs how many rows went."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from pos_gateway.config import Settings
from pos_gateway.entrypoints.app import make_definition
from pos_gateway.service_layer import idempotency, staff


class _Session:
    """A session whose transaction is only recorded (no database)."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.events.append("closed")

    def begin(self) -> _Transaction:
        return _Transaction(self.events)


class _Transaction:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def __aenter__(self) -> None:
        self.events.append("begin")

    async def __aexit__(self, *exc: object) -> None:
        self.events.append("commit")


async def test_each_purge_job_purges_in_one_transaction_what_its_setting_no_longer_keeps(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    def purging(what: str, rows: int) -> Any:
        async def purge(session: _Session, keep: timedelta) -> int:
            events.append(f"{what} older than {keep}")
            return rows

        return purge

    monkeypatch.setattr(idempotency, "purge", purging("keys", 3))
    monkeypatch.setattr(staff, "purge", purging("sessions", 0))
    settings = Settings(
        idempotency_keep_hours=24,
        idempotency_purge_interval_seconds=60,
        login_failure_window_seconds=900,
        session_purge_interval_seconds=30,
    )
    runtime = SimpleNamespace(session_factory=lambda: _Session(events))
    jobs = make_definition(settings).jobs(runtime)  # type: ignore[arg-type]
    assert [(j.name, j.interval_seconds) for j in jobs] == [
        ("idempotency-purge", 60),
        ("session-purge", 30),
    ]
    with caplog.at_level(logging.INFO, logger="pos_gateway.entrypoints.app"):
        for job in jobs:
            await job.func()
    assert events == [
        "begin",
        "keys older than 1 day, 0:00:00",
        "commit",
        "closed",
        "begin",
        "sessions older than 0:15:00",
        "commit",
        "closed",
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "pos_gateway.entrypoints.app"]
    assert logged == ["purged 3 idempotency keys"]
