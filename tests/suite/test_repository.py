"""The repository stands on its own: its license is declared everywhere, and the README and
docs point to nothing outside it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(ROOT.glob("libs/*/pyproject.toml")) + sorted(
    ROOT.glob("services/*/pyproject.toml")
)
READ_ME = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted(ROOT.glob("services/*/README.md")),
    *sorted(ROOT.glob("libs/*/README.md")),
    *sorted(ROOT.glob("tools/*/README.md")),
]


def test_the_license_is_apache_2_and_every_package_declares_it() -> None:
    assert (ROOT / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert len(PACKAGES) == 9
    for path in PACKAGES:
        assert tomllib.loads(path.read_text())["project"]["license"] == "Apache-2.0", path


def test_readme_and_docs_point_to_nothing_outside_the_repository() -> None:
    outside = []
    for path in READ_ME:
        text = path.read_text()
        # a relative path that climbs out of the repository (../shared/docs/api.md, ...)
        for ref in re.findall(r"(?<![.\w])(?:\.\./)+[\w./-]+", text):
            target = (path.parent / ref).resolve()
            if not target.is_relative_to(ROOT) or not target.exists():
                outside.append(f"{path.relative_to(ROOT)}: {ref}")
        if "shared/docs" in text or "shared/seeds" in text:
            outside.append(f"{path.relative_to(ROOT)}: names shared/")
    assert outside == []


def test_every_markdown_link_inside_the_repository_resolves() -> None:
    broken = []
    for path in READ_ME:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []
