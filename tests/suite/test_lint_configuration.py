"""One lint and type-check configuration: the root pyproject.toml's, strict, for every package.

ruff reads the nearest pyproject.toml with a [tool.ruff] section, so a package's own section
would silently replace the root rules for its files; mypy reads only the root file, so a
package's [tool.mypy] would promise checks that never run."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyprojects() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if name != "pyproject.toml"]


def test_no_pyproject_but_the_root_one_configures_ruff_mypy_or_pytest() -> None:
    """pytest too: a package's [tool.pytest.ini_options] makes that package's folder the
    rootdir when its tests are run alone (`pytest services/credit/tests`), so the root
    conftest.py (markers by folder, the shared plugins) is not loaded and `-m "not
    integration"` selects the integration tests."""
    packages = _pyprojects()
    assert len(packages) >= 9  # every library and service has one: the check sees them all
    configured = [
        f"{path.relative_to(ROOT)}: [tool.{tool}]"
        for path in packages
        for tool in ("ruff", "mypy", "pytest")
        if tool in tomllib.loads(path.read_text()).get("tool", {})
    ]
    assert configured == []


def test_the_root_mypy_configuration_is_strict_and_checks_every_package() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True
    assert "ignore_missing_imports" not in mypy  # only per third-party module, in overrides
    assert set(mypy["files"]) == {"libs/*/src/**/*.py", "services/*/src/**/*.py"}


def test_the_lint_step_checks_the_formatting_too() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    test = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "ruff format --check ." in lint
    assert "scripts/test.sh" in test  # make test runs the script, which runs the check
    assert '"$VENV_BIN/ruff" format --check .' in (ROOT / "scripts" / "test.sh").read_text()
