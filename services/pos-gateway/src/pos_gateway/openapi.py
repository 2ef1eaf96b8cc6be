"""The gateway's OpenAPI document, committed as ``docs/openapi.json`` so that a change to the
public contract shows in review (the unit test ``test_openapi_snapshot.py`` fails while the
file differs from what the code serves).

``python -m pos_gateway.openapi``           (re)write ``docs/openapi.json`` (``make openapi``)
``python -m pos_gateway.openapi --check``   exit 1 when the committed file differs
``python -m pos_gateway.openapi --stdout``  print it

Built from the app itself, as ``GET /openapi.json`` serves it, without a database, Kafka or a
running stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: src/pos_gateway/openapi.py -> the repository's root
OPENAPI_DOCUMENT = Path(__file__).resolve().parents[4] / "docs" / "openapi.json"
UPDATE_COMMAND = "make openapi"


def build_document() -> dict[str, Any]:
    """What `GET /openapi.json` answers (the settings play no part in it)."""
    from pos_gateway.bootstrap import Gateway
    from pos_gateway.config import Settings
    from pos_gateway.entrypoints.app import build_public_app

    # a token only because the settings refuse to be made without one; it is not in the document
    app = build_public_app(Gateway(Settings(operator_token="openapi-" + "x" * 32)))
    return app.openapi()


def render() -> str:
    """The exact text of ``docs/openapi.json``: stable, diff-friendly, newline-terminated."""
    return json.dumps(build_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pos_gateway.openapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail when the file is stale")
    mode.add_argument("--stdout", action="store_true", help="print instead of writing")
    parser.add_argument("--output", type=Path, default=OPENAPI_DOCUMENT, help="the file")
    args = parser.parse_args(argv)
    text = render()
    path: Path = args.output
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{path.name} differs from the gateway's OpenAPI: run `{UPDATE_COMMAND}` "
                  "and commit the result", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.name}: {len(json.loads(text)['paths'])} paths")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
