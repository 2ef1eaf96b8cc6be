"""The chaos harness lives in tools/chaos (run as `python -m tools.chaos` from the repository
root); pytest's importlib mode does not put the root on sys.path, so this does.

SIGTERM ends a run as Ctrl-C does (KeyboardInterrupt): the harness then stops the stack it
started (`scripts/test.sh` stops the short chaos run that way when the rest of `make test`
fails)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)
