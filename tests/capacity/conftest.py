"""The capacity tool lives in tools/capacity (`python -m tools.capacity` from the repository
root): pytest's importlib mode does not put the root on sys.path, so this does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
