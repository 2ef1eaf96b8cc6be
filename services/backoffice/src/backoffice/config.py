"""Settings of the back office (env prefix `BACKOFFICE_`; `APP_ENV`, `LOG_LEVEL` without prefix).

The back office has no database and no Kafka: it is a client of the gateway's public API, so
it does not extend servicekit's `ServiceSettings` (which would demand a `DATABASE_URL`
outside development).
"""

from __future__ import annotations

import logging
import secrets
from typing import ClassVar

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.settings import require_secret

log = logging.getLogger(__name__)

#: A session secret shorter than this is refused outside development: it keys the cookie
#: encryption, so it must carry at least 256 bits of a random string's worth of entropy.
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Every option of the back office; each one is an environment variable."""

    model_config = SettingsConfigDict(env_prefix="BACKOFFICE_", extra="ignore")

    service_name: ClassVar[str] = "backoffice"

    app_env: str = Field(default="dev", validation_alias=AliasChoices("APP_ENV"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    host: str = "127.0.0.1"
    port: int = 8085
    #: Base URL of the gateway's public API (the only thing the back office talks to).
    gateway_url: str = "http://127.0.0.1:8080"
    #: Timeout of one call to the gateway; beyond it the page says the gateway is unavailable.
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Encrypts and authenticates the session cookie (which holds the user's gateway token).
    #: Required outside APP_ENV=dev; in dev a random one is made per process (a restart then
    #: signs everyone out).
    session_secret: str = ""
    #: The session cookie's `Secure` flag. Keep it on behind HTTPS; `make up` turns it off
    #: because it serves plain http on 127.0.0.1. Refused off outside APP_ENV=dev.
    cookie_secure: bool = True
    #: Sessions end after this long even if the gateway's token lives longer.
    session_max_age_seconds: int = Field(default=12 * 3600, gt=0)
    #: Rows per page of the paged lists (customers, tasks, users, report tables).
    page_size: int = Field(default=50, ge=1, le=500)

    @model_validator(mode="after")
    def _secrets(self) -> Settings:
        if not self.session_secret and self.is_dev:
            self.session_secret = secrets.token_urlsafe(48)
            log.info("BACKOFFICE_SESSION_SECRET not set: generated one for this dev process")
        require_secret("BACKOFFICE_SESSION_SECRET", self.session_secret, app_env=self.app_env)
        if not self.is_dev and len(self.session_secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"BACKOFFICE_SESSION_SECRET must be at least {MIN_SECRET_LENGTH} characters "
                f"when APP_ENV={self.app_env}"
            )
        if not self.cookie_secure and not self.is_dev:
            raise ValueError(
                f"BACKOFFICE_COOKIE_SECURE=false is for local http only, not APP_ENV={self.app_env}"
            )
        return self

    @property
    def is_dev(self) -> bool:
        return self.app_env == "dev"
