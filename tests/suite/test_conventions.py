"""One set of conventions across the five services, read from their source.

- Layers point down: `domain/` imports none of the service's other layers, `adapters/` no
  `service_layer/`, `entrypoints/` or `bootstrap`, and `service_layer/` no `entrypoints/` or
  `bootstrap` (the modules that wire the process together are the only ones above it).
- SQL lives behind `adapters/`: no other module (migrations aside) builds or runs a statement.
- The handler map (message type -> handler) is `HANDLERS` in `service_layer/handlers.py` (with
  `ON_DEAD_LETTER` where dead letters get a handler), and nowhere else.
- A message is wrapped in its envelope and written to the outbox in one place:
  `servicekit.outbox.enqueue_message` (or `MessageContext.emit`, which calls it), or, for a
  service that writes the outbox row in a statement of its own (the gateway's till requests),
  wrapped by `servicekit.outbox.outbox_message`.
- The process is made by `make_definition(settings)` in `entrypoints/app.py` (a servicekit
  `ServiceDefinition`); `app = create_app(make_definition(...))` there is what runs.
- No function of a service (migrations aside) is over 60 lines (issue 14/16), SQL text builders
  aside (see `test_no_function_is_over_60_lines`).
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

from contracts.base import Message

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
#: the services whose SQL is all under adapters/ (all five)
SQL_BEHIND_ADAPTERS = ("pos-gateway", "credit", "loyalty", "reporting", "notifier")
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
    assert (
        not _imported_layers("pos_gateway", module, "from pos_gateway.domain import auth")
        & (FORBIDDEN["adapters"])
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


def _top_level(path: Path) -> dict[str, ast.stmt]:
    """What a module defines or assigns at its top level, by name."""
    names: dict[str, ast.stmt] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def test_the_handler_map_is_in_service_layer_handlers_and_nowhere_else() -> None:
    elsewhere = []
    for service, package in SERVICES.items():
        handlers = importlib.import_module(f"{package}.service_layer.handlers")
        assert handlers.HANDLERS, service
        for message, handler in handlers.HANDLERS.items():
            assert issubclass(message, Message) and callable(handler), (service, message)
        for message in getattr(handlers, "ON_DEAD_LETTER", {}):
            assert message in handlers.HANDLERS, (service, message)
        home = _package(service) / "service_layer" / "handlers.py"
        for path in _modules(service):
            if path != home and {"HANDLERS", "ON_DEAD_LETTER"} & set(_top_level(path)):
                elsewhere.append(str(path.relative_to(ROOT)))
    assert elsewhere == []


def test_every_service_is_made_by_make_definition_in_entrypoints_app() -> None:
    wrong = []
    for service in SERVICES:
        path = _package(service) / "entrypoints" / "app.py"
        defined = _top_level(path)
        factory = defined.get("make_definition")
        if (
            not isinstance(factory, ast.FunctionDef)
            or ast.unparse(factory.returns or ast.Constant(None)) != "ServiceDefinition"
        ):
            wrong.append(f"{service}: no make_definition(...) -> ServiceDefinition")
        for other in ("build", "build_definition", "create", "make_app", "build_app"):
            if other in defined:
                wrong.append(f"{service}: also {other}")
        app = defined.get("app")
        made = (
            ast.unparse(app.value)
            if isinstance(app, ast.Assign | ast.AnnAssign) and (app.value is not None)
            else ""
        )
        if not made.startswith("create_app(make_definition("):
            wrong.append(f"{service}: app = {made or '?'}")
    assert wrong == []


#: wrapping an envelope by hand, or writing one to the outbox by hand
BY_HAND = re.compile(r"(?:^|[^.\w])(?:make_envelope|enqueue|enqueue_many)\(")


def test_services_publish_only_through_enqueue_message() -> None:
    by_hand = []
    for service in SERVICES:
        for path in _modules(service):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if BY_HAND.search(line.split("#", 1)[0]):
                    by_hand.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert by_hand == []


#: the longest a function of a service may be, from its `def` line to its last line (issue
#: 14/16: code that reads as the domain rules, in functions that each do one step of them)
MAX_FUNCTION_LINES = 60
Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, Function]]:
    """Every function of a module with its dotted name, nested ones and methods included."""
    found: list[tuple[str, Function]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                found.append((name, node))
            found += _functions(node, f"{name}.")
        else:
            found += _functions(node, prefix)
    return found


def _lines(function: Function) -> int:
    return (function.end_lineno or function.lineno) - function.lineno + 1


def _mostly_text(function: Function) -> bool:
    """More than half of the function's lines are inside string literals (f-strings too) that
    span lines: a builder of SQL text, not steps of a rule. The docstring does not count."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    text: set[int] = set()
    for statement in body:
        for node in ast.walk(statement):
            is_text = isinstance(node, ast.JoinedStr) or (
                isinstance(node, ast.Constant) and isinstance(node.value, str)
            )
            if is_text and (node.end_lineno or node.lineno) > node.lineno:
                text.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return len(text) * 2 > _lines(function)


def _long_functions() -> dict[str, int]:
    """`path::name` -> lines of every function over `MAX_FUNCTION_LINES` in services/*/src
    (migrations aside) that is not mostly text."""
    services = ROOT / "services"
    long: dict[str, int] = {}
    for path in sorted(services.glob("*/src/**/*.py")):
        if "migrations" in path.parts:
            continue
        for name, function in _functions(ast.parse(path.read_text())):
            if _lines(function) > MAX_FUNCTION_LINES and not _mostly_text(function):
                long[f"{path.relative_to(services).as_posix()}::{name}"] = _lines(function)
    return long


def test_no_function_is_over_60_lines() -> None:
    """Every function of a service is at most `MAX_FUNCTION_LINES` lines, from `def` to its
    end (a function's nested functions count in its lines, and on their own too). SQL text
    builders are let be: their body is mostly one long string literal (an f-string of a
    PL/pgSQL function, say: `reporting.adapters.credit_ledger._recompute_sql`), the text is
    one statement read as SQL, and cutting it into pieces to stay under the limit would make it
    harder to read, not easier.
    """
    assert _long_functions() == {}


def test_the_length_check_sees_nested_functions_and_lets_sql_text_be() -> None:
    steps = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    nested = "class A:\n    def f(self):\n        def g():\n" + textwrap.indent(steps, " " * 8)
    names = {name: _lines(f) for name, f in _functions(ast.parse(nested))}
    assert names["A.f.g"] == MAX_FUNCTION_LINES + 1
    sql = "\n".join(f"        SELECT {i}" for i in range(MAX_FUNCTION_LINES))
    builder = f'def sql(table):\n    return f"""\n{sql}\n    FROM {{table}}"""\n'
    [(_, function)] = _functions(ast.parse(builder))
    assert _lines(function) > MAX_FUNCTION_LINES and _mostly_text(function)
    [(_, step_function)] = _functions(ast.parse(f"def f():\n{steps}\n"))
    assert not _mostly_text(step_function)
