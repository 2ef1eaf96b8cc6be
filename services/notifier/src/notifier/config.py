"""Settings of the notifier (env prefix `NOTIFIER_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything the notifier can be told through the environment."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    default_database: ClassVar[str] = "notifier"
    service_name: ClassVar[str] = "notifier"

    port: int = 8084
    #: consumer group of the task projection
    consumer_group: str = "notifier"
    #: how often the scan re-raises reminders of customers still overdue
    reminder_scan_interval_seconds: float = 60.0
    #: how often due webhook deliveries are attempted
    webhook_poll_interval_seconds: float = 1.0
    #: tries of one webhook delivery before it becomes a dead-letter record
    webhook_max_attempts: int = 6
    #: delay before the 2nd try; doubled for each further try
    webhook_backoff_seconds: float = 2.0
    #: longest delay between two tries
    webhook_backoff_max_seconds: float = 600.0
    #: timeout of one webhook HTTP call
    webhook_timeout_seconds: float = 5.0
    #: deliveries attempted per poll
    webhook_batch_size: int = 50
    #: local testing only: webhooks may point at loopback, private and other non-public
    #: addresses, and use http (off by default, also under `make up`)
    webhook_allow_private: bool = False
