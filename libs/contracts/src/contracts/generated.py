"""The command line of a generated, committed document (AsyncAPI, the gateway's OpenAPI):
write it, print it, or fail when the committed file is stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def document_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    default: Path,
    render: Callable[[], str],
    stale: str,
    summary: Callable[[str], str],
) -> int:
    """`--check` (exit 1 with `stale` when the file differs), `--stdout`, or write the file
    and print `summary(text)`."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail when the file is stale")
    mode.add_argument("--stdout", action="store_true", help="print instead of writing")
    parser.add_argument("--output", type=Path, default=default, help="the file")
    args = parser.parse_args(argv)
    text = render()
    path: Path = args.output
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{path.name} {stale}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.name}: {summary(text)}")
    return 0
