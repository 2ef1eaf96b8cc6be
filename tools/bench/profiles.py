"""py-spy's raw (collapsed-stack) profiles: where each service spends its CPU, and flame graphs.

Every sample is put in one category by its innermost frame that belongs to a known one
(walking from the leaf towards the root): asyncpg called by SQLAlchemy counts as asyncpg, a
log call made by FastStream counts as logging, pydantic validating for FastStream counts as
pydantic. So the categories answer "what would get cheaper if this layer did less": the
per-message framework (FastStream, aiokafka), SQLAlchemy statement building (`sqlalchemy/sql`)
and its execution/ORM layers, asyncpg, pydantic, logging, JSON, the HTTP stack, metrics, the
event loop, and the services' own code.

`flamegraph_svg` draws a static flame graph (no script, no dependency) coloured by the same
categories; `python -m bench.profiles <dir>` prints, per raw profile in the folder, the
categories and the biggest functions by self and inclusive share.
"""

from __future__ import annotations

import html
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: (category, substrings of a frame's file path), first match wins for one frame
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "logging",
        (
            "/logging/",
            "servicekit/logging.py",
            "faststream/_internal/logger",
            "faststream/middlewares/logging.py",
        ),
    ),
    ("JSON", ("/json/", "orjson")),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("asyncpg", ("asyncpg/",)),
    ("SQLAlchemy statement building", ("sqlalchemy/sql/",)),
    ("SQLAlchemy execution and ORM", ("sqlalchemy/",)),
    ("Kafka client (aiokafka)", ("aiokafka/",)),
    ("FastStream per message", ("faststream/", "fast_depends/")),
    (
        "HTTP (uvicorn, Starlette, FastAPI, httpx)",
        (
            "uvicorn/",
            "starlette/",
            "fastapi/",
            "httpx/",
            "httpcore/",
            "h11/",
            "anyio/",
            "httptools/",
        ),
    ),
    ("metrics", ("prometheus_client/",)),
    ("event loop", ("asyncio/", "uvloop/", "selectors.py")),
    ("service code", ("/src/",)),
]
OTHER = "other (stdlib, C)"
CATEGORY_NAMES = [name for name, _ in CATEGORIES] + [OTHER]

COLOURS = {
    "logging": "#e377c2",
    "JSON": "#bcbd22",
    "pydantic": "#9467bd",
    "asyncpg": "#1f77b4",
    "SQLAlchemy statement building": "#d62728",
    "SQLAlchemy execution and ORM": "#ff9896",
    "Kafka client (aiokafka)": "#2ca02c",
    "FastStream per message": "#98df8a",
    "HTTP (uvicorn, Starlette, FastAPI, httpx)": "#17becf",
    "metrics": "#c49c94",
    "event loop": "#c7c7c7",
    "service code": "#ff7f0e",
    OTHER: "#dbdb8d",
}


def _where(frame: str) -> tuple[str, str]:
    """(function, path) of a py-spy frame "function (path/to/file.py:123)"."""
    name, _, where = frame.partition(" (")
    return name, where.rstrip(")").rsplit(":", 1)[0]


#: the top-level packages of this repository: py-spy names a frame's file by the import path
#: it was found under ("credit/service_layer/handlers.py"), not by "/src/"
OWN_PACKAGES = frozenset(
    {
        "backoffice",
        "contracts",
        "credit",
        "loyalty",
        "notifier",
        "pos_gateway",
        "reporting",
        "servicekit",
    }
)


def category_of(path: str) -> str | None:
    for name, needles in CATEGORIES:
        if any(n in path for n in needles):
            return name
    if path.split("/", 1)[0] in OWN_PACKAGES:
        return "service code"
    return None


def _short(frame: str) -> str:
    """ "function (pkg/file.py)": line numbers dropped so one function is one box."""
    name, path = _where(frame)
    parts = path.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


def is_idle(stack: tuple[str, ...]) -> bool:
    """A sample of a thread that waits: uvloop's loop in C (its Python stack ends in the
    runner), a thread blocked on a lock or condition, or a select. py-spy cannot always tell
    these from work when it samples without pausing the process, so they are set apart here."""
    if not stack:
        return True
    name, path = _where(stack[-1])
    if name in ("Runner.run", "run_until_complete", "run_forever") and "asyncio/" in path:
        return True
    waits = ("wait", "_wait_for_tstate_lock")
    if path.endswith("threading.py") and name.rsplit(".", 1)[-1] in waits:
        return True
    return path.endswith("selectors.py")


@dataclass
class Profile:
    """One process's busy samples as collapsed stacks (root first); waiting ones counted apart."""

    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)
    idle: int = 0

    @classmethod
    def read(cls, path: Path) -> Profile:
        prof = cls()
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                frames = tuple(f for f in stack.split(";") if f)
                if is_idle(frames):
                    prof.idle += int(count)
                else:
                    prof.stacks[frames] += int(count)
        return prof

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def categories(self) -> dict[str, float]:
        """Share (%) of the samples per category, by the innermost categorised frame."""
        counts: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            found = OTHER
            for frame in reversed(stack):
                cat = category_of(_where(frame)[1])
                if cat is not None:
                    found = cat
                    break
            counts[found] += n
        total = max(1, self.samples)
        return {
            name: round(100 * counts[name] / total, 1) for name in CATEGORY_NAMES if counts[name]
        }

    def top(self, n: int = 25) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """(self, inclusive) shares of the biggest functions."""
        own: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            frames = [_short(f) for f in stack]
            if frames:
                own[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
        total = max(1, self.samples)
        return (
            [(k, round(100 * v / total, 1)) for k, v in own.most_common(n)],
            [(k, round(100 * v / total, 1)) for k, v in incl.most_common(n)],
        )


# --------------------------------------------------------------------------- flame graph


@dataclass
class _Node:
    name: str
    category: str
    count: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(prof: Profile) -> _Node:
    root = _Node("all", OTHER)
    for stack, n in prof.stacks.items():
        root.count += n
        node = root
        for frame in stack:
            key = _short(frame)
            child = node.children.get(key)
            if child is None:
                child = _Node(key, category_of(_where(frame)[1]) or OTHER)
                node.children[key] = child
            child.count += n
            node = child
    return root


def flamegraph_svg(
    prof: Profile, title: str, *, width: int = 1400, row: int = 16, min_share: float = 0.002
) -> str:
    """A static flame graph (root at the bottom, width = share of samples), each box coloured
    by its frame's category with the legend on top; hover shows the frame and its share.
    Boxes under `min_share` of the samples are left out (they would be invisible anyway)."""
    root = _tree(prof)
    total = max(1, root.count)
    boxes: list[tuple[int, float, float, _Node]] = []  # depth, x, w, node
    max_depth = 0

    def walk(node: _Node, depth: int, x: float) -> None:
        nonlocal max_depth
        w = width * node.count / total
        boxes.append((depth, x, w, node))
        max_depth = max(max_depth, depth)
        cx = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            if child.count / total >= min_share:
                walk(child, depth + 1, cx)
            cx += width * child.count / total

    walk(root, 0, 0.0)
    legend_rows = 2
    top = 24 + legend_rows * 16
    height = top + (max_depth + 1) * row + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="4" y="15" font-size="13">{html.escape(title)}: {total} busy samples '
        f"(waiting ones left out)</text>",
    ]
    shares = prof.categories()
    lx, ly = 4.0, 32.0
    for name in CATEGORY_NAMES:
        if name not in shares:
            continue
        label = f"{name} {shares[name]:g}%"
        wide = 14 + 7 * len(label)
        if lx + wide > width:
            lx, ly = 4.0, ly + 16
        out.append(
            f'<rect x="{lx:.0f}" y="{ly - 10:.0f}" width="10" height="10" fill="{COLOURS[name]}"/>'
        )
        out.append(f'<text x="{lx + 13:.0f}" y="{ly:.0f}">{html.escape(label)}</text>')
        lx += wide + 8
    for depth, x, w, node in boxes:
        y = height - 8 - (depth + 1) * row
        share = 100 * node.count / total
        label = html.escape(node.name)
        out.append(
            f"<g><title>{label}: {share:.2f}% ({node.count} samples)</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{max(w - 0.5, 0.1):.1f}" height="{row - 1}" '
            f'fill="{COLOURS.get(node.category, COLOURS[OTHER])}"/>'
        )
        chars = int((w - 4) / 6.6)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[: chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def summarize(path: Path, top: int = 25) -> str:
    prof = Profile.read(path)
    out = [f"== {path.stem}: {prof.samples} busy samples ({prof.idle} waiting, left out)"]
    out.append("-- categories (innermost categorised frame)")
    for name, share in sorted(prof.categories().items(), key=lambda kv: -kv[1]):
        out.append(f"{share:5.1f}%  {name}")
    own, incl = prof.top(top)
    out.append("-- self")
    out += [f"{share:5.1f}%  {name}" for name, share in own]
    out.append("-- inclusive")
    out += [f"{share:5.1f}%  {name}" for name, share in incl]
    return "\n".join(out)


def main(folder: str) -> int:
    for path in sorted(Path(folder).glob("*.txt")):
        print(summarize(path))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
