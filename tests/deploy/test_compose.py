"""docker-compose.yml: every service, loopback-only ports, the settings' real names, the infra."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from deployfiles import (
    BACKENDS,
    COMPOSE,
    DOCKERFILE,
    REPO,
    SERVICES,
    Service,
    check_environment,
    load_yaml,
    settings_class,
    settings_names,
)

POM = REPO / "libs" / "devstack" / "kafka" / "pom.xml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def environment_of(definition: dict[str, Any]) -> dict[str, str]:
    env = definition.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def published_ports(definition: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of every published port."""
    result = []
    for entry in definition.get("ports", []):
        if isinstance(entry, dict):
            result.append(
                (
                    str(entry.get("host_ip", "")),
                    str(entry.get("published", "")),
                    str(entry.get("target", "")),
                )
            )
        else:
            parts = str(entry).split(":")
            if len(parts) == 3:
                result.append((parts[0], parts[1], parts[2]))
            else:
                result.append(("", parts[0], parts[-1]))
    return result


def test_compose_runs_every_service_and_the_infrastructure(compose: dict[str, Any]) -> None:
    names = set(compose["services"])
    expected = {s.name for s in SERVICES} | {"kafka", "postgres", "prometheus", "grafana"}
    assert expected <= names, f"missing from docker-compose.yml: {sorted(expected - names)}"


def test_every_published_port_is_bound_to_loopback_only(compose: dict[str, Any]) -> None:
    wrong = [
        f"{name}: {ip or '0.0.0.0'}:{host}->{target}"
        for name, definition in compose["services"].items()
        for ip, host, target in published_ports(definition)
        if ip != "127.0.0.1"
    ]
    assert not wrong, f"ports published beyond 127.0.0.1: {wrong}"


def test_each_service_is_built_from_the_shared_dockerfile_with_the_repo_as_context(
    compose: dict[str, Any], service: Service
) -> None:
    # which service: the build arguments, checked with the Dockerfile in test_images.py
    build = compose["services"][service.name]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == "deploy/docker/Dockerfile"
    assert REPO / build["dockerfile"] == DOCKERFILE and DOCKERFILE.is_file()


def test_each_service_publishes_its_default_port_and_waits_for_healthy_infrastructure(
    compose: dict[str, Any], service: Service
) -> None:
    definition = compose["services"][service.name]
    assert published_ports(definition) == [("127.0.0.1", str(service.port), str(service.port))]
    depends = definition["depends_on"]
    assert isinstance(depends, dict), "depends_on needs conditions (service_healthy)"
    if not service.backend:
        # the back office needs only the gateway (whose image has a health check)
        assert depends == {"pos-gateway": {"condition": "service_healthy"}}
        return
    for infra in ("kafka", "postgres"):
        assert depends[infra]["condition"] == "service_healthy", infra
        assert compose["services"][infra].get("healthcheck"), f"{infra} needs a healthcheck"


def test_compose_gives_each_service_exactly_the_variables_its_settings_read(
    compose: dict[str, Any], service: Service
) -> None:
    names = settings_names(service)
    env = environment_of(compose["services"][service.name])
    problems = list(check_environment(f"compose {service.name}", service, names, env))
    assert not problems, "\n".join(problems)


def test_compose_sets_every_variable_make_up_sets_for_a_service(
    compose: dict[str, Any], service: Service
) -> None:
    # `make up` runs devstack, which starts every service with one environment: the names a
    # service actually reads from it must be in that service's compose environment too.
    sys.path.insert(0, str(REPO / "libs" / "devstack" / "src"))
    try:
        from devstack.services import ServicePorts, build_service_env
    except ImportError as exc:
        pytest.fail(f"cannot import devstack.services to compare with `make up`: {exc}")
    make_up = build_service_env(
        kafka_bootstrap_servers="127.0.0.1:9092",
        database_url="postgresql://postgres@127.0.0.1:5432/postgres",
        ports=ServicePorts(),
        operator_token="token-for-the-test",
        base_env={},
    )
    read_by_service = settings_names(service).all & set(make_up)
    env = environment_of(compose["services"][service.name])
    # `make up` gives the shared server URL (a local throwaway server); compose gives each
    # service its own database URL instead (checked below)
    if "DATABASE_URL" in read_by_service:
        read_by_service = (read_by_service - {"DATABASE_URL"}) | {f"{service.prefix}DATABASE_URL"}
    missing = sorted(read_by_service - set(env))
    assert not missing, f"`make up` sets {missing} for {service.name}; compose does not"


