"""The reporting process: the read-model consumer, the outbox relay, the internal API and the
scheduled snapshots of the read models."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from reporting.config import Settings
from reporting.entrypoints.api import router
from reporting.service_layer.handlers import make_consumer
from reporting.service_layer.snapshots import prune_snapshots, take_snapshot
from servicekit.jobs import PeriodicJob
from servicekit.runtime import Runtime, ServiceDefinition, create_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_definition(settings: Settings | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    return ServiceDefinition(
        name="reporting",
        settings=settings,
        migrations_dir=MIGRATIONS_DIR,
        consumers=[make_consumer(settings.consumer_group)],
        routers=[router()],
        jobs=lambda runtime: snapshot_jobs(runtime, settings),
    )


def snapshot_jobs(runtime: Runtime, settings: Settings) -> list[PeriodicJob]:
    """Take a snapshot of the read models when the newest is older than the interval (looked
    at every minute at most, so a restart does not reset the schedule), then drop the oldest
    beyond `snapshot_keep`. Instances race for an advisory lock: one takes it."""
    interval = settings.snapshot_interval_seconds
    if interval <= 0:
        return []

    async def snapshot() -> None:
        taken = await take_snapshot(
            runtime.engine, settings.consumer_group, unless_newer_than=timedelta(seconds=interval)
        )
        if taken is not None:
            await prune_snapshots(runtime.engine, settings.snapshot_keep)

    return [PeriodicJob("read-model-snapshot", min(interval, 60.0), snapshot)]


settings = Settings()
app = create_app(make_definition(settings))
