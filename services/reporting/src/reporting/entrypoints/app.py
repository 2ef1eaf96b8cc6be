"""The reporting process: the read-model consumer, the outbox relay and the internal API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from reporting.config import Settings
from reporting.entrypoints.api import router
from reporting.service_layer.projection import make_consumer
from servicekit.runtime import ServiceDefinition, create_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def build(settings: Settings) -> FastAPI:
    definition = ServiceDefinition(
        name="reporting",
        settings=settings,
        migrations_dir=MIGRATIONS_DIR,
        consumers=[make_consumer(settings.consumer_group)],
        routers=[router()],
    )
    return create_app(definition)


settings = Settings()
app = build(settings)
