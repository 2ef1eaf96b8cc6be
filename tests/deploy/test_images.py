"""Service images: one Dockerfile for all five, told which service by build arguments from
docker-compose.yml; multi-stage, pinned installs, non-root, a health check, the right command.

The Dockerfile is read as Docker would build it for each service: build arguments and ENV
values are substituted where Docker substitutes them (FROM, COPY, ENV, EXPOSE, ...), in the
scope Docker gives them (an ARG counts only in the stage that declares it), and RUN, CMD and
HEALTHCHECK commands are checked with the variables their shell or process would see.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deployfiles import (
    BACKENDS,
    DOCKERFILE,
    REPO,
    SERVICES,
    Service,
    compose_build,
    compose_build_args,
    settings_class,
)

DOCKERIGNORE = REPO / ".dockerignore"
#: Instructions whose arguments Docker itself expands with build arguments and ENV values.
EXPANDED = frozenset(
    {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)
#: ENV of the python:3.11-slim base image that the Dockerfile builds on.
BASE_ENV = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}
#: The build arguments each service's image needs (docker-compose.yml gives all of them).
BUILD_ARGS = frozenset({"SERVICE_DIR", "SERVICE_PACKAGE", "SERVICE_PORT", "SERVICE_ENV_PREFIX"})


@dataclass
class Instruction:
    keyword: str
    args: str
    #: Variables visible at this instruction: the stage's ARGs and ENV (what RUN's shell sees).
    scope: dict[str, str] = field(default_factory=dict)


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


class Unset(Exception):
    """`${NAME:?}` of a variable that is empty or unset."""


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::([?+-])([^}]*))?\}|(\w+))")


def expand(text: str, scope: dict[str, str]) -> str:
    """`$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}`, `${NAME:?word}` as Docker and the
    shell expand them (an unknown name is empty)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        operator, word = match.group(2), match.group(3)
        value = scope.get(name, "")
        if operator == "-":
            return value or word
        if operator == "+":
            return word if value else ""
        if operator == "?" and not value:
            raise Unset(f"{name}: {word or 'parameter not set or null'}")
        return value

    return _VARIABLE.sub(one, text)


def env_pairs(args: str) -> dict[str, str]:
    pairs = {}
    for word in shlex.split(args):
        name, equals, value = word.partition("=")
        assert equals, f"ENV {args}: use the NAME=value form"
        pairs[name] = value
    return pairs


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]
    env: dict[str, str]  # the image's environment after the stage (the image config's Env)


def build(build_args: dict[str, str], path: Path = DOCKERFILE) -> list[Stage]:
    """The stages of `path` as Docker reads them with these build arguments."""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    args: dict[str, str] = {}
    for instruction in instructions(path):
        keyword = instruction.keyword
        if keyword == "ARG" and not stages:  # before the first FROM: only FROM lines see it
            name, equals, default = instruction.args.partition("=")
            global_args[name] = build_args.get(name, default if equals else "")
            continue
        assert stages or keyword == "FROM", f"{path}: {keyword} before the first FROM"
        if keyword == "FROM":
            words = expand(instruction.args, global_args).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            parent = next((s for s in stages if s.name == words[0]), None)
            env = dict(parent.env) if parent else dict(BASE_ENV)
            stages.append(Stage(words[0], name, [], env))
            args = {}  # ARGs go out of scope at the end of their stage
        stage = stages[-1]
        scope = {**args, **stage.env}
        if keyword == "ARG":
            name, equals, default = instruction.args.partition("=")
            if name in build_args:
                args[name] = build_args[name]
            elif equals:
                args[name] = expand(default, scope)
            elif name in global_args:
                args[name] = global_args[name]
        text = expand(instruction.args, scope) if keyword in EXPANDED else instruction.args
        if keyword == "ENV":
            stage.env.update(env_pairs(text))
        stage.instructions.append(Instruction(keyword, text, scope))
    return stages


def image_args(service: Service) -> dict[str, str]:
    """The build arguments of `service`'s image: those docker-compose.yml gives it."""
    return compose_build_args(service)


