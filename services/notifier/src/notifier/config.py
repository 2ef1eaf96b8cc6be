"""Settings of the notifier (env prefix `NOTIFIER_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from notifier.domain.mail import SmtpTarget, parse_smtp_url
from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything the notifier can be told through the environment."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    default_database: ClassVar[str] = "notifier"
    service_name: ClassVar[str] = "notifier"

    port: int = 8084
    #: off a sale's critical path: Kafka may hold a fetch up to this long (ms) to gather a batch,
    #: so the per-batch costs are shared (the read models lag up to this much more)
    consumer_fetch_wait_ms: int = Field(default=50, ge=0, le=2000)
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
    #: The SMTP server reminder digests go through:
    #: `smtp://[user:password@]host[:port][?starttls=true]` or `smtps://...` (TLS at once).
    #: Empty: no reminder mail is sent (tasks still reach the API and the webhook).
    smtp_url: SecretStr = SecretStr("")
    #: The From address of the digests (required with smtp_url).
    smtp_from: str = ""
    #: A PEM file of certificate authorities to trust for the SMTP server's certificate, in
    #: addition to the system's (a private CA). Certificates are always verified.
    smtp_ca_file: str = ""
    #: Timeout of one SMTP conversation step (connect, each command), seconds.
    smtp_timeout_seconds: float = 30.0
    #: Base URL of the back office: a digest links each task to `<url>/tasks/<task_id>`.
    backoffice_url: str = "http://127.0.0.1:8085"
    #: How often new and re-raised tasks are gathered into one digest per chain and due
    #: digests are sent (seconds).
    mail_interval_seconds: float = 60.0
    #: Tries of one digest before it is given up (status `dead`, logged).
    mail_max_attempts: int = 8
    #: Delay before the 2nd try; doubled for each further try, up to the max (seconds).
    mail_backoff_seconds: float = 30.0
    mail_backoff_max_seconds: float = 3600.0
    #: Digests sent per run at most.
    mail_batch_size: int = 50

    @property
    def smtp(self) -> SmtpTarget | None:
        """The SMTP server, or None when reminder mail is off."""
        url = self.smtp_url.get_secret_value()
        return parse_smtp_url(url) if url else None

    @model_validator(mode="after")
    def _mail(self) -> Settings:
        # refused at start-up, not at the first digest (the error never shows the password)
        if self.smtp is not None and "@" not in self.smtp_from:
            raise ValueError(
                "NOTIFIER_SMTP_FROM must be an email address when NOTIFIER_SMTP_URL is set"
            )
        return self
