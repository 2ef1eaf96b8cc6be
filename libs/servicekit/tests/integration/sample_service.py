"""A minimal service on servicekit's runtime, run as a real process by the shutdown test.

It consumes one topic (`SAMPLE_TOPIC`) and records each message in `things`, slowly, so that a
SIGTERM arrives while a batch is in hand.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import ClassVar

import sqlalchemy as sa
from pydantic_settings import SettingsConfigDict

from contracts.deadletter.v1 import DeadLetter
from servicekit.consumer import Consumer, MessageContext
from servicekit.runtime import ServiceDefinition, create_app, serve
from servicekit.settings import ServiceSettings


class SampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SAMPLE_", extra="ignore")
    default_database: ClassVar[str] = "sample"


async def record(ctx: MessageContext, payload: DeadLetter) -> None:
    await asyncio.sleep(0.02)
    await ctx.session.execute(
        sa.text("INSERT INTO things (message_id) VALUES (:m)"),
        {"m": str(ctx.envelope.message_id)},
    )


settings = SampleSettings()
app = create_app(
    ServiceDefinition(
        name="sample",
        settings=settings,
        migrations_dir=Path(__file__).parent / "sample_migrations",
        consumers=[
            Consumer(
                name="sample", topics=[os.environ["SAMPLE_TOPIC"]], handlers={DeadLetter: record}
            )
        ],
    )
)

if __name__ == "__main__":
    serve(app, settings)
