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

import json
from pathlib import Path
from typing import Any

from contracts.generated import document_main

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
    return document_main(
        argv,
        prog="python -m pos_gateway.openapi",
        description=__doc__,
        default=OPENAPI_DOCUMENT,
        render=render,
        stale=f"differs from the gateway's OpenAPI: run `{UPDATE_COMMAND}` and commit the result",
        summary=lambda text: f"{len(json.loads(text)['paths'])} paths",
    )


if __name__ == "__main__":
    raise SystemExit(main())
