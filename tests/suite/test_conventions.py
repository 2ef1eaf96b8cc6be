"""One set of conventions across the five services, read from their source.

- Layers point down: `domain/` imports none of the service's other layers, `adapters/` no
  `service_layer/`, `entrypoints/` or `bootstrap`, and `service_layer/` no `entrypoints/` or
  `bootstrap` (the modules that wire the process together are the only ones above it).
- SQL lives behind `adapters/`: no other module (migrations aside) builds or runs a statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "pos-gateway": "pos_gateway",
    "credit": "credit",
    "loyalty": "loyalty",
    "reporting": "reporting",
    "notifier": "notifier",
}
#: what each layer may not import (a top-level module of the package is named by its stem)
FORBIDDEN = {
    "domain": {"adapters", "service_layer", "entrypoints", "bootstrap"},
    "adapters": {"service_layer", "entrypoints", "bootstrap"},
    "service_layer": {"entrypoints", "bootstrap"},
}
#: the services whose SQL is all under adapters/ (reporting's report queries are still moving)
SQL_BEHIND_ADAPTERS = ("pos-gateway", "credit", "loyalty", "notifier")
#: building a statement (sa.select / sa.text / pg_insert / a bare select(...)...) or running one
SQL = re.compile(
    r"(?:^|[^.\w])(?:sa\.(?:text|select|insert|update|delete)|pg_insert|select|insert|update"
    r"|delete)\(|\.(?:execute|scalar|scalars|stream)\("
)


def _package(service: str) -> Path:
    return ROOT / "services" / service / "src" / SERVICES[service]


def _modules(service: str) -> list[Path]:
    return [p for p in sorted(_package(service).rglob("*.py")) if "migrations" not in p.parts]


def _layer(service: str, path: Path) -> str:
    """The module's layer: its first folder inside the package, or its own stem at the top."""
    return path.relative_to(_package(service)).parts[0].removesuffix(".py")


def _imported_layers(package: str, module: tuple[str, ...], source: str) -> set[str]:
    """The layers of `package` a module (`module`: its dotted name's parts) imports, at the
    top or inside a function."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the module's own package
                base = ".".join([*module[: len(module) - node.level], *filter(None, [base])])
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return {n.split(".")[1] for n in names if n.startswith(f"{package}.")}


def _layers_of(service: str, path: Path) -> set[str]:
    module = path.relative_to(_package(service).parent).with_suffix("").parts
    return _imported_layers(SERVICES[service], module, path.read_text())


def test_no_layer_of_a_service_imports_a_layer_above_it() -> None:
    upward = []
    for service in SERVICES:
        for path in _modules(service):
            forbidden = FORBIDDEN.get(_layer(service, path), set())
            for layer in sorted(_layers_of(service, path) & forbidden):
                upward.append(f"{path.relative_to(ROOT)} imports {layer}")
    assert upward == []


def test_the_layer_check_sees_every_form_of_an_upward_import() -> None:
    module = ("pos_gateway", "adapters", "outcome_listener")
    for source in (
        "from pos_gateway.service_layer.waiter import OutcomeWaiter",
        "import pos_gateway.service_layer.waiter",
        "from pos_gateway import bootstrap",
        "from ..entrypoints import app",
        "def later():\n    from pos_gateway.bootstrap import Gateway",
    ):
        found = _imported_layers("pos_gateway", module, source)
        assert found & FORBIDDEN["adapters"], source
    assert not _imported_layers("pos_gateway", module, "from pos_gateway.domain import auth") & (
        FORBIDDEN["adapters"]
    )


def test_sql_is_built_and_run_only_under_adapters() -> None:
    outside = []
    for service in SQL_BEHIND_ADAPTERS:
        for path in _modules(service):
            if _layer(service, path) == "adapters":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if SQL.search(code) and not code.lstrip().startswith(("def ", "async def ")):
                    outside.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert outside == []
