"""Migration 0005 writes out the functions and triggers that keep the per-customer report sums
(a revision never imports the code it migrates for), and 0006 the two trigger functions it
replaced. The rebuild's scratch schema gets them
from `reporting.adapters` instead, so the two must say the same: a change to the adapters'
functions needs a revision of its own, and this test says so."""

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


def _migrated_functions() -> list[str]:
    """0005's functions, with those a later revision replaced as that revision has them."""
    replaced: dict[str, str] = _revision("0006_ledgers_add_inserted_movements")._FUNCTIONS
    assert all(_name(sql) == name for name, sql in replaced.items())
    return [replaced.get(_name(f), f) for f in _revision()._FUNCTIONS]


def _words(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def test_the_migrated_functions_and_triggers_are_the_adapters_ones() -> None:
    revision = _revision()
    adapters = [*open_debt.FUNCTION_STATEMENTS, *credit_ledger.FUNCTION_STATEMENTS]
    assert [_words(f) for f in _migrated_functions()] == [_words(f) for f in adapters]
    migrated = {
        f"CREATE TRIGGER {name}_{op} AFTER {op.upper()} ON {table} REFERENCING {ref} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION public.{function}()"
        for name, table, function in revision._TRIGGERS
        for op, ref in revision._OPS
    }
    expected = {
        _words(s) for s in [*open_debt.trigger_statements(), *credit_ledger.trigger_statements()]
    }
    assert migrated == expected
