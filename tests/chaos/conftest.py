"""The chaos harness lives in tools/chaos (run as `python -m tools.chaos` from the repository
root); pytest's importlib mode does not put the root on sys.path, so this does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
