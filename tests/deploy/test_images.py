"""Service images: multi-stage, pinned installs, non-root, a health check, the right command."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from deployfiles import REPO, SERVICES, Service, settings_class

DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return result


def stages(path: Path) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions(path):
        if instruction.keyword == "FROM":
            result.append([])
        assert result, f"{path}: an instruction before the first FROM"
        result[-1].append(instruction)
    return result


def dockerfile(service: Service) -> Path:
    path = REPO / "services" / service.directory / "Dockerfile"
    assert path.is_file(), f"{path} is missing"
    return path


def test_the_image_is_built_in_two_stages_on_python_3_11_slim(service: Service) -> None:
    all_stages = stages(dockerfile(service))
    assert len(all_stages) >= 2, "multi-stage: a builder and a runtime stage"
    assert all_stages[0][0].args.split()[0] == "python:3.11-slim"
    assert all_stages[-1][0].args.split()[0] == "python:3.11-slim"
    runtime = all_stages[-1]
    assert any(
        i.keyword == "COPY" and "--from=builder" in i.args and "/opt/venv" in i.args
        for i in runtime
    ), "the runtime stage copies the builder's virtualenv"


def test_the_builder_installs_the_service_and_both_libraries_with_the_constraints(
    service: Service,
) -> None:
    builder = stages(dockerfile(service))[0]
    assert any(i.keyword == "RUN" and "python -m venv /opt/venv" in i.args for i in builder)
    installs = [i.args for i in builder if i.keyword == "RUN" and "pip install" in i.args]
    final = installs[-1]
    assert "-c constraints.txt" in final, "pins come from constraints.txt"
    for path in ("./libs/contracts", "./libs/servicekit", f"./services/{service.directory}"):
        assert path in final, f"the last pip install must install {path}"
    copies = " ".join(i.args for i in builder if i.keyword == "COPY")
    for path in ("constraints.txt", "libs/contracts", "libs/servicekit",
                 f"services/{service.directory}"):
        assert path in copies, f"the builder must COPY {path}"


def test_the_runtime_runs_as_a_non_root_user(service: Service) -> None:
    runtime = stages(dockerfile(service))[-1]
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1].args} is root"
    assert runtime.index(users[-1]) < runtime.index(
        next(i for i in runtime if i.keyword == "CMD")
    )


def test_the_health_check_asks_health_live_with_the_standard_library(service: Service) -> None:
    runtime = stages(dockerfile(service))[-1]
    checks = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "one HEALTHCHECK in the runtime stage"
    args = checks[0].args
    command = json.loads(args[args.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    code = command[2]
    assert "urllib.request" in code and "/health/live" in code
    assert f"{service.prefix}PORT" in code and f"'{service.port}'" in code
    text = dockerfile(service).read_text(encoding="utf-8")
    assert "curl" not in text.replace("no curl", "") and "wget" not in text


def test_the_image_starts_the_service_module_and_listens_on_all_interfaces(
    service: Service,
) -> None:
    runtime = stages(dockerfile(service))[-1]
    cmd = [i for i in runtime if i.keyword == "CMD"]
    assert json.loads(cmd[-1].args) == ["python", "-m", service.package]
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert f"{service.prefix}HOST=0.0.0.0" in env
    assert f"{service.prefix}PORT={service.port}" in env
    assert f"SERVICE_PACKAGE={service.package}" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "the root filesystem is read-only in Kubernetes"
    assert any(i.keyword == "EXPOSE" and i.args == str(service.port) for i in runtime)
    assert any(
        i.keyword == "COPY" and i.args.split()[-1] == "/opt/deploy/migrate.py" for i in runtime
    ), "the migration Job runs /opt/deploy/migrate.py from the service image"


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go filepath.Match plus `**`)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context (the last matching line wins; a
    line matching a parent folder applies to everything in it)."""
    result = False
    parents = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
    for line in patterns:
        negated = line.startswith("!")
        regex = docker_pattern(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in parents):
            result = not negated
    return result


def dockerignore_patterns() -> list[str]:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing at the repository root"
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_matcher_follows_docker_rules_on_small_examples() -> None:
    patterns = ["*", "!libs/a", "**/tests", "**/*.pyc"]
    assert ignored("README.md", patterns)
    assert not ignored("libs/a/src/x.py", patterns)
    assert ignored("libs/a/tests/test_x.py", patterns)
    assert ignored("libs/a/src/x.pyc", patterns)
    assert ignored("libs/b/x.py", patterns)


def test_the_build_context_holds_what_the_images_copy_and_nothing_secret() -> None:
    patterns = dockerignore_patterns()
    needed = [
        "constraints.txt",
        "libs/contracts/pyproject.toml",
        "libs/contracts/src/contracts/envelope.py",
        "libs/servicekit/pyproject.toml",
        "libs/servicekit/src/servicekit/runtime.py",
        "deploy/docker/migrate.py",
    ]
    for service in SERVICES:
        needed += [
            f"services/{service.directory}/pyproject.toml",
            f"services/{service.directory}/src/{service.package}/__main__.py",
            f"services/{service.directory}/src/{service.package}/migrations/env.py",
            f"services/{service.directory}/src/{service.package}/migrations/script.py.mako",
        ]
    left_out = [p for p in needed if ignored(p, patterns)]
    assert not left_out, f".dockerignore leaves out what the images need: {left_out}"
    unwanted = [
        ".env",
        ".git/config",
        ".venv/bin/python",
        ".cache/kafka/4.4.0/lib/kafka.jar",
        ".run/dev/postgres/postgresql.conf",
        "services/credit/tests/unit/test_ledger.py",
        "libs/servicekit/src/servicekit/__pycache__/runtime.cpython-311.pyc",
        "libs/contracts/src/contracts.egg-info/PKG-INFO",
        "services/credit/.env",
    ]
    sent = [p for p in unwanted if not ignored(p, patterns)]
    assert not sent, f".dockerignore sends these into the build context: {sent}"


def load_migrate_script() -> ModuleType:
    path = REPO / "deploy" / "docker" / "migrate.py"
    spec = importlib.util.spec_from_file_location("deploy_migrate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_entry_point_finds_each_services_alembic_scripts(service: Service) -> None:
    settings_class(service.package)  # a clear failure when the package is not there yet
    migrate = load_migrate_script()
    try:
        path = migrate.migrations_dir(service.package)
    except SystemExit as exc:
        pytest.fail(f"deploy/docker/migrate.py cannot migrate {service.package}: {exc}")
    assert (path / "env.py").is_file()
    assert path.parent.name == service.package
