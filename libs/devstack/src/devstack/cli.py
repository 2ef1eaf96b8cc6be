"""`python -m devstack ...`: the local stack from a shell (used by the Makefile and CI).

Progress goes to stderr; stdout carries only results (`infra up` prints `export` lines that a
shell can `eval`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from devstack.errors import DevstackError
from devstack.kafka import fetch_kafka, kafka_version
from devstack.paths import run_dir
from devstack.procs import format_tail, no_progress, stderr_progress, stop_on_sigterm
from devstack.services import SERVICE_NAMES
from devstack.stack import (
    Stack,
    log_paths,
    read_state,
    run_status,
    start_infra,
    start_stack,
    stop_run,
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--name",
        default=argparse.SUPPRESS,
        help="stack name: its run dir is .run/<name>/ (default: $DEVSTACK_NAME or 'dev')",
    )
    common.add_argument(
        "--run-root",
        type=Path,
        default=argparse.SUPPRESS,
        help="parent of the run dirs (default: <repo>/.run or $DEVSTACK_RUN_ROOT)",
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Real Kafka + PostgreSQL 15 as local processes, and the services.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    brokers_help = "Kafka brokers to start: 1, or 3 for a cluster (default: $KAFKA_BROKERS or 1)"
    up = sub.add_parser("up", parents=[common], help="start Kafka, PostgreSQL and the services")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for services")
    up.add_argument("--infra-timeout", type=float, default=180.0)
    up.add_argument("--brokers", type=int, choices=[1, 3], help=brokers_help)

    down = sub.add_parser("down", parents=[common], help="stop the services, then the infra")
    down.add_argument("--purge", action="store_true", help="also delete the run dir (data)")
    down.add_argument("--keep-logs", action="store_true", help="with --purge: keep logs/")

    status = sub.add_parser("status", parents=[common], help="what runs in the run dir")
    status.add_argument("--json", action="store_true")

    sub.add_parser(
        "env",
        parents=[common],
        help="print `export GW=... OPERATOR_TOKEN=...` of the running stack",
    )

    logs = sub.add_parser("logs", parents=[common], help="print the log file paths")
    logs.add_argument("--tail", type=int, default=0, help="also print the last N lines of each")

    infra = sub.add_parser("infra", parents=[common], help="only Kafka + PostgreSQL")
    infra.add_argument("action", choices=["up", "down"])
    infra.add_argument("--timeout", type=float, default=180.0)
    infra.add_argument("--purge", action="store_true", help="down: also delete the run dir")
    infra.add_argument("--keep-logs", action="store_true", help="with --purge: keep logs/")
    infra.add_argument("--brokers", type=int, choices=[1, 3], help=brokers_help)

    fetch = sub.add_parser("kafka-fetch", parents=[common], help="download the Kafka jars")
    fetch.add_argument("--force", action="store_true")
    return parser


def _running(name: str, root: Path | None) -> tuple[list[str], list[str]]:
    procs = run_status(name, run_root=root)["processes"]
    alive = [n for n, p in procs.items() if p["alive"]]
    dead = [n for n, p in procs.items() if not p["alive"]]
    return alive, dead


def _print_stack(name: str, root: Path | None) -> None:
    state = read_state(run_dir(name, root))
    logs = run_dir(name, root) / "logs"
    print(f"stack '{name}' is up")
    print(f"  gateway:        {state.get('gateway_url', '?')}")
    if state.get("backoffice_url"):
        print(f"  back office:    {state['backoffice_url']}  (sign in as a staff user)")
    print(f"  operator token: {state.get('operator_token', '?')}")
    brokers = state.get("kafka_brokers") or 1
    kafka = f"{state.get('KAFKA_BOOTSTRAP_SERVERS', '?')}"
    if brokers > 1:
        kafka += f"  ({brokers} brokers)"
    print(f"  Kafka:          {kafka}")
    print(f"  PostgreSQL:     {state.get('DATABASE_URL', '?')}")
    print(f"  logs:           {_rel(logs)}/  (python -m devstack logs --name {name})")
    print(f"  stop with:      make down  (python -m devstack down --name {name})")
    print("  in your shell (the README's quickstart uses these):")
    print(f"    {shell_exports(state)}")


def shell_exports(state: dict[str, object]) -> str:
    """`export GW=... OPERATOR_TOKEN=...` for a shell, quoted."""
    gw = shlex.quote(str(state.get("gateway_url", "")))
    token = shlex.quote(str(state.get("operator_token", "")))
    return f"export GW={gw} OPERATOR_TOKEN={token}"


def cmd_env(name: str, root: Path | None) -> int:
    """Print the export line of a running stack, for `eval "$(make -s env)"`."""
    alive, _ = _running(name, root)
    if not {f"svc-{n}" for n in SERVICE_NAMES} <= set(alive):
        print(f"[devstack] stack '{name}' is not running: make up", file=sys.stderr)
        return 1
    print(shell_exports(read_state(run_dir(name, root))))
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cmd_up(name: str, root: Path | None, args: argparse.Namespace, quiet: bool) -> int:
    progress = no_progress if quiet else stderr_progress
    alive, _ = _running(name, root)
    expected = {f"svc-{n}" for n in SERVICE_NAMES}
    if alive:
        if expected <= set(alive):
            print(f"(already running: {', '.join(alive)})", file=sys.stderr)
            _print_stack(name, root)
            return 0
        raise DevstackError(
            f"stack '{name}' is partly running ({', '.join(alive)}): "
            f"run `python -m devstack down --name {name}` first"
        )
    started = time.monotonic()
    stack: Stack = start_stack(
        name,
        run_root=root,
        ready_timeout=args.timeout,
        infra_timeout=args.infra_timeout,
        kafka_brokers=args.brokers,
        progress=progress,
    )
    stack.detach()  # from here on the stack outlives this command
    progress(f"stack ready in {time.monotonic() - started:.1f}s")
    _print_stack(name, root)
    return 0


def cmd_infra_up(name: str, root: Path | None, args: argparse.Namespace, quiet: bool) -> int:
    progress = no_progress if quiet else stderr_progress
    alive, _ = _running(name, root)
    if "postgres" in alive and any(n == "kafka" or n.startswith("kafka-") for n in alive):
        state = read_state(run_dir(name, root))
        progress(f"infra '{name}' already running")
        for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            print(f"export {var}={shlex.quote(str(state.get(var, '')))}")
        return 0
    if alive:
        raise DevstackError(
            f"infra '{name}' is partly running ({', '.join(alive)}): "
            f"run `python -m devstack infra down --name {name}` first"
        )
    infra = start_infra(
        name, run_root=root, timeout=args.timeout, kafka_brokers=args.brokers, progress=progress
    )
    infra.detach()
    sys.stdout.write(infra.export_lines())
    return 0


def cmd_status(name: str, root: Path | None, args: argparse.Namespace) -> int:
    status = run_status(name, run_root=root)
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        print(f"run dir: {status['run_dir']}")
        if not status["processes"]:
            print("  nothing running")
        for proc, info in status["processes"].items():
            print(f"  {proc:<14} pid {info['pid']:<8} {'running' if info['alive'] else 'DEAD'}")
        for key in ("gateway_url", "backoffice_url", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            if key in status["state"]:
                print(f"  {key}: {status['state'][key]}")
    procs = status["processes"]
    return 0 if procs and all(p["alive"] for p in procs.values()) else 1


def cmd_logs(name: str, root: Path | None, args: argparse.Namespace) -> int:
    paths = log_paths(name, run_root=root)
    if not paths:
        print(f"no logs in {run_dir(name, root) / 'logs'}", file=sys.stderr)
        return 1
    for path in paths:
        if args.tail:
            print(format_tail(path.stem, path, args.tail))
        else:
            print(_rel(path))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name: str = getattr(args, "name", None) or os.environ.get("DEVSTACK_NAME") or "dev"
    root: Path | None = getattr(args, "run_root", None)
    quiet: bool = getattr(args, "quiet", False)
    progress = no_progress if quiet else stderr_progress
    stop_on_sigterm()
    try:
        if args.command == "up":
            return cmd_up(name, root, args, quiet)
        if args.command == "down":
            stopped = stop_run(
                name, run_root=root, purge=args.purge, keep_logs=args.keep_logs, progress=progress
            )
            progress(f"stopped: {', '.join(stopped) or 'nothing was running'}")
            return 0
        if args.command == "status":
            return cmd_status(name, root, args)
        if args.command == "logs":
            return cmd_logs(name, root, args)
        if args.command == "env":
            return cmd_env(name, root)
        if args.command == "infra":
            if args.action == "up":
                return cmd_infra_up(name, root, args, quiet)
            stopped = stop_run(
                name, run_root=root, purge=args.purge, keep_logs=args.keep_logs, progress=progress
            )
            progress(f"stopped: {', '.join(stopped) or 'nothing was running'}")
            return 0
        if args.command == "kafka-fetch":
            lib = fetch_kafka(force=args.force, progress=progress)
            print(f"Kafka {kafka_version()} jars in {lib}")
            return 0
    except DevstackError as exc:
        print(f"[devstack] error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[devstack] interrupted", file=sys.stderr)
        return 130
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
