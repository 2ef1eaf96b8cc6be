"""Settings of the reporting service (env prefix `REPORTING_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything reporting can be told through the environment."""

    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore")

    default_database: ClassVar[str] = "reporting"
    service_name: ClassVar[str] = "reporting"

    port: int = 8083
    #: off a sale's critical path: Kafka may hold a fetch up to this long (ms) to gather a batch,
    #: so the per-batch costs are shared (the read models lag up to this much more)
    consumer_fetch_wait_ms: int = Field(default=50, ge=0, le=2000)
    #: consumer group of the live read-model projection
    consumer_group: str = "reporting"
    #: rows per page when a report is asked for with `limit` (and the cap of `limit`)
    max_page_size: int = 500
    #: records fetched per poll by `python -m reporting.rebuild`
    rebuild_batch_size: int = 500
    #: seconds between progress lines of the rebuild
    rebuild_progress_interval_seconds: float = 2.0
    #: a snapshot of the read models is taken when the newest is older than this (seconds;
    #: 0 or less: never). The rebuild starts from the newest snapshot plus the log since, so it
    #: must stay well below the topics' retention (KAFKA_RETENTION_DAYS).
    snapshot_interval_seconds: float = 86_400.0
    #: snapshots kept (the newest ones; at least one)
    snapshot_keep: int = Field(default=3, ge=1)
