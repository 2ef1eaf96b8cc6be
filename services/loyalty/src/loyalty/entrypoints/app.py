"""The loyalty ASGI app: its consumer, the expiry job and the internal HTTP API on servicekit.

``uvicorn loyalty.entrypoints.app:app`` or ``python -m loyalty``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from contracts.topics import LOYALTY_COMMANDS, MASTERDATA_EVENTS
from loyalty.config import Settings
from loyalty.entrypoints.http import router
from loyalty.service_layer.expiry import expire_due_bonuses
from loyalty.service_layer.handlers import (
    NO_INBOX_FOR,
    LoyaltyHandlers,
    dead_letter_map,
    handler_map,
    utc_now,
)
from loyalty.service_layer.monitoring import refresh_gauges
from servicekit.consumer import Consumer
from servicekit.jobs import PeriodicJob
from servicekit.runtime import Runtime, ServiceDefinition, create_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
CONSUMER_GROUP = "loyalty"


def build_consumer(handlers: LoyaltyHandlers) -> Consumer:
    """The one consumer group: commands for loyalty, and master data for chain settings."""
    return Consumer(
        name=CONSUMER_GROUP,
        topics=[LOYALTY_COMMANDS, MASTERDATA_EVENTS],
        handlers=handler_map(handlers),
        on_dead_letter=dead_letter_map(handlers),
        no_inbox_for=NO_INBOX_FOR,
    )


def make_definition(settings: Settings | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    handlers = LoyaltyHandlers()

    def jobs(runtime: Runtime) -> Sequence[PeriodicJob]:
        async def expire() -> None:
            await expire_due_bonuses(
                runtime.session_factory, now=utc_now(), batch_size=settings.expiry_batch_size
            )

        async def gauges() -> None:
            await refresh_gauges(runtime.session_factory)

        return [
            PeriodicJob("bonus-expiry", settings.expiry_scan_interval_seconds, expire),
            PeriodicJob("business-gauges", settings.metrics_interval_seconds, gauges),
        ]

    return ServiceDefinition(
        name="loyalty",
        settings=settings,
        migrations_dir=MIGRATIONS_DIR,
        consumers=[build_consumer(handlers)],
        jobs=jobs,
        routers=[router],
    )


settings = Settings()
app: FastAPI = create_app(make_definition(settings))
