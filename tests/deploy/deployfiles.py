"""What the deployment tests share: the services, their settings' names, file loaders.

These tests read files only (compose, the Dockerfile, Kubernetes manifests, Prometheus and Grafana
configuration); nothing here needs Docker, a cluster or running services. Where a check needs a
service's `Settings` class, the service package must be importable: a missing one fails the
test with a message saying so, it never skips.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, AliasPath

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
#: The one Dockerfile of every service image; build arguments say which service.
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"

#: Read by servicekit without a field (the shared server URL each service derives its own from).
SHARED_WITHOUT_FIELD = frozenset({"DATABASE_URL"})
#: The shared variables every service gets, whatever runs it (compose, Kubernetes). Not the
#: shared server URL `DATABASE_URL`: there each service gets its own `<PREFIX>DATABASE_URL`, a
#: database and user of its own, so no deployment needs a user with CREATEDB.
SHARED_VARIABLES = frozenset(
    {"KAFKA_BOOTSTRAP_SERVERS", "APP_ENV", "LOG_LEVEL", "KAFKA_TOPIC_PARTITIONS"}
)
#: ...and the ones the back office gets (no Kafka, no database).
WEB_SHARED_VARIABLES = frozenset({"APP_ENV", "LOG_LEVEL"})


@dataclass(frozen=True)
class Service:
    directory: str  # services/<directory>; also the compose service, Kubernetes and job name
    package: str
    prefix: str  # env prefix with the trailing underscore
    port: int
    #: a service of the system: Kafka, its own database, a migration Job, an autoscaler bound
    #: to the partitions. The back office is not one: it only calls the gateway's public API.
    backend: bool = True

    @property
    def name(self) -> str:
        return self.directory


SERVICES: tuple[Service, ...] = (
    Service("pos-gateway", "pos_gateway", "GATEWAY_", 8080),
    Service("credit", "credit", "CREDIT_", 8081),
    Service("loyalty", "loyalty", "LOYALTY_", 8082),
    Service("reporting", "reporting", "REPORTING_", 8083),
    Service("notifier", "notifier", "NOTIFIER_", 8084),
    Service("backoffice", "backoffice", "BACKOFFICE_", 8085, backend=False),
)
#: the five services of the system (each with Kafka and a database of its own)
BACKENDS: tuple[Service, ...] = tuple(s for s in SERVICES if s.backend)


def service_ids(service: Service) -> str:
    return service.name


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def compose_build(service: Service) -> dict[str, Any]:
    """The `build` section of `service` in docker-compose.yml (merge keys resolved)."""
    build: dict[str, Any] = load_yaml(COMPOSE)["services"][service.name]["build"]
    return build


def compose_build_args(service: Service) -> dict[str, str]:
    """The build arguments docker-compose.yml gives `service`'s image, as strings."""
    args = compose_build(service).get("args", {})
    if isinstance(args, list):  # the NAME=value list form
        return dict(item.split("=", 1) for item in args)
    return {str(k): str(v) for k, v in args.items()}


def settings_class(package: str) -> Any:
    """`<package>.config.Settings`, or a test failure that says what is missing."""
    error = ""
    try:
        module = importlib.import_module(f"{package}.config")
    except Exception as exc:  # ImportError, or the module failing at import
        error = f"{type(exc).__name__}: {exc}"
    if error:
        pytest.fail(
            f"cannot import {package}.config ({error}). The deployment files are checked "
            f"against the service's Settings: install the service (`make venv`, or pip "
            f"install -e services/<dir>) and make sure src/{package}/config.py defines "
            f"`class Settings(ServiceSettings)`.",
            pytrace=False,
        )
    cls = getattr(module, "Settings", None)
    if cls is None:
        pytest.fail(f"{package}.config has no `Settings` class", pytrace=False)
    return cls


