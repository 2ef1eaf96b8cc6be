"""Kafka TLS and SASL settings reach every client a service makes: FastStream's broker (its
producer, the subscribers' consumers, its admin client), the topic set-up's admin client and
the dead-letter tool's consumer, admin client and producer."""

from __future__ import annotations

import ssl
from typing import Any, ClassVar

import certifi
import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from servicekit import deadletters, topics
from servicekit.kafkasecurity import KafkaClientSettings, broker_security, client_options
from servicekit.runtime import make_broker
from servicekit.settings import ServiceSettings

MANAGED = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "vip-credit",
    "KAFKA_SASL_PASSWORD": "s3cr3t-from-the-vault",
    # any PEM bundle of CA certificates will do: certifi's is always installed
    "KAFKA_SSL_CAFILE": certifi.where(),
}


class ExampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_", extra="ignore")
    default_database: ClassVar[str] = "example"


@pytest.fixture
def managed(monkeypatch: pytest.MonkeyPatch) -> ExampleSettings:
    for name, value in MANAGED.items():
        monkeypatch.setenv(name, value)
    return ExampleSettings(kafka_bootstrap_servers="broker.example:9096")


def _assert_managed(kwargs: dict[str, Any]) -> None:
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "vip-credit"
    assert kwargs["sasl_plain_password"] == "s3cr3t-from-the-vault"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.get_ca_certs(), "the CA file was not loaded"


def test_plain_kafka_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    settings = ExampleSettings()
    assert client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(settings) is None
    assert (
        make_broker(settings, "example")._connection_kwargs.get("security_protocol", "PLAINTEXT")
        == "PLAINTEXT"
    )


def test_the_environment_reaches_the_options_of_every_aiokafka_client(
    managed: ExampleSettings,
) -> None:
    _assert_managed(client_options(managed))
    assert "s3cr3t" not in repr(managed)  # the password is a secret: never printed


def test_the_broker_gives_them_to_its_producer_admin_and_every_consumer(
    managed: ExampleSettings,
) -> None:
    broker = make_broker(managed, "example")
    _assert_managed(broker._connection_kwargs)  # producer and admin client
    _assert_managed(broker.config.broker_config.builder.keywords)  # each subscriber's consumer


class Recorder:
    """Stands in for an aiokafka client class: records its keyword arguments."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        Recorder.made.append(kwargs)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return ["t"]

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": 1}]}

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        # topic "t" exists, one partition on one broker: only its configs are checked; the
        # dead-letter topic does not (nothing to read)
        return [
            {"topic": n, "error_code": 0, "partitions": [{"partition": 0, "replicas": [1]}]}
            for n in names
            if n == "t"
        ]

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        return []

    async def alter_configs(self, resources: list[Any]) -> list[Any]:
        return []


async def test_the_topic_set_up_and_the_dead_letter_tool_use_them(
    managed: ExampleSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Recorder.made = []
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", Recorder)
    monkeypatch.setattr(deadletters, "AIOKafkaAdminClient", Recorder)
    monkeypatch.setattr(deadletters, "AIOKafkaConsumer", Recorder)
    monkeypatch.setattr(deadletters, "AIOKafkaProducer", Recorder)
    options = client_options(managed)
    await topics.ensure_topics("broker.example:9096", ["t"], client_options=options)
    assert await deadletters.read_letters("broker.example:9096", options) == []
    assert await deadletters.redrive("broker.example:9096", [], options) == 0
    assert len(Recorder.made) == 4  # topic admin; dead letters: consumer, admin, producer
    for kwargs in Recorder.made:
        _assert_managed(kwargs)


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        KafkaClientSettings()
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAIN")
    with pytest.raises(ValidationError):
        KafkaClientSettings()


def test_tls_without_sasl_and_each_mechanism_map_to_faststream_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    tls = broker_security(KafkaClientSettings())
    assert tls is not None and tls.use_ssl and not hasattr(tls, "username")
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("KAFKA_SASL_MECHANISM", mechanism)
        monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p")
        settings = KafkaClientSettings()
        options = client_options(settings)
        assert options["sasl_mechanism"] == mechanism and "ssl_context" not in options
        broker = make_broker(ExampleSettings(), "example")
        assert broker._connection_kwargs["sasl_mechanism"] == mechanism
        assert broker._connection_kwargs["security_protocol"] == "SASL_PLAINTEXT"
