"""The benchmarks live in tools/bench (`PYTHONPATH=tools python -m bench` from the repository
root) and import the fault harness as `tools.chaos`: pytest's importlib mode puts neither on
sys.path, so this does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for entry in (str(ROOT), str(ROOT / "tools")):
    if entry not in sys.path:
        sys.path.insert(0, entry)
