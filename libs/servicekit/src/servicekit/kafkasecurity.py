"""How every Kafka client of a service connects: plain (local, the default) or with TLS and
SASL, as managed Kafka services require.

The settings are shared, without prefix, like `KAFKA_BOOTSTRAP_SERVERS`:

- `KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`;
- `KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with `SASL_*`);
- `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`: the credentials (with `SASL_*`);
- `KAFKA_SSL_CAFILE`: a PEM file of the CA that signed the brokers' certificates (with `SSL`
  or `SASL_SSL`; empty: the system's trusted CAs).

`client_options` gives the keyword arguments of aiokafka's producers, consumers and admin
clients; `broker_security` the same for FastStream's `KafkaBroker` (its producer, the
subscribers' consumers and its admin client).
"""

from __future__ import annotations

from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaClientSettings(BaseSettings):
    """The Kafka connection settings of every service (and of the command-line tools)."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SASL_USERNAME")
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: str = Field(default="", validation_alias=AliasChoices("KAFKA_SSL_CAFILE"))

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaClientSettings:
        if self.uses_sasl and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")


def client_options(settings: KafkaClientSettings) -> dict[str, Any]:
    """Keyword arguments for `AIOKafkaProducer`, `AIOKafkaConsumer` and `AIOKafkaAdminClient`."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.uses_tls:
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.uses_sasl:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def broker_security(settings: KafkaClientSettings) -> BaseSecurity | None:
    """The same settings as FastStream's `security=` of `KafkaBroker` (None: plain)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    context = (
        create_ssl_context(cafile=settings.kafka_ssl_cafile or None) if settings.uses_tls else None
    )
    if not settings.uses_sasl:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.kafka_sasl_mechanism
    ]
    return kind(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=settings.uses_tls,
    )
