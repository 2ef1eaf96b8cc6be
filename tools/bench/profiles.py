"""Summaries of py-spy's raw (collapsed-stack) profiles: where each service spends its time.

`python -m bench.profiles <dir>` prints, per service, the share of samples by leaf function
("self") and by function anywhere on the stack ("inclusive"), the biggest first.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def _frame_name(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit("/", 1)[-1].split(":")[0]
    pkg = "site-packages" if "site-packages" in where else where.split("/src/")[-1].split("/")[0]
    return f"{name} ({pkg}/{file})"


def summarize(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        total += n
        if frames and ("select (" in frames[-1] or "_run_once" in frames[-1]
                       and len(frames) < 6):
            idle += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"== {path.stem}: {total} samples ({idle} idle in the event loop's select)"]
    out.append("-- self")
    for name, n in own.most_common(top):
        out.append(f"{100 * n / total:5.1f}%  {name}")
    out.append("-- inclusive")
    for name, n in incl.most_common(top * 2):
        out.append(f"{100 * n / total:5.1f}%  {name}")
    return "\n".join(out)


def main(folder: str) -> int:
    for path in sorted(Path(folder).glob("*.txt")):
        print(summarize(path))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
