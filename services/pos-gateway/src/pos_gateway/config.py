"""Settings of the POS gateway (env prefix `GATEWAY_`; `OPERATOR_TOKEN` without prefix)."""

from __future__ import annotations

import logging
import secrets
from typing import ClassVar

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings, require_secret

log = logging.getLogger(__name__)


class Settings(ServiceSettings):
    """Every option of the gateway; each one is an environment variable `GATEWAY_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    default_database: ClassVar[str] = "gateway"
    service_name: ClassVar[str] = "pos-gateway"

    port: int = 8080
    #: The operator's key (creates chains). Required outside APP_ENV=dev; generated in dev.
    operator_token: str = Field(default="", validation_alias=AliasChoices("OPERATOR_TOKEN"))
    #: Base URL of reporting's internal read API (balances, open sales, reports, statement).
    reporting_url: str = "http://127.0.0.1:8083"
    #: Base URL of the notifier's internal task API.
    notifier_url: str = "http://127.0.0.1:8084"
    #: Base URL of credit's internal read API (its own debt and advance of a customer).
    credit_url: str = "http://127.0.0.1:8081"
    #: How long Kafka may hold a fetch of loyalty's events to gather them (milliseconds; 0:
    #: each is handed over at once). The gateway needs two of their types, the answers to a
    #: payment bonus's cancellation, and is sent every bonus movement and answer to credit
    #: (two or three a sale with a card): with a wait, one fetch a wait carries them all
    #: instead of one fetch each, and a cancellation's answer comes up to this much later
    #: (it is answered within `sale_wait_seconds`, else 202 as any operation).
    bonus_answers_fetch_wait_ms: int = Field(default=200, ge=0, le=2000)
    #: Timeout of one call to an internal API.
    internal_timeout_seconds: float = 3.0
    #: How long a till request waits for its outcome before answering 202.
    sale_wait_seconds: float = 2.0
    #: How soon a waiting request first re-reads its row; the interval then doubles, up to 5
    #: times this value. Only a fallback: an outcome wakes its request in-process or by
    #: NOTIFY, so a poll finds something only while the LISTEN connection is down; at 0.1 s
    #: most requests read their row once for nothing.
    outcome_poll_interval_seconds: float = 0.5
    #: Idempotency keys are kept at least this long (the API promises 24 hours).
    idempotency_keep_hours: float = 48.0
    idempotency_purge_interval_seconds: float = 3600.0
    #: Operations made offline may be sent up to this many days later.
    offline_max_days: int = 90
    #: `occurred_at` may be this far in the future (till clocks drift).
    clock_skew_seconds: float = 300.0
    #: Requests per second a terminal key may make on average, and its burst.
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 200
    #: Bodies larger than this are refused with 413.
    max_body_bytes: int = 1_000_000
    #: How long a staff token from `POST /v1/sessions` is valid (8 hours: a working day).
    session_ttl_seconds: float = 8 * 3600.0
    #: Failed sign-ins for one email (known or not) before it is locked (429 + Retry-After).
    login_max_failures: int = 5
    #: The first lock's length; every further failure after a lock doubles it, up to the max.
    login_lockout_seconds: float = 60.0
    login_lockout_max_seconds: float = 900.0
    #: Failures older than this (counted from the last one) are forgotten.
    login_failure_window_seconds: float = 3600.0
    #: Password hashes computed at once by this process (each takes 64 MiB and ~0.1 s of CPU).
    hashing_concurrency: int = 2
    #: How often expired staff tokens and old sign-in failures are deleted.
    session_purge_interval_seconds: float = 3600.0

    @model_validator(mode="after")
    def _operator_token(self) -> Settings:
        if not self.operator_token and self.is_dev:
            self.operator_token = secrets.token_urlsafe(32)
            # logged once, at start-up, so a developer can create a chain locally
            log.warning(
                "OPERATOR_TOKEN not set: generated one for this dev process: %s",
                self.operator_token,
            )
        require_secret("OPERATOR_TOKEN", self.operator_token, app_env=self.app_env)
        return self
