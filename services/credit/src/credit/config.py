"""Settings of the credit service (prefix ``CREDIT_``), on top of servicekit's shared ones."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict
from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything the credit process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="ignore")

    default_database: ClassVar[str] = "credit"
    service_name: ClassVar[str] = "credit"

    port: int = 8081
    #: How often the overdue scan runs (seconds); also readable without the prefix, as the
    #: public timing contract names it.
    overdue_scan_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        validation_alias=AliasChoices(
            "CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS", "OVERDUE_SCAN_INTERVAL_SECONDS"
        ),
    )
    #: A pending operation waiting for loyalty's answer longer than this (seconds) is counted
    #: once in credit_saga_timeouts_total and logged; it keeps waiting for the answer.
    saga_timeout_seconds: float = Field(default=30.0, gt=0)
