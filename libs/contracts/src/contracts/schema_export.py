"""The JSON Schema of every message, and the snapshot test's reference copy of them.

``python -m contracts.schema_export``            print every schema as one JSON object
``python -m contracts.schema_export --update``   rewrite ``tests/snapshots/json_schemas.json``
``python -m contracts.schema_export --check``    exit 1 when the snapshot differs from the code

The snapshot is committed: a schema change shows up in review as a diff of that file, and
the test fails until the snapshot is regenerated on purpose. Within ``v1`` the diff may only
add optional fields.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts._paths import SCHEMA_SNAPSHOT, dump_json
from contracts.envelope import Envelope
from contracts.registry import MESSAGES

__all__ = ["ENVELOPE_KEY", "all_json_schemas", "main", "render"]

ENVELOPE_KEY = "Envelope"


def all_json_schemas() -> dict[str, Any]:
    """``{"Envelope": ..., "<type>.v<version>": ...}``: self-contained validation schemas."""
    schemas: dict[str, Any] = {ENVELOPE_KEY: Envelope.model_json_schema()}
    for spec in sorted(MESSAGES.values(), key=lambda s: s.name):
        schemas[spec.name] = spec.model.model_json_schema()
    return schemas


def render() -> str:
    """The snapshot file's exact text."""
    return dump_json(all_json_schemas())


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m contracts.schema_export", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true", help="rewrite the snapshot file")
    mode.add_argument("--check", action="store_true", help="fail when the snapshot is stale")
    parser.add_argument("--path", type=Path, default=SCHEMA_SNAPSHOT, help="snapshot file")
    args = parser.parse_args(argv)
    text = render()
    path: Path = args.path
    if args.update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {len(json.loads(text))} schemas to {path.name}")
        return 0
    if args.check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(
                "JSON Schema snapshot is out of date: run "
                "`python -m contracts.schema_export --update` and review the diff",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
