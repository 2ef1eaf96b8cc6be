"""`python -m tools.chaos [--short] [--seed N] [--scenario NAME ...]` from the repository root
(`make chaos` runs the full form). Exit status 1 on any violation or a scenario without
redeliveries."""

from __future__ import annotations

import argparse
import sys
import time

from tools.chaos.runner import SCENARIOS, run, summary

FULL = {"ops": 3000, "customers": 12, "budget": 900.0}
SHORT = {"ops": 200, "customers": 4, "budget": 90.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a few hundred operations each")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ops", type=int, help="operations per scenario")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    form = SHORT if args.short else FULL
    started = time.monotonic()
    print(f"chaos: seed={args.seed} form={'short' if args.short else 'full'}", flush=True)
    reports = run(
        seed=args.seed,
        ops_per_scenario=args.ops or int(form["ops"]),
        customers_per_chain=int(form["customers"]),
        scenarios=args.scenario or list(SCENARIOS),
        time_budget=float(form["budget"]),
        echo=lambda line: print(line, flush=True),
    )
    total = summary(reports)
    print(f"chaos: {total['operations']} operations, {total['violations']} violations, "
          f"untested scenarios: {total['untested'] or 'none'}, "
          f"{time.monotonic() - started:.0f}s", flush=True)
    return 1 if total["violations"] or total["untested"] else 0


if __name__ == "__main__":
    sys.exit(main())
