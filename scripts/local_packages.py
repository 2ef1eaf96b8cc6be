#!/usr/bin/env python3
"""Print the local packages to install (editable) into the venv, one per line.

A package is listed when its pyproject.toml exists and every other local package it depends
on is listed too: the local names (contracts, servicekit, ...) also exist on PyPI, and pip must
never fetch one of those instead of a local package that is still being written. Arguments are
the package folders, optionally with extras: `libs/devstack[test]`. Skips go to stderr.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return normalize(match.group(1)) if match else ""


def main(args: list[str]) -> int:
    folders: dict[str, tuple[str, Path]] = {}  # local name -> (argument, folder)
    deps: dict[str, set[str]] = {}
    present: set[str] = set()
    for arg in args:
        folder = Path(arg.split("[", 1)[0])
        pyproject = folder / "pyproject.toml"
        name = normalize(folder.name)
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text()).get("project", {})
            name = normalize(project.get("name", folder.name))
            deps[name] = {requirement_name(r) for r in project.get("dependencies", [])}
            present.add(name)
        folders[name] = (arg, folder)
    local = set(folders)
    chosen = set(present)
    changed = True
    while changed:
        changed = False
        for name in sorted(chosen):
            missing = sorted((deps[name] & local) - chosen)
            if missing:
                print(
                    f"local_packages: skipping {folders[name][1]} until {', '.join(missing)} "
                    "has a pyproject.toml",
                    file=sys.stderr,
                )
                chosen.discard(name)
                changed = True
    for name in sorted(local - present):
        print(f"local_packages: {folders[name][1]} has no pyproject.toml yet", file=sys.stderr)
    for name, (arg, _folder) in folders.items():
        if name in chosen:
            print(arg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