def shell_words(instruction: Instruction) -> list[str]:
    """A shell-form RUN as the words of its commands, with the shell's expansions."""
    return [expand(word, instruction.scope) for word in shlex.split(instruction.args)]


def exec_form(instruction: Instruction, keyword: str) -> list[str]:
    text = instruction.args
    if keyword == "HEALTHCHECK":
        text = text[text.index("CMD") + 3 :]
    command = json.loads(text.strip())
    assert isinstance(command, list), f"{keyword} must use the exec (JSON) form"
    return [str(word) for word in command]


def the(stage: Stage, keyword: str) -> Instruction:
    found = [i for i in stage.instructions if i.keyword == keyword]
    assert len(found) == 1, f"one {keyword} in stage {stage.name or stage.base}, found {found}"
    return found[0]


def test_there_is_one_dockerfile_for_every_service() -> None:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    copies = sorted(str(p.relative_to(REPO)) for p in (REPO / "services").glob("*/Dockerfile"))
    assert not copies, f"per-service Dockerfiles are back (use deploy/docker/Dockerfile): {copies}"


def test_compose_gives_each_service_exactly_the_build_arguments_of_that_service(
    service: Service,
) -> None:
    assert REPO / compose_build(service)["dockerfile"] == DOCKERFILE
    args = image_args(service)
    assert set(args) == BUILD_ARGS, f"build args {sorted(args)}, the Dockerfile needs {BUILD_ARGS}"
    assert args == {
        "SERVICE_DIR": service.directory,
        "SERVICE_PACKAGE": service.package,
        "SERVICE_PORT": str(service.port),
        "SERVICE_ENV_PREFIX": service.prefix,
    }
    main = REPO / "services" / args["SERVICE_DIR"] / "src" / args["SERVICE_PACKAGE"] / "__main__.py"
    assert main.is_file(), f"{main} is missing: SERVICE_DIR and SERVICE_PACKAGE do not match"
    settings = settings_class(service.package)
    assert settings.model_config.get("env_prefix") == args["SERVICE_ENV_PREFIX"]
    assert str(settings.model_fields["port"].default) == args["SERVICE_PORT"]


def test_each_stage_declares_the_build_arguments_before_it_uses_them() -> None:
    # An ARG is in scope from its line to the end of its stage; one declared before the first
    # FROM is seen by FROM lines only. Anywhere else Docker (or RUN's shell) reads it as empty.
    declared: set[str] = set()
    in_stage: set[str] | None = None
    for instruction in instructions(DOCKERFILE):
        if instruction.keyword == "FROM":
            in_stage = set()
            continue
        if instruction.keyword == "ARG":
            name = instruction.args.partition("=")[0]
            if in_stage is not None:
                in_stage.add(name)
                declared.add(name)
            continue
        if instruction.keyword not in EXPANDED | {"RUN"}:
            continue  # CMD and HEALTHCHECK read the image's ENV at run time
        used = {m.group(1) or m.group(4) for m in _VARIABLE.finditer(instruction.args)}
        unscoped = sorted((used & BUILD_ARGS) - (in_stage or set()))
        assert not unscoped, (
            f"{instruction.keyword} {instruction.args[:60]}: {unscoped} not declared (ARG) "
            f"earlier in this stage, so Docker would give an empty string"
        )
    assert declared == BUILD_ARGS, f"ARGs {sorted(declared)}, expected {sorted(BUILD_ARGS)}"


def test_the_image_is_built_in_two_stages_on_python_3_11_slim(service: Service) -> None:
    all_stages = build(image_args(service))
    assert len(all_stages) >= 2, "multi-stage: a builder and a runtime stage"
    assert all_stages[0].base == "python:3.11-slim"
    assert all_stages[-1].base == "python:3.11-slim"
    assert all_stages[0].name == "builder"
    runtime = all_stages[-1]
    assert any(
        i.keyword == "COPY" and "--from=builder" in i.args and "/opt/venv" in i.args
        for i in runtime.instructions
    ), "the runtime stage copies the builder's virtualenv"


