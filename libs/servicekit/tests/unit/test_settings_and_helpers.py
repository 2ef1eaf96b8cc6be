"""Settings derivation, secret guards and small helpers of servicekit."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict
from sqlalchemy import exc as sa_exc

from servicekit.consumer import is_transient
from servicekit.db import plain_url
from servicekit.logging import mask_card
from servicekit.settings import ServiceSettings, require_secret, to_asyncpg_url, with_database


class ExampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_", extra="ignore")
    default_database: ClassVar[str] = "example"


def test_each_service_uses_its_own_database_on_the_shared_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:5555/postgres")
    monkeypatch.delenv("EXAMPLE_DATABASE_URL", raising=False)
    assert ExampleSettings().database_url == "postgresql://u:p@127.0.0.1:5555/example"


def test_a_service_specific_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:5555/postgres")
    monkeypatch.setenv("EXAMPLE_DATABASE_URL", "postgresql://u:p@10.0.0.1:5432/other")
    assert ExampleSettings().database_url.endswith("/other")


def test_outside_development_a_database_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("EXAMPLE_DATABASE_URL", raising=False)
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ValueError, match="DATABASE_URL"):
        ExampleSettings()


def test_shared_variables_are_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("EXAMPLE_PORT", "9999")
    settings = ExampleSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.port == 9999


def test_urls_get_the_async_driver_and_other_databases() -> None:
    assert to_asyncpg_url("postgresql://a@h/db") == "postgresql+asyncpg://a@h/db"
    assert with_database("postgresql://a@h:1/x?sslmode=disable", "y") == (
        "postgresql://a@h:1/y?sslmode=disable"
    )
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_asyncpg_url("mysql://a@h/db")


def test_placeholder_secrets_are_refused_outside_development() -> None:
    assert require_secret("OPERATOR_TOKEN", "changeme", app_env="dev") == "changeme"
    with pytest.raises(ValueError, match="OPERATOR_TOKEN"):
        require_secret("OPERATOR_TOKEN", "changeme", app_env="production")
    with pytest.raises(ValueError, match="OPERATOR_TOKEN"):
        require_secret("OPERATOR_TOKEN", "", app_env="production")


def test_card_numbers_are_masked_to_their_last_four_characters() -> None:
    assert mask_card("4820000000017") == "*********0017"
    assert mask_card(None) is None


def test_infrastructure_errors_are_retried_and_logic_errors_are_not() -> None:
    assert is_transient(ConnectionError("reset"))
    assert is_transient(sa_exc.OperationalError("select", {}, Exception("down")))
    assert not is_transient(KeyError("missing"))
    assert not is_transient(ValueError("bad"))


def test_topic_retention_is_30_days_and_90_for_dead_letters_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from contracts.topics import DAY_MS, DEAD_LETTERS, RETENTION_MS
    from servicekit.runtime import topic_retention

    for var in ("KAFKA_RETENTION_DAYS", "KAFKA_DEAD_LETTER_RETENTION_DAYS"):
        monkeypatch.delenv(var, raising=False)
    assert topic_retention(ExampleSettings()) == RETENTION_MS  # the contracts' defaults
    monkeypatch.setenv("KAFKA_RETENTION_DAYS", "7")
    monkeypatch.setenv("KAFKA_DEAD_LETTER_RETENTION_DAYS", "-1")
    retention = topic_retention(ExampleSettings())
    assert retention[DEAD_LETTERS] == -1  # kept for ever
    assert {ms for t, ms in retention.items() if t != DEAD_LETTERS} == {7 * DAY_MS}


def test_replication_defaults_follow_the_cluster_as_devstack_sizes_it() -> None:
    from devstack.kafka import replication_for as devstack_replication
    from servicekit.topics import min_insync_for, replication_for

    for brokers in (1, 3, 5):
        assert replication_for(brokers) == devstack_replication(brokers)
    assert [min_insync_for(rf) for rf in (1, 2, 3, 5)] == [1, 1, 2, 2]


def test_bootstrap_servers_are_split_into_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092, 127.0.0.1:19093,")
    assert ExampleSettings().kafka_servers == ["127.0.0.1:19092", "127.0.0.1:19093"]


def test_faststream_logs_its_per_batch_lines_at_debug_and_errors_at_error() -> None:
    import logging

    from servicekit.runtime import make_broker
    from servicekit.settings import ServiceSettings

    broker = make_broker(ServiceSettings(kafka_bootstrap_servers="127.0.0.1:9"), "quiet")
    # "Received" / "Processed" of every batch: below the services' INFO level
    assert broker.config.logger.log_level == logging.DEBUG


def test_asyncpgs_own_url_carries_the_unix_socket_in_its_host_part() -> None:
    socket = "postgresql+asyncpg://retail:p%40ss@127.0.0.1:5555/credit?host=/run/pg%20x&ssl=off"
    assert plain_url(socket) == "postgresql://retail:p%40ss@%2Frun%2Fpg%20x:5555/credit?ssl=off"
    assert plain_url("postgresql://u@127.0.0.1:5555/db?host=/s") == "postgresql://u@%2Fs:5555/db"
    tcp = "postgresql+asyncpg://u:p@db.internal:5432/credit?sslmode=require"
    assert plain_url(tcp) == "postgresql://u:p@db.internal:5432/credit?sslmode=require"
