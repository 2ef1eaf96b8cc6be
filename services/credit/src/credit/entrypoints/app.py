"""The credit process: consumers of commands and answers, the overdue scan, internal reads.

Run with ``python -m credit`` (uvicorn via servicekit) or any ASGI server
(``credit.entrypoints.app:app``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from contracts.topics import LOYALTY_EVENTS, MASTERDATA_EVENTS, POS_COMMANDS
from credit.config import Settings
from credit.entrypoints.http import router
from credit.service_layer.deadline import expire_operations
from credit.service_layer.handlers import HANDLERS, IGNORED, NO_INBOX_FOR, ON_DEAD_LETTER
from credit.service_layer.monitoring import refresh_gauges
from credit.service_layer.overdue import scan_overdue
from servicekit.consumer import Consumer
from servicekit.jobs import PeriodicJob
from servicekit.runtime import Runtime, ServiceDefinition, create_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_consumer() -> Consumer:
    """One group for all three topics: every message of a customer takes the customer's lock."""
    return Consumer(
        name="credit",
        topics=[POS_COMMANDS, LOYALTY_EVENTS, MASTERDATA_EVENTS],
        handlers=HANDLERS,
        on_dead_letter=ON_DEAD_LETTER,
        ignore=IGNORED,
        no_inbox_for=NO_INBOX_FOR,
    )


def make_definition(settings: Settings | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    interval = settings.overdue_scan_interval_seconds

    def jobs(runtime: Runtime) -> Sequence[PeriodicJob]:
        async def scan() -> None:
            await scan_overdue(runtime.session_factory)

        async def gauges() -> None:
            await refresh_gauges(runtime.session_factory)

        started = datetime.now(UTC)

        async def deadline() -> None:
            await expire_operations(
                runtime.session_factory,
                deadline_seconds=settings.operation_deadline_seconds,
                watching_since=started,
            )

        return [
            PeriodicJob("overdue-scan", interval, scan),
            PeriodicJob("business-gauges", settings.metrics_interval_seconds, gauges),
            PeriodicJob("operation-deadline", settings.operation_deadline_scan_seconds, deadline),
        ]

    return ServiceDefinition(
        name="credit",
        settings=settings,
        migrations_dir=MIGRATIONS_DIR,
        consumers=[make_consumer()],
        jobs=jobs,
        routers=[router],
    )


settings = Settings()
app = create_app(make_definition(settings))