def test_the_builder_installs_the_service_and_both_libraries_with_the_constraints(
    service: Service,
) -> None:
    builder = build(image_args(service))[0].instructions
    assert any(i.keyword == "RUN" and "python -m venv /opt/venv" in i.args for i in builder)
    installs = [shell_words(i) for i in builder if i.keyword == "RUN" and "pip install" in i.args]
    final = installs[-1]
    assert "-c constraints.txt" in " ".join(final), "pins come from constraints.txt"
    for path in ("./libs/contracts", "./libs/servicekit", f"./services/{service.directory}"):
        assert path in final, f"the last pip install must install {path}"
    copies = [i.args.split() for i in builder if i.keyword == "COPY"]
    sources = [words[0] for words in copies]
    for path in (
        "constraints.txt",
        "libs/contracts",
        "libs/servicekit",
        f"services/{service.directory}",
    ):
        assert path in sources, f"the builder must COPY {path}"


def test_the_libraries_layer_comes_before_anything_that_differs_between_services() -> None:
    # Docker misses the cache from the first instruction that uses a changed build argument,
    # and every RUN after an ARG sees it: the libraries' install must come before the ARGs.
    builder = build({})[0].instructions
    libs_install = next(
        n
        for n, i in enumerate(builder)
        if i.keyword == "RUN" and "pip install" in i.args and "./libs/servicekit" in i.args
    )
    assert "services" not in builder[libs_install].args
    first_arg = next(n for n, i in enumerate(builder) if i.keyword == "ARG")
    first_service_copy = next(
        n for n, i in enumerate(builder) if i.keyword == "COPY" and "services/" in i.args
    )
    assert libs_install < first_arg < first_service_copy


@pytest.mark.parametrize("package", ["uvloop", "httptools"])
def test_uvicorns_loop_and_http_parser_come_from_servicekit_with_a_pin(package: str) -> None:
    # servicekit.runtime.serve() runs uvicorn with loop="uvloop" and http="httptools": the
    # image installs them only through servicekit's dependencies, at constraints.txt's version.
    project = tomllib.loads((REPO / "libs/servicekit/pyproject.toml").read_text("utf-8"))
    dependencies = [re.split(r"[<>=!~\[ ;]", d)[0] for d in project["project"]["dependencies"]]
    assert package in dependencies
    pins = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith(f"{package}==") for line in pins)


def builder_check(service: Service) -> list[str]:
    """The command of the builder that holds the build arguments to the service's Settings."""
    final = [i for i in build(image_args(service))[0].instructions if i.keyword == "RUN"][-1]
    commands = [shlex.split(part) for part in final.args.split(" && ")]
    checks = [c for c in commands if c[:2] == ["python", "-c"] and "Settings" in c[2]]
    assert len(checks) == 1, "the builder checks the build arguments against the Settings"
    return checks[0]


def test_the_build_refuses_missing_or_mismatched_arguments(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = image_args(service)
    for name in sorted(BUILD_ARGS):
        partial = {k: v for k, v in args.items() if k != name}
        final = [i for i in build(partial)[0].instructions if i.keyword == "RUN"][-1]
        with pytest.raises(Unset):
            shell_words(final)
    code = builder_check(service)[2]
    for key, value in args.items():
        monkeypatch.setenv(key, value)
    exec(code, {})  # the right arguments pass
    other = next(s for s in SERVICES if s != service)
    for key, value in (("SERVICE_PORT", str(other.port)), ("SERVICE_ENV_PREFIX", other.prefix)):
        monkeypatch.setenv(key, value)
        with pytest.raises(AssertionError):
            exec(code, {})
        monkeypatch.setenv(key, args[key])


def test_the_runtime_runs_as_the_non_root_user_10001(service: Service) -> None:
    runtime = build(image_args(service))[-1].instructions
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].args == "10001:10001", "uid and gid 10001, as runAsUser in Kubernetes"
    create = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert "--uid 10001" in create and "--gid 10001" in create
    assert runtime.index(users[-1]) < runtime.index(next(i for i in runtime if i.keyword == "CMD"))


