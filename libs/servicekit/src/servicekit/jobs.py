"""Periodic jobs (overdue scans, expiry, purges): one loop per job, interval from settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from servicekit import metrics

log = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    """Runs `func` every `interval_seconds`; a failure is logged and counted, the loop goes on.

    Jobs that must run exactly once across instances take a database lock themselves.
    """

    name: str
    interval_seconds: float
    func: Callable[[], Awaitable[None]]

    async def run_forever(self) -> None:
        while True:
            try:
                await self.func()
                metrics.JOB_RUNS.labels(self.name, "ok").inc()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.JOB_RUNS.labels(self.name, "error").inc()
                log.exception("job %s failed", self.name)
            await asyncio.sleep(self.interval_seconds)
