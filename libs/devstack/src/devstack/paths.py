"""Where things live: the repository root, the Kafka jar cache and the run dirs."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: A file that only the repository root has, relative to it.
_MARKER = Path("libs") / "devstack" / "kafka" / "pom.xml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def repo_root() -> Path:
    """The monorepo root: `DEVSTACK_ROOT`, else found from this file (editable install), else
    from the current directory upwards."""
    override = os.environ.get("DEVSTACK_ROOT")
    if override:
        return Path(override).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _MARKER).is_file():
                return candidate
    raise FileNotFoundError(
        f"cannot find the repository root (no {_MARKER} above this package or the current "
        "directory); set DEVSTACK_ROOT"
    )


def kafka_pom(root: Path | None = None) -> Path:
    return (root or repo_root()) / _MARKER


def cache_root(root: Path | None = None) -> Path:
    """`.cache/` under the repo root (git-ignored), or `DEVSTACK_CACHE_DIR`."""
    override = os.environ.get("DEVSTACK_CACHE_DIR")
    if override:
        return Path(override).resolve()
    return (root or repo_root()) / ".cache"


def run_root(root: Path | None = None) -> Path:
    """`.run/` under the repo root (git-ignored), or `DEVSTACK_RUN_ROOT`."""
    override = os.environ.get("DEVSTACK_RUN_ROOT")
    if override:
        return Path(override).resolve()
    return (root or repo_root()) / ".run"


def check_name(name: str) -> str:
    """A run name is one path component: letters, digits, `_`, `.`, `-`."""
    if not _NAME.match(name):
        raise ValueError(f"invalid stack name {name!r}: use letters, digits, '_', '.', '-'")
    return name


def run_dir(name: str, base: Path | None = None) -> Path:
    """`.run/<name>/`: everything of one stack (data, logs, pid files, state)."""
    return (base or run_root()) / check_name(name)
