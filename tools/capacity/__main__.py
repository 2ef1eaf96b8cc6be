"""`python -m tools.capacity measure|plan` from the repository root (`make capacity-measure`,
`make capacity`). `measure` needs `tools` on PYTHONPATH too (it drives the benchmark's load
generator); `plan` needs nothing running."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.paths import repo_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.capacity")
    sub = parser.add_subparsers(dest="command", required=True)
    measure = sub.add_parser("measure", help="bytes per request in every table and topic")
    measure.add_argument("--label", default="current")
    measure.add_argument("--rate", type=float, default=10.0, help="requests per second")
    measure.add_argument("--seconds", type=float, default=120.0)
    measure.add_argument("--customers", type=int, default=200)
    measure.add_argument("--stores", type=int, default=4)
    plan = sub.add_parser("plan", help="write the tables of docs/capacity.md from its inputs")
    plan.add_argument("--inputs", type=Path, default=repo_root() / "docs/capacity/inputs.json")
    plan.add_argument("--doc", type=Path, default=repo_root() / "docs/capacity.md")
    plan.add_argument("--check", action="store_true", help="only check they are current")
    args = parser.parse_args(argv)
    if args.command == "measure":
        from tools.capacity.measure import measure as run_measure

        run_measure(
            label=args.label,
            rate=args.rate,
            seconds=args.seconds,
            customers=args.customers,
            stores=args.stores,
            out_dir=repo_root() / "docs" / "capacity",
        )
        return 0
    from tools.capacity.plan import write

    if args.check:
        if write(args.inputs, args.doc, check=True):
            return 0
        print(f"{args.doc} is stale: run `make capacity`", file=sys.stderr)
        return 1
    write(args.inputs, args.doc, check=False)
    print(f"wrote the tables of {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
