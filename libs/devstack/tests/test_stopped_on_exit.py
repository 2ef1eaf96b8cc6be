"""What devstack starts is stopped at the end of its `with` block, also when the block raises."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devstack.procs import StoppedOnExit, pid_alive


class Started(StoppedOnExit):
    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1


def test_a_with_block_stops_what_it_started_once() -> None:
    with Started() as started:
        assert started.stops == 0
    assert started.stops == 1


def test_a_with_block_that_raises_still_stops_and_lets_the_error_through() -> None:
    started = Started()
    with pytest.raises(RuntimeError, match="boom"), started:
        raise RuntimeError("boom")
    assert started.stops == 1


def test_a_command_stopped_by_sigterm_stops_what_it_started(tmp_path: Path) -> None:
    # Python's default for SIGTERM ends a process with no `finally` and no atexit hook: a bench
    # or `devstack` stopped that way left its whole stack running
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from pathlib import Path
            from devstack.procs import spawn, stop_on_sigterm
            stop_on_sigterm()
            child = spawn(
                "sleeper",
                [sys.executable, "-c", "import time; time.sleep(60)"],
                pid_file=Path({str(tmp_path / "child.pid")!r}),
                log_path=Path({str(tmp_path / "child.log")!r}),
                stop_timeout=5.0,
            )
            print(child.pid, flush=True)
            time.sleep(60)
            """
        )
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert pid_alive(child)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and pid_alive(child):  # the test failed: stop what it started anyway
            os.kill(child, signal.SIGKILL)
