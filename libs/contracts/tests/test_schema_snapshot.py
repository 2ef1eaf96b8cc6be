"""The committed JSON Schema snapshot matches the code, so every schema change is reviewed.

When this fails on purpose, regenerate the snapshot and commit it with the change:

    python -m contracts.schema_export --update

Within v1 the diff may only add optional fields; anything else needs a v2 schema and topic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from contracts.envelope import encode, make_envelope
from contracts.gateway.v1 import RecordSale
from contracts.registry import MESSAGES
from contracts.schema_export import ENVELOPE_KEY, all_json_schemas, main, render

from .conftest import CHAIN

SNAPSHOT = Path(__file__).parent / "snapshots" / "json_schemas.json"
HOW_TO_FIX = (
    "JSON Schemas differ from tests/snapshots/json_schemas.json. If the change is intended, "
    "run `python -m contracts.schema_export --update` and commit the snapshot "
    "(v1 may only gain optional fields)."
)


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(
        [f"added {k}" for k in new.keys() - old.keys()]
        + [f"removed {k}" for k in old.keys() - new.keys()]
        + [f"changed {k}" for k in old.keys() & new.keys() if old[k] != new[k]]
    )


def test_generated_json_schemas_match_the_committed_snapshot() -> None:
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    current = all_json_schemas()
    assert committed == current, f"{HOW_TO_FIX}\n" + "\n".join(_changed(committed, current))
    assert SNAPSHOT.read_text(encoding="utf-8") == render(), HOW_TO_FIX


def test_the_check_command_agrees_with_the_snapshot() -> None:
    assert main(["--check", "--path", str(SNAPSHOT)]) == 0


def test_the_check_command_fails_on_a_stale_snapshot(tmp_path: Path) -> None:
    stale = tmp_path / "json_schemas.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert main(["--check", "--path", str(stale)]) == 1
    assert main(["--update", "--path", str(stale)]) == 0
    assert main(["--check", "--path", str(stale)]) == 0


def test_the_snapshot_covers_the_envelope_and_every_message() -> None:
    assert set(all_json_schemas()) == {ENVELOPE_KEY} | {spec.name for spec in MESSAGES.values()}


@pytest.mark.parametrize("name", sorted(all_json_schemas()))
def test_every_schema_is_valid_json_schema(name: str) -> None:
    Draft202012Validator.check_schema(all_json_schemas()[name])


def test_what_pydantic_writes_is_valid_under_the_published_schema(sale: RecordSale) -> None:
    schemas = all_json_schemas()
    env = json.loads(encode(make_envelope(sale, chain_id=CHAIN, key="k", correlation_id=CHAIN)))
    checker = FormatChecker()
    Draft202012Validator(schemas[ENVELOPE_KEY], format_checker=checker).validate(env)
    Draft202012Validator(schemas["credit.RecordSale.v1"], format_checker=checker).validate(
        env["payload"]
    )


def test_the_published_schema_refuses_a_json_number_for_money(sale: RecordSale) -> None:
    payload = sale.model_dump(mode="json")
    payload["total"] = 100.0
    validator = Draft202012Validator(all_json_schemas()["credit.RecordSale.v1"])
    assert not validator.is_valid(payload)