def env_names(settings_cls: Any) -> dict[str, set[str]]:
    """field name -> the environment variable names pydantic-settings reads it from."""
    config = settings_cls.model_config
    prefix = config.get("env_prefix", "")
    case_sensitive = bool(config.get("case_sensitive", False))
    result: dict[str, set[str]] = {}
    for field_name, field in settings_cls.model_fields.items():
        names: set[str] = set()
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        for choice in choices:
            if isinstance(choice, str):
                names.add(choice)
            elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                names.add(choice.path[0])
        if not names:
            # an alias (or validation alias) replaces the prefixed name entirely
            names.add(field.alias or prefix + field_name)
        result[field_name] = names if case_sensitive else {n.upper() for n in names}
    return result


@dataclass(frozen=True)
class SettingsNames:
    """What one service's Settings reads from the environment."""

    prefix: str
    by_field: dict[str, set[str]]
    required_fields: frozenset[str]
    defaults: dict[str, Any]
    backend: bool = True

    @property
    def all(self) -> set[str]:
        names = set(SHARED_WITHOUT_FIELD) if self.backend else set()
        for field_names in self.by_field.values():
            names |= field_names
        return names


def settings_names(service: Service) -> SettingsNames:
    """The names `service`'s Settings reads (fails the test when the package is missing)."""
    cls = settings_class(service.package)
    prefix = cls.model_config.get("env_prefix", "")
    assert prefix.upper() == service.prefix, (
        f"{service.package}.config.Settings has env_prefix {prefix!r}, "
        f"the deployment files use {service.prefix!r}"
    )
    return SettingsNames(
        prefix=prefix,
        by_field=env_names(cls),
        required_fields=frozenset(
            name for name, field in cls.model_fields.items() if field.is_required()
        ),
        defaults={
            name: field.default
            for name, field in cls.model_fields.items()
            if not field.is_required()
        },
        backend=service.backend,
    )


def check_environment(
    where: str, service: Service, names: SettingsNames, environment: dict[str, Any]
) -> Iterator[str]:
    """Problems of one service's environment (as given by compose or Kubernetes)."""
    shared = SHARED_VARIABLES if service.backend else WEB_SHARED_VARIABLES
    unknown = sorted(set(environment) - names.all)
    if unknown:
        yield (
            f"{where}: {unknown} are read by no field of {service.package}.config.Settings "
            f"(extra='ignore' would silently drop them); known: {sorted(names.all)}"
        )
    for field_name in sorted(names.required_fields):
        if not names.by_field[field_name] & set(environment):
            expected = sorted(names.by_field[field_name])
            yield f"{where}: required setting {field_name} is not set (one of {expected})"
    missing_shared = sorted(shared - set(environment))
    if missing_shared:
        yield f"{where}: shared variables missing: {missing_shared}"
    if "DATABASE_URL" in environment:
        yield f"{where}: the shared DATABASE_URL (a server URL, CREATEDB) is given; use its own"
    if service.backend and f"{service.prefix}DATABASE_URL" not in environment:
        yield f"{where}: {service.prefix}DATABASE_URL (the service's own database) is not set"
    host = environment.get(f"{service.prefix}HOST")
    if str(host) != "0.0.0.0":
        yield f"{where}: {service.prefix}HOST must be 0.0.0.0 inside a container, is {host!r}"
    port = environment.get(f"{service.prefix}PORT")
    if str(port) != str(service.port):
        yield f"{where}: {service.prefix}PORT must be {service.port}, is {port!r}"
    if names.defaults.get("port") != service.port:
        yield (
            f"{service.package}.config.Settings.port defaults to {names.defaults.get('port')}, "
            f"the deployment files use {service.port}"
        )


_WORD = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_NOT_METRICS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?[0-9a-zA-Z_$]+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in _WORD.finditer(text):
        name = match.group(1)
        if name in _NOT_METRICS or text[match.end() :].lstrip().startswith("("):
            continue  # keyword, or a function / aggregation call
        names.add(name)
    return names