def test_the_gateway_reaches_reporting_and_the_notifier_by_their_compose_names(
    compose: dict[str, Any],
) -> None:
    env = environment_of(compose["services"]["pos-gateway"])
    assert env["GATEWAY_REPORTING_URL"] == "http://reporting:8083"
    assert env["GATEWAY_NOTIFIER_URL"] == "http://notifier:8084"
    assert env["GATEWAY_CREDIT_URL"] == "http://credit:8081"
    assert "OPERATOR_TOKEN" in env


def test_the_back_office_calls_the_gateway_by_its_compose_name_with_a_required_secret(
    compose: dict[str, Any],
) -> None:
    env = environment_of(compose["services"]["backoffice"])
    assert env["BACKOFFICE_GATEWAY_URL"] == "http://pos-gateway:8080"
    assert re.fullmatch(
        r"\$\{BACKOFFICE_SESSION_SECRET:\?[^}]*\}", env["BACKOFFICE_SESSION_SECRET"]
    ), "no usable default"
    assert "KAFKA_BOOTSTRAP_SERVERS" not in env and "DATABASE_URL" not in env


def test_the_database_password_has_no_default_and_reaches_database_url(
    compose: dict[str, Any],
) -> None:
    required = re.compile(r"\$\{POSTGRES_PASSWORD:\?[^}]*\}")
    postgres_env = environment_of(compose["services"]["postgres"])
    assert required.fullmatch(postgres_env["POSTGRES_PASSWORD"]), (
        "POSTGRES_PASSWORD must be ${POSTGRES_PASSWORD:?...}: no usable default"
    )
    for service in BACKENDS:
        # one database and user per service (deploy/postgres/init-databases.sh), no CREATEDB
        env = environment_of(compose["services"][service.name])
        assert "DATABASE_URL" not in env, f"{service.name}: the shared server URL is given"
        database = settings_class(service.package).default_database
        own = re.compile(
            rf"postgresql://{database}:\$\{{(POSTGRES_{database.upper()}_PASSWORD):\?[^}}]*\}}"
            rf"@postgres:5432/{database}"
        )
        match = own.fullmatch(env[f"{service.prefix}DATABASE_URL"])
        assert match, f"{service.name}: {service.prefix}DATABASE_URL is not its own database"
        assert postgres_env[match.group(1)] == f"${{{match.group(1)}:?set {match.group(1)}}}"
    init = (REPO / "deploy" / "postgres" / "init-databases.sh").read_text(encoding="utf-8")
    mounted = compose["services"]["postgres"]["volumes"]
    assert (
        "./deploy/postgres/init-databases.sh:/docker-entrypoint-initdb.d/10-databases.sh:ro"
        in mounted
    )
    for service in BACKENDS:
        database = settings_class(service.package).default_database
        assert f'create {database} "$POSTGRES_{database.upper()}_PASSWORD"' in init
    assert "NOCREATEDB" in init and "REVOKE ALL ON DATABASE" in init
    grafana_env = environment_of(compose["services"]["grafana"])
    assert grafana_env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    # no other ${VAR:-default} hides a secret
    text = COMPOSE.read_text(encoding="utf-8")
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|SECRET)[A-Z_]*:-", text)


def kafka_version_of_devstack() -> str:
    assert POM.is_file(), f"{POM} is missing: it is where devstack pins the Kafka version"
    root = ET.parse(POM).getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = root.find("m:properties/m:kafka.version", ns)
    assert version is not None and version.text, "kafka.version property not found in pom.xml"
    return version.text.strip()


def test_kafka_is_the_same_4x_version_as_devstack_in_kraft_mode_without_auto_topics(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    version = kafka_version_of_devstack()
    assert version.startswith("4."), version
    assert kafka["image"] == f"apache/kafka:{version}"
    env = environment_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert not any("ZOOKEEPER" in key for key in env)
    # containers use the internal listener, the host the loopback one
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "127.0.0.1:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for service in BACKENDS:
        service_env = environment_of(compose["services"][service.name])
        assert service_env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"


def test_postgres_is_version_15(compose: dict[str, Any]) -> None:
    assert compose["services"]["postgres"]["image"] == "postgres:15"


def test_prometheus_and_grafana_read_the_committed_configuration(
    compose: dict[str, Any],
) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    grafana = compose["services"]["grafana"]
    assert published_ports(grafana) == [("127.0.0.1", "3000", "3000")]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    providers = load_yaml(REPO / "deploy/grafana/provisioning/dashboards/dashboards.yml")
    for provider in providers["providers"]:
        path = provider["options"]["path"]
        assert mounts.get(path) == "./deploy/grafana/dashboards", (
            f"dashboards provider reads {path}, compose mounts {mounts}"
        )
    home = environment_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "deploy/grafana/dashboards" / Path(home).name).is_file()
