"""The environment the services get, and their ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.errors import DevstackError
from devstack.services import (
    SERVICES,
    ServicePorts,
    build_service_env,
    resolve_operator_token,
)

PORTS = ServicePorts(
    gateway=9000, credit=9001, loyalty=9002, reporting=9003, notifier=9004, backoffice=9005
)


def make_env(base: dict[str, str]) -> dict[str, str]:
    return build_service_env(
        kafka_bootstrap_servers="127.0.0.1:1111",
        database_url="postgresql://u:p@127.0.0.1:2222/postgres",
        ports=PORTS,
        operator_token="tok",
        base_env=base,
    )


def test_every_service_gets_infra_ports_urls_and_token() -> None:
    env = make_env({"PATH": "/bin"})
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1111"
    assert env["DATABASE_URL"] == "postgresql://u:p@127.0.0.1:2222/postgres"
    assert env["APP_ENV"] == "dev"
    # the digest's links point at the back office this stack started, not a default port
    assert env["NOTIFIER_BACKOFFICE_URL"] == "http://127.0.0.1:9005"
    assert env["OPERATOR_TOKEN"] == env["GATEWAY_OPERATOR_TOKEN"] == "tok"
    assert env["GATEWAY_REPORTING_URL"] == "http://127.0.0.1:9003"
    assert env["GATEWAY_NOTIFIER_URL"] == "http://127.0.0.1:9004"
    assert [env[s.port_var] for s in SERVICES] == ["9000", "9001", "9002", "9003", "9004", "9005"]
    assert env["BACKOFFICE_GATEWAY_URL"] == "http://127.0.0.1:9000"
    assert env["NOTIFIER_BACKOFFICE_URL"] == "http://127.0.0.1:9005"
    assert env["GATEWAY_HOST"] == "127.0.0.1"
    assert env["PATH"] == "/bin"


def test_other_variables_pass_through_and_the_stack_wins() -> None:
    env = make_env(
        {
            "OVERDUE_SCAN_INTERVAL_SECONDS": "1",
            "LOG_LEVEL": "DEBUG",
            "GATEWAY_PORT": "1",
            "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092",
            "APP_ENV": "prod",
            "NOTIFIER_BACKOFFICE_URL": "http://127.0.0.1:8085",
        }
    )
    assert env["OVERDUE_SCAN_INTERVAL_SECONDS"] == "1"
    assert env["CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS"] == "1"
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["GATEWAY_PORT"] == "9000"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1111"
    assert env["APP_ENV"] == "dev"


def test_the_back_office_cookie_is_not_secure_over_local_http_unless_told() -> None:
    assert make_env({})["BACKOFFICE_COOKIE_SECURE"] == "false"
    assert make_env({"BACKOFFICE_COOKIE_SECURE": "true"})["BACKOFFICE_COOKIE_SECURE"] == "true"


def test_a_service_specific_setting_beats_the_shared_alias() -> None:
    env = make_env(
        {"OVERDUE_SCAN_INTERVAL_SECONDS": "1", "CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS": "7"}
    )
    assert env["CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS"] == "7"


def test_ports_from_env_and_defaults() -> None:
    assert ServicePorts.from_env({}) == ServicePorts(8080, 8081, 8082, 8083, 8084, 8085)
    ports = ServicePorts.from_env({"GATEWAY_PORT": "18080", "NOTIFIER_PORT": "18084"})
    assert (ports.gateway, ports.credit, ports.notifier) == (18080, 8081, 18084)
    with pytest.raises(DevstackError):
        ServicePorts.from_env({"CREDIT_PORT": "x"})


def test_free_service_ports_are_distinct() -> None:
    ports = ServicePorts.free().as_dict()
    assert len(set(ports.values())) == len(SERVICES) == 6
    assert set(ports) == {s.name for s in SERVICES}


def test_operator_token_given_from_env_or_generated() -> None:
    assert resolve_operator_token("given", {"OPERATOR_TOKEN": "env"}) == ("given", False)
    assert resolve_operator_token(None, {"OPERATOR_TOKEN": "env"}) == ("env", False)
    token, generated = resolve_operator_token(None, {})
    assert generated and len(token) >= 32


def test_the_stack_summary_names_the_back_office_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.cli import _print_stack
    from devstack.stack import _write_state

    (tmp_path / "dev").mkdir()
    _write_state(
        tmp_path / "dev",
        {"gateway_url": "http://127.0.0.1:8080", "backoffice_url": "http://127.0.0.1:8085"},
    )
    _print_stack("dev", tmp_path)
    printed = capsys.readouterr().out
    assert "gateway:        http://127.0.0.1:8080" in printed
    assert "back office:    http://127.0.0.1:8085" in printed
