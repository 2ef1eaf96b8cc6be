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
    #: An operation waiting for loyalty's answer longer than this (seconds, counted from when
    #: credit recorded it as pending) fails: it is refused as `operation_failed`, voided, loyalty
    #: is asked to undo it, and the customer's parked commands go on. Below the contract's 10 s
    #: for a final answer, with room for the job's interval and the way back to the till.
    operation_deadline_seconds: float = Field(default=7.0, gt=0)
    #: How often the `operation-deadline` job looks for operations past their deadline.
    operation_deadline_scan_seconds: float = Field(default=1.0, gt=0)
