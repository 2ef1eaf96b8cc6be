"""`python -m bench pipeline|reports|render|consumer|floor|statements` (see the Makefile's bench
targets)."""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from pathlib import Path

from devstack.paths import repo_root
from devstack.procs import stop_on_sigterm


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()  # a bench stopped by SIGTERM stops the stack it started
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    pipe = sub.add_parser("pipeline", help="open-loop load steps against a fresh stack")
    pipe.add_argument("--rates", default="10,25,50,100,200,400,800")
    pipe.add_argument("--step-seconds", type=float, default=25.0)
    pipe.add_argument("--label", default="current")
    pipe.add_argument("--customers", type=int, default=100, help="per chain")
    pipe.add_argument("--chains", type=int, default=4)
    pipe.add_argument("--skip-ceiling", action="store_true")
    pipe.add_argument(
        "--profile",
        action="store_true",
        help="after the steps, one more step with py-spy on every service: flame graphs in "
        "docs/benchmarks/ and CPU by category in the report",
    )
    pipe.add_argument(
        "--profile-rate",
        type=float,
        default=None,
        help="the rate of that profiling step (default: the best rate)",
    )
    pipe.add_argument(
        "--instances",
        type=int,
        default=1,
        help="processes per consumer service (credit, loyalty, reporting, notifier)",
    )
    pipe.add_argument(
        "--skip-floor", action="store_true", help="do not measure the floor app (bench.floor)"
    )
    pipe.add_argument(
        "--ab-ref",
        action="append",
        default=[],
        metavar="REF",
        help="A/B in one run: every rate once with the code at REF (repeatable, in order), "
        "then with this checkout, alternating order from rate to rate",
    )
    pipe.add_argument(
        "--ab-database-tcp",
        action="store_true",
        help="A/B in one run: every rate once with the services reaching PostgreSQL over TCP "
        "on loopback, then through its unix socket (the stack's URL), alternating order; "
        "with --ab-ref, the refs' code runs over TCP",
    )
    pipe.add_argument(
        "--code-ref",
        default=None,
        metavar="REF",
        help="the whole run on the code at REF (fresh databases migrated by REF's own "
        "migrations): for a ref whose schema this checkout's data no longer fits, run it and "
        "this checkout back to back instead of --ab-ref",
    )
    pipe.add_argument(
        "--baseline-ref",
        default=None,
        metavar="REF",
        help="first the whole run on the code at REF (as --code-ref), then on this checkout, "
        "in one invocation; the report puts them side by side, rate by rate",
    )
    pipe.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra environment variable for the services",
    )
    pipe.add_argument("--gateways", type=int, default=1, help="gateway processes")
    pipe.add_argument(
        "--pg-statements",
        action="store_true",
        help="PostgreSQL with pg_stat_statements: each step reports its time per database and "
        "its costliest statements (not comparable with steps measured without it)",
    )
    pipe.add_argument(
        "--no-invariants", action="store_true", help="skip the invariant check after each step"
    )
    pipe.add_argument(
        "--recovery-service",
        default="credit",
        help="kill -9 this consumer service under load after the steps ('' skips)",
    )
    pipe.add_argument(
        "--recovery-rate",
        type=float,
        default=None,
        help="steady rate of the recovery phase (default: half the best rate)",
    )
    rep = sub.add_parser("reports", help="Payment-Balance on 100k customers / 1M sales")
    rep.add_argument("--customers", type=int, default=100_000)
    rep.add_argument("--sales", type=int, default=1_000_000)
    rep.add_argument("--label", default="current")
    office = sub.add_parser("backoffice", help="the back office's pages on 100k customers")
    office.add_argument("--customers", type=int, default=100_000)
    office.add_argument("--sales", type=int, default=1_000_000)
    office.add_argument("--open-tasks", type=int, default=5_000)
    office.add_argument("--done-tasks", type=int, default=20_000)
    office.add_argument("--repeats", type=int, default=5)
    office.add_argument("--label", default="current")
    office.add_argument(
        "--pages",
        default="",
        help="time only the pages whose title contains this text (case-insensitive; "
        "comma-separated for several), e.g. --pages payment,aging",
    )
    sub.add_parser("render", help="rewrite docs/benchmarks.md from docs/benchmarks/*.json")
    cons = sub.add_parser("consumer", help="servicekit consumer micro-benchmark (stdout only)")
    cons.add_argument("--messages", type=int, default=5_000)
    cons.add_argument("--batch", type=int, default=200)
    cons.add_argument("--repeats", type=int, default=3)
    cons.add_argument("--poison-per-batch", type=int, default=0)
    flo = sub.add_parser("floor", help="the floor app at saturation against DATABASE_URL (stdout)")
    flo.add_argument("--seconds", type=float, default=20.0)
    flo.add_argument("--connections", type=int, default=16)
    sub.add_parser(
        "statements",
        help="Python CPU per statement/row and per envelope decode, by access path (stdout)",
    )
    args = parser.parse_args(argv)
    if args.command == "statements":
        import os

        from bench.statements import main as run_statements

        print(run_statements(os.environ["DATABASE_URL"]))
        return 0
    if args.command == "floor":
        import asyncio
        import json
        import os

        from bench.floor import measure

        figures = asyncio.run(
            measure(os.environ["DATABASE_URL"], seconds=args.seconds, connections=args.connections)
        )
        print(json.dumps(figures, indent=1))
        return 0
    if args.command == "consumer":
        import os

        from bench.consumer_micro import Options as ConsumerOptions
        from bench.consumer_micro import main as run_consumer
        from bench.consumer_micro import report

        print(
            report(
                run_consumer(
                    ConsumerOptions(
                        messages=args.messages,
                        batch=args.batch,
                        repeats=args.repeats,
                        poison_per_batch=args.poison_per_batch,
                        database_url=os.environ.get("DATABASE_URL"),
                    )
                )
            )
        )
        return 0
    out_dir = repo_root() / "docs" / "benchmarks"
    name = f"bench-{secrets.token_hex(3)}"
    if args.command == "pipeline":
        from bench.pipeline import Options
        from bench.pipeline import main as run_pipeline

        run_pipeline(
            Options(
                name=name,
                rates=[float(r) for r in args.rates.split(",") if r],
                step_seconds=args.step_seconds,
                label=args.label,
                out_dir=out_dir,
                chains=args.chains,
                customers=args.customers,
                skip_ceiling=args.skip_ceiling,
                profile=args.profile or args.profile_rate is not None,
                profile_rate=args.profile_rate,
                instances=args.instances,
                skip_floor=args.skip_floor,
                ab_refs=args.ab_ref,
                ab_database_tcp=args.ab_database_tcp,
                code_ref=args.code_ref,
                baseline_ref=args.baseline_ref,
                service_env=dict(s.split("=", 1) for s in args.set),
                gateways=args.gateways,
                pg_statements=args.pg_statements,
                check_invariants=not args.no_invariants,
                recovery_service=args.recovery_service,
                recovery_rate=args.recovery_rate,
                command=shlex.join(sys.argv[1:] if argv is None else argv),
            )
        )
    elif args.command == "reports":
        from bench.reports import main as run_reports

        run_reports(name, out_dir, args.customers, args.sales, args.label)
    elif args.command == "backoffice":
        from bench.backoffice import main as run_backoffice

        run_backoffice(
            name,
            out_dir,
            args.customers,
            args.sales,
            args.open_tasks,
            args.done_tasks,
            args.label,
            repeats=args.repeats,
            command=shlex.join(sys.argv[1:] if argv is None else argv),
            only=[p.strip() for p in args.pages.split(",") if p.strip()],
        )
    from bench.render import render

    path: Path = render(out_dir, repo_root() / "docs" / "benchmarks.md")
    print(f"[bench] wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