def health_check_url(code: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL the health check's code opens in a container with this environment."""
    opened: list[Any] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **_: opened.append(url))
    monkeypatch.setattr("os.environ", dict(env))
    exec(code, {})
    assert len(opened) == 1
    return str(opened[0])


def test_the_health_check_asks_health_live_on_the_services_port(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = build(image_args(service))[-1]
    command = exec_form(the(runtime, "HEALTHCHECK"), "HEALTHCHECK")
    assert command[:2] == ["python", "-c"]
    code = command[2]
    assert "urllib.request" in code and "/health/live" in code
    url = f"http://127.0.0.1:{service.port}/health/live"
    assert health_check_url(code, runtime.env, monkeypatch) == url, "the default port"
    compose_env = {f"{service.prefix}HOST": "0.0.0.0", f"{service.prefix}PORT": str(service.port)}
    assert health_check_url(code, {**runtime.env, **compose_env}, monkeypatch) == url
    moved = {**runtime.env, f"{service.prefix}PORT": "9999"}
    assert health_check_url(code, moved, monkeypatch) == "http://127.0.0.1:9999/health/live"
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "curl" not in text.replace("no curl", "") and "wget" not in text


def test_the_image_starts_the_service_module_with_python_as_pid_1(service: Service) -> None:
    runtime = build(image_args(service))[-1]
    command = exec_form(the(runtime, "CMD"), "CMD")
    assert command[:2] == ["/bin/sh", "-c"], "exec form; the shell only reads $SERVICE_PACKAGE"
    words = [expand(word, runtime.env) for word in shlex.split(command[2])]
    assert words == ["exec", "python", "-m", service.package], "exec: python gets the signals"
    assert the(runtime, "STOPSIGNAL").args == "SIGTERM"


def test_the_runtime_environment_port_and_files(service: Service) -> None:
    runtime = build(image_args(service))[-1]
    env = runtime.env
    assert env["SERVICE_PACKAGE"] == service.package, "deploy/docker/migrate.py reads it"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only in Kubernetes"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert the(runtime, "EXPOSE").args == str(service.port)
    assert any(
        i.keyword == "COPY" and i.args.split()[-1] == "/opt/deploy/migrate.py"
        for i in runtime.instructions
    ), "the migration Job runs /opt/deploy/migrate.py from the service image"
    # <PREFIX>HOST and <PREFIX>PORT are not the image's: compose and Kubernetes set them
    # (test_compose and test_kubernetes check both).
    assert not {f"{service.prefix}HOST", f"{service.prefix}PORT"} & set(env)


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
        ]
    for service in BACKENDS:
        needed += [
            f"services/{service.directory}/src/{service.package}/migrations/env.py",
            f"services/{service.directory}/src/{service.package}/migrations/script.py.mako",
        ]
    # the back office's pages, script and texts are package data
    needed += [
        "services/backoffice/src/backoffice/templates/base.html",
        "services/backoffice/src/backoffice/static/htmx.min.js",
        "services/backoffice/src/backoffice/translations/ro.po",
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


def test_the_migration_entry_point_finds_each_services_alembic_scripts(backend: Service) -> None:
    settings_class(backend.package)  # a clear failure when the package is not there yet
    migrate = load_migrate_script()
    try:
        path = migrate.migrations_dir(backend.package)
    except SystemExit as exc:
        pytest.fail(f"deploy/docker/migrate.py cannot migrate {backend.package}: {exc}")
    assert (path / "env.py").is_file()
    assert path.parent.name == backend.package


def test_the_back_office_package_ships_its_pages_script_and_texts() -> None:
    project = tomllib.loads(
        (REPO / "services/backoffice/pyproject.toml").read_text(encoding="utf-8")
    )
    data = project["tool"]["setuptools"]["package-data"]["backoffice"]
    for pattern in ("templates/*.html", "templates/*/*.html", "static/*", "translations/*.po"):
        assert pattern in data, f"package-data must include {pattern} (the image installs it)"
    package = REPO / "services/backoffice/src/backoffice"
    nested = {
        p.parent.relative_to(package / "templates") for p in (package / "templates").rglob("*.html")
    }
    assert all(len(folder.parts) <= 1 for folder in nested), "a deeper template folder"
