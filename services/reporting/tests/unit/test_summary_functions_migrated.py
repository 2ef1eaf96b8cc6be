"""Migration 0005 writes out the functions and triggers that keep the per-customer report sums
(a revision never imports the code it migrates for), 0006 the two trigger functions it
replaced, 0007 the two it added and the triggers it points at them, 0008 the one it replaced.
The rebuild's scratch schema gets them from `reporting.adapters` instead, so the two must say
the same: a change to the adapters' functions needs a revision of its own, and this test says
so."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

from reporting.adapters import credit_ledger, open_debt
from reporting.entrypoints.app import MIGRATIONS_DIR


def _revision(name: str = "0005_report_summaries") -> ModuleType:
    path = MIGRATIONS_DIR / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"reporting_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _name(function_sql: str) -> str:
    found = re.search(r"FUNCTION public\.(\w+)\(", function_sql)
    assert found is not None
    return found.group(1)


def _migrated_functions() -> dict[str, str]:
    """0005's functions, with those a later revision replaced as that revision has them, and
    those a later revision added: by name."""
    functions = {_name(f): f for f in _revision()._FUNCTIONS}
    for later in (
        "0006_ledgers_add_inserted_movements",
        "0007_open_debt_of_open_lines",
        "0008_open_debt_once_per_sale",
    ):
        written: dict[str, str] = _revision(later)._FUNCTIONS
        assert all(_name(sql) == name for name, sql in written.items())
        functions.update(written)
    return functions


def _migrated_triggers() -> set[str]:
    """0005's triggers, each calling the function the latest revision pointed it at."""
    revision = _revision()
    calls = {name: function for name, _, function in revision._TRIGGERS}
    calls.update(
        (name, function)
        for name, _, function in _revision("0007_open_debt_of_open_lines")._TRIGGERS
    )
    return {
        f"CREATE TRIGGER {name}_{op} AFTER {op.upper()} ON {table} REFERENCING {ref} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION public.{calls[name]}()"
        for name, table, _ in revision._TRIGGERS
        for op, ref in revision._OPS
    }


def _words(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def test_the_migrated_functions_and_triggers_are_the_adapters_ones() -> None:
    adapters = [*open_debt.FUNCTION_STATEMENTS, *credit_ledger.FUNCTION_STATEMENTS]
    migrated = _migrated_functions()
    assert {name: _words(f) for name, f in migrated.items()} == {
        _name(f): _words(f) for f in adapters
    }
    expected = {
        _words(s) for s in [*open_debt.trigger_statements(), *credit_ledger.trigger_statements()]
    }
    assert _migrated_triggers() == expected
