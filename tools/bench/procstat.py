"""CPU and memory of the stack's processes from /proc (no psutil): per process tree, by PID.

PostgreSQL forks a backend per connection, so a root PID's figures include all of its
descendants. CPU is reported in percent of one core over a sampling window. A tree's CPU counts
the processes that exited meanwhile too: each process's figure includes its children it has
reaped (`cutime` + `cstime`), so a PostgreSQL backend that ends during a window (a pool
replacing an old connection, an autovacuum worker) is counted in its postmaster's, where
summing the live processes alone would lose all of its CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, CPU seconds of user + system, those of its reaped children) of one
    process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces: the fields after it start past the last ')'
    fields = raw[raw.rfind(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    reaped = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return int(fields[1]), own, reaped


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of one process so far; None without a readable entry."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                tree.setdefault(st[0], []).append(int(entry.name))
    return tree


def _tree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class Sample:
    cpu_seconds: dict[str, float]
    rss_bytes: dict[str, int]
    machine_busy: float
    machine_total: float


def machine_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (all cores)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def sample(roots: dict[str, int], *, alone: frozenset[str] = frozenset()) -> Sample:
    """Figures of each root's process tree, the children its processes reaped included (of
    the root's own only for the names in `alone`: the load generator is the parent of the
    stack it started, whose processes it reaps when one is killed)."""
    children = _children()
    cpu: dict[str, float] = {}
    rss: dict[str, int] = {}
    for name, root in roots.items():
        if name in alone:
            pids = [root]
            cpu[name] = sum((st[1] for p in pids if (st := _stat(p)) is not None), 0.0)
        else:
            pids = _tree(root, children)
            cpu[name] = sum((st[1] + st[2] for p in pids if (st := _stat(p)) is not None), 0.0)
        rss[name] = sum(_rss_bytes(p) for p in pids)
    busy, total = machine_times()
    return Sample(cpu, rss, busy, total)


def usage(before: Sample, after: Sample, wall: float) -> dict[str, dict[str, float]]:
    """Per process: CPU in % of one core over the window, RSS (MiB) at its end."""
    out: dict[str, dict[str, float]] = {}
    for name, cpu in after.cpu_seconds.items():
        used = cpu - before.cpu_seconds.get(name, cpu)
        out[name] = {
            "cpu_percent": round(100.0 * used / wall, 1) if wall > 0 else 0.0,
            "rss_mib": round(after.rss_bytes.get(name, 0) / 2**20, 1),
        }
    busy = after.machine_busy - before.machine_busy
    total = after.machine_total - before.machine_total
    ncpu = os.cpu_count() or 1
    ours = sum(v["cpu_percent"] for v in out.values())
    machine = 100.0 * ncpu * busy / total if total > 0 else 0.0
    out["(machine, all processes)"] = {"cpu_percent": round(machine, 1), "rss_mib": 0.0}
    out["(others on the machine)"] = {
        "cpu_percent": round(max(0.0, machine - ours), 1),
        "rss_mib": 0.0,
    }
    return out
