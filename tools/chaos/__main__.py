"""`python -m tools.chaos [--short] [--seed N] [--brokers 3] [--scenario NAME ...]` from the
repository root (`make chaos` runs the full form; `make chaos CHAOS_ARGS='--brokers 3'` the
cluster scenarios on a three-broker Kafka). Exit status 1 on any violation or a scenario without
redeliveries."""

from __future__ import annotations

import argparse
import os
import sys
import time

from tools.chaos.runner import (
    CLUSTER_SCENARIOS,
    FINAL_WITHIN_SECONDS,
    SCENARIOS,
    run,
    summary,
)

FULL = {"ops": 3000, "customers": 12, "budget": 900.0}
SHORT = {"ops": 150, "customers": 4, "budget": 90.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a few hundred operations each")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ops", type=int, help="operations per scenario")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=int(os.environ.get("KAFKA_BROKERS") or 1),
        help="Kafka brokers of the stack (default: $KAFKA_BROKERS or 1); with 3 and no "
        f"--scenario, the cluster scenarios run: {', '.join(CLUSTER_SCENARIOS)}",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the stack's logs in .run/chaos-<hex>/logs/ (the rest is purged)",
    )
    parser.add_argument(
        "--final-within",
        type=float,
        default=FINAL_WITHIN_SECONDS,
        help="seconds within which every operation of the hostile scenario must "
        "be final (default 10, the contract's figure under normal load)",
    )
    args = parser.parse_args(argv)
    form = SHORT if args.short else FULL
    default = (
        list(CLUSTER_SCENARIOS)
        if args.brokers == 3
        else [s for s in SCENARIOS if s not in CLUSTER_SCENARIOS]
    )
    scenarios = args.scenario or default
    wrong = [s for s in scenarios if s in CLUSTER_SCENARIOS and args.brokers < 3]
    if wrong:
        parser.error(f"{', '.join(wrong)} need a three-broker cluster: add --brokers 3")
    started = time.monotonic()
    print(
        f"chaos: seed={args.seed} form={'short' if args.short else 'full'} brokers={args.brokers}",
        flush=True,
    )
    reports = run(
        seed=args.seed,
        ops_per_scenario=args.ops or int(form["ops"]),
        customers_per_chain=int(form["customers"]),
        scenarios=scenarios,
        time_budget=float(form["budget"]),
        brokers=args.brokers,
        short=args.short,
        keep_logs=args.keep_logs,
        final_within=args.final_within,
        echo=lambda line: print(line, flush=True),
    )
    total = summary(reports)
    print(
        f"chaos: {total['operations']} operations, {total['violations']} violations, "
        f"untested scenarios: {total['untested'] or 'none'}, "
        f"{time.monotonic() - started:.0f}s",
        flush=True,
    )
    return 1 if total["violations"] or total["untested"] else 0


if __name__ == "__main__":
    sys.exit(main())
