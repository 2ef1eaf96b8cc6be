"""The bench's CPU of a process tree counts the processes that ended during the window (a
PostgreSQL backend replaced by a pool, an autovacuum worker): their parent reaped them."""

from __future__ import annotations

import subprocess
import sys
import time

from bench import procstat

# a parent that starts a child burning ~0.4 s of CPU, waits for it (reaps it), then idles
_BURN = "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass"
_PARENT = f"""
import subprocess, sys, time
sys.stdin.readline()
subprocess.run([sys.executable, "-c", "{_BURN}"])
print("done", flush=True)
time.sleep(30)
"""


def test_a_child_that_ended_during_the_window_is_counted_in_its_trees_cpu() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.3)  # the interpreter started
        before = procstat.sample(
            {"tree": parent.pid, "root only": parent.pid}, alone=frozenset({"root only"})
        )
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "done"  # the child ended and was reaped
        after = procstat.sample(
            {"tree": parent.pid, "root only": parent.pid}, alone=frozenset({"root only"})
        )
    finally:
        parent.kill()
        parent.wait()
    tree = after.cpu_seconds["tree"] - before.cpu_seconds["tree"]
    root_only = after.cpu_seconds["root only"] - before.cpu_seconds["root only"]
    # the child's 0.4 s (clock ticks: 10 ms) in the tree; the parent alone spent almost none
    assert tree >= 0.35, tree
    assert root_only < 0.2, root_only
