"""`python -m reporting.snapshot`: take a snapshot of the read models now, or list them.

The service takes them on its own schedule (`REPORTING_SNAPSHOT_INTERVAL_SECONDS`); by hand is
for before a maintenance (lowering the retention, restoring Kafka) and for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from reporting.config import Settings
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.service_layer.snapshots import list_snapshots, prune_snapshots, take_snapshot
from servicekit.db import make_engine, prepare_database


def _say(message: str) -> None:
    print(f"[snapshot] {message}", file=sys.stderr, flush=True)


async def _run(settings: Settings, *, listing: bool) -> int:
    await prepare_database(MIGRATIONS_DIR, settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        if not listing:
            taken = await take_snapshot(engine, settings.consumer_group)
            if taken is None:
                _say("another process is taking a snapshot right now: try again in a moment")
                return 1
            _say(f"took {taken.describe()} in {taken.seconds:.1f}s (schema {taken.schema})")
            dropped = await prune_snapshots(engine, settings.snapshot_keep)
            if dropped:
                _say(
                    f"dropped snapshots {dropped} (REPORTING_SNAPSHOT_KEEP="
                    f"{settings.snapshot_keep})"
                )
        async with engine.connect() as conn:
            for snapshot in await list_snapshots(conn):
                positions = sorted(snapshot.positions.items())
                offsets = ", ".join(f"{t}[{p}]@{o}" for (t, p), o in positions)
                print(f"{snapshot.describe()}  schema {snapshot.schema}  offsets: {offsets or '-'}")
        return 0
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m reporting.snapshot",
        description="Take a snapshot of reporting's read models (with the offsets it covers).",
    )
    parser.add_argument("--list", action="store_true", help="only list the snapshots")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(_run(Settings(), listing=args.list)))
