"""docs/openapi.json is the gateway's OpenAPI as the code serves it, so that a change to the
public contract shows in review as a change to that file.

After a change to a route or a schema: `make openapi` (`python -m pos_gateway.openapi`), read
the diff of docs/openapi.json, and commit it with the change.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from pos_gateway.openapi import OPENAPI_DOCUMENT, UPDATE_COMMAND, main, render


@pytest.fixture(scope="module")
def served() -> str:
    return render()


def test_the_committed_openapi_document_is_what_the_gateway_serves(served: str) -> None:
    assert OPENAPI_DOCUMENT.exists(), f"docs/openapi.json is missing: run `{UPDATE_COMMAND}`"
    committed = OPENAPI_DOCUMENT.read_text(encoding="utf-8")
    if committed != served:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    served.splitlines(keepends=True),
                    "docs/openapi.json (committed)",
                    "the gateway's OpenAPI (code)",
                )
            )[:60]
        )
        raise AssertionError(
            f"docs/openapi.json differs from the gateway's OpenAPI: run `{UPDATE_COMMAND}` "
            f"and commit the result (the diff is the contract change to review)\n{diff}"
        )


def test_the_stack_serves_the_same_document_as_the_public_app(served: str) -> None:
    # the process `python -m pos_gateway` runs adds health and metrics routes, none of them
    # part of the contract
    from pos_gateway.entrypoints.app import app

    assert json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n" == served


def test_the_check_fails_on_a_stale_document_and_passes_once_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], served: str
) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text('{"openapi": "3.1.0"}\n', encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1
    assert f"run `{UPDATE_COMMAND}`" in capsys.readouterr().err
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == served
