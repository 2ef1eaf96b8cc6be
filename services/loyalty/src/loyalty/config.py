"""Settings of the loyalty service (env prefix ``LOYALTY_``; shared variables without prefix)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Everything loyalty can be told from the environment (see ``.env.example``)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore")

    default_database: ClassVar[str] = "loyalty"
    service_name: ClassVar[str] = "loyalty"

    port: int = 8082
    #: How often the expiry job looks for accruals whose ``bonus_expiry_days`` have passed.
    #: An expiry is dated when the accrual expired whatever the interval; the interval only
    #: bounds how late it is recorded (operations of the customer record due expiries first).
    expiry_scan_interval_seconds: float = 60.0
    #: Customers handled per round of the expiry job (each in its own short transaction).
    expiry_batch_size: int = 500
