"""The settings base every service extends: one class per service, one env prefix per service.

Shared variables (`KAFKA_BOOTSTRAP_SERVERS` and the Kafka TLS/SASL settings of
`servicekit.kafkasecurity`, `DATABASE_URL`, `APP_ENV`, `LOG_LEVEL`) are read without prefix;
`<PREFIX>DATABASE_URL` overrides the shared server URL for one service.
"""

from __future__ import annotations

import os
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.kafkasecurity import KafkaClientSettings

#: Values that must never reach a non-development deployment as a secret.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "password"})


class ServiceSettings(KafkaClientSettings):
    """Base of every service's `Settings`: subclasses set `model_config` with their prefix.

    The Kafka TLS/SASL settings (`KAFKA_SECURITY_PROTOCOL`, ...) come from
    `KafkaClientSettings`, shared without prefix like `KAFKA_BOOTSTRAP_SERVERS`."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="SERVICE_")

    #: The service's own database name on the shared server (subclasses override).
    default_database: ClassVar[str] = "service"
    service_name: ClassVar[str] = "service"

    app_env: str = Field(default="dev", validation_alias=AliasChoices("APP_ENV"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    #: Full URL of this service's database; when empty, derived from `DATABASE_URL`.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    kafka_topic_partitions: int = Field(
        default=6, validation_alias=AliasChoices("KAFKA_TOPIC_PARTITIONS")
    )
    #: Replication factor of the topics created at start-up; 0: from the cluster (3 on three
    #: brokers or more, else 1). Existing topics keep theirs.
    kafka_replication_factor: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("KAFKA_REPLICATION_FACTOR")
    )
    #: `min.insync.replicas` of every topic; 0: 2 for a topic with three replicas or more, else
    #: 1. Applied at creation and set again at start-up when a topic differs.
    kafka_min_insync_replicas: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("KAFKA_MIN_INSYNC_REPLICAS")
    )
    #: How long commands and events stay on their topics (days; negative: for ever). Reporting
    #: must have a snapshot newer than this to rebuild (docs/operations.md).
    kafka_retention_days: float = Field(
        default=30.0, validation_alias=AliasChoices("KAFKA_RETENTION_DAYS")
    )
    #: How long dead letters stay on `deadletter.v1` (days; negative: for ever).
    kafka_dead_letter_retention_days: float = Field(
        default=90.0, validation_alias=AliasChoices("KAFKA_DEAD_LETTER_RETENTION_DAYS")
    )
    #: How often the outbox relay looks for unsent rows without being woken (seconds). Only a
    #: safety net: a commit that wrote rows wakes its process's relay at once, and a relay that
    #: found another instance's relay publishing tries again after 20 ms.
    outbox_poll_interval_seconds: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = 500
    outbox_keep_sent_hours: float = 24.0
    consumer_batch_size: int = 200
    consumer_retry_backoff_seconds: float = 1.0
    #: How often each consumer commits the offsets of the batches it processed to Kafka
    #: (seconds; also on a rebalance and at stop). Longer: fewer commits; a crash redelivers
    #: up to this much, which the inbox skips.
    consumer_commit_interval_seconds: float = Field(default=0.5, gt=0)
    #: How long one Kafka poll of a consumer waits when nothing is there (milliseconds). A
    #: record that arrives ends the wait at once: this only sets how often an idle consumer
    #: wakes up, not how long a message waits.
    consumer_poll_timeout_ms: int = Field(default=500, ge=10, le=5000)
    #: How long Kafka may hold a fetch of this service's consumers to gather a batch
    #: (milliseconds; 0: every record is handed over as soon as it is there). Services off a
    #: sale's critical path (reporting, the notifier) set it: their read models lag up to this
    #: much more, and their per-batch costs are shared by the messages of a batch.
    consumer_fetch_wait_ms: int = Field(default=0, ge=0, le=2000)
    #: How long the Kafka producer (the outbox relay's, the dead letters') waits to put more
    #: records in one request (milliseconds; 0: it sends at once). The wait is added to every
    #: hop of a sale (1 ms cost a hop ~1.35 ms in process), and a relay's wake-up hands all its
    #: rows to the producer before it sends, so they leave in one request either way. In a
    #: pipeline A/B with each order (docs/benchmarks.md, "Stop 29") 0 cut p50 and p99 at 20 req/s
    #: by ~4-11 ms and cost no CPU at 60 req/s.
    producer_linger_ms: int = Field(default=0, ge=0, le=1000)
    db_pool_size: int = 10
    #: How often the gauges read from outside a batch are refreshed (seconds): consumer lag of
    #: every assigned partition (so a consumer that gets no batch through still shows its lag)
    #: and the service's business gauges read from its database.
    metrics_interval_seconds: float = Field(default=15.0, gt=0)
    #: How often each consumer's own Kafka client is probed, and how long the probe may fail
    #: without a break before the subscriber is restarted with a new client (servicekit.watchdog).
    consumer_watchdog_seconds: float = Field(default=10.0, gt=0)
    consumer_stall_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _derive_database_url(self) -> ServiceSettings:
        if not self.database_url:
            shared = os.environ.get("DATABASE_URL", "")
            if not shared:
                if self.app_env != "dev":
                    raise ValueError(
                        "DATABASE_URL (or the service's own *_DATABASE_URL) is required"
                    )
                shared = "postgresql://postgres@127.0.0.1:5432/postgres"
            self.database_url = with_database(shared, self.default_database)
        return self

    @property
    def is_dev(self) -> bool:
        return self.app_env == "dev"

    @property
    def sqlalchemy_url(self) -> str:
        return to_asyncpg_url(self.database_url)

    @property
    def kafka_servers(self) -> list[str]:
        """`KAFKA_BOOTSTRAP_SERVERS` as a list (see `bootstrap_list`)."""
        return bootstrap_list(self.kafka_bootstrap_servers)


def bootstrap_list(servers: str) -> list[str]:
    """`host:port,host:port` as a list. aiokafka splits such a string itself, but FastStream
    wraps a string into a one-element list, and aiokafka then takes all of it for one host:
    a cluster's bootstrap servers must reach FastStream as a list."""
    return [s.strip() for s in servers.split(",") if s.strip()]


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def to_asyncpg_url(url: str) -> str:
    """SQLAlchemy needs the driver in the scheme; users write plain `postgresql://`."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]}")


def require_secret(name: str, value: str, *, app_env: str) -> str:
    """Refuse a missing or placeholder secret outside local development."""
    if app_env != "dev" and value.strip().lower() in PLACEHOLDER_SECRETS:
        raise ValueError(f"{name} must be set to a real secret when APP_ENV={app_env}")
    return value
