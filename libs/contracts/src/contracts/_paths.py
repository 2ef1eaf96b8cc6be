"""Where the generated artefacts live in a source checkout of the monorepo."""

from __future__ import annotations

from pathlib import Path

# src/contracts/_paths.py -> libs/contracts
_LIB_ROOT = Path(__file__).resolve().parents[2]
_REPO_ROOT = _LIB_ROOT.parents[1]

SCHEMA_SNAPSHOT = _LIB_ROOT / "tests" / "snapshots" / "json_schemas.json"
ASYNCAPI_DOCUMENT = _REPO_ROOT / "docs" / "asyncapi.json"


def dump_json(document: object) -> str:
    """The one JSON layout of every generated file: stable, diff-friendly, newline-terminated."""
    import json

    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
