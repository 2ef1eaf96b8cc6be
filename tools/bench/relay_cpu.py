"""The outbox relay alone: what one wake-up costs, in process, on a real Kafka and PostgreSQL.

At the rates this machine sustains every commit of a service wakes its relay for a row or two,
so the relay's cost per wake-up is paid per message, in every service. This measures it: a row
is written to the outbox (its own transaction, not measured), then `OutboxRelay.publish_once`
publishes it (measured: `time.process_time` of this process around the call, the Kafka
acknowledgement awaited; on the relay's own connection, as `run` holds one, where the code has
one), `--rows` times; reported are the median CPU per wake-up, its median wall time (the
Kafka acknowledgement included), the statements each sent (counted as servicekit's statement
budget tests count them) and the CPU the relay's PostgreSQL backend spent per wake-up (from
/proc, so only where PostgreSQL runs on this machine under a user whose processes this one can
read, as `scripts/with-infra.sh` starts it; else null).

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.relay_cpu --rows 400

`--ab-src DIR` runs it alternately with servicekit's code under DIR (a checkout's root) and
with this checkout's, `--repeats` times each (`bench.inprocess.alternate`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
import uuid
from typing import Any

from faststream.kafka import KafkaBroker

from bench.inprocess import alternate, carrier, messaging_database
from bench.procstat import cpu_seconds
from contracts.envelope import make_envelope
from servicekit.outbox import OutboxRelay, enqueue
from servicekit.settings import bootstrap_list, with_database
from servicekit.testing import counted_statements
from servicekit.topics import ensure_topics


async def _run(kafka: str, url: str, rows: int, warmup: int) -> dict[str, Any]:
    engine, factory = await messaging_database(url, pool_size=2)
    topic = f"bench.relay.{secrets.token_hex(3)}"
    await ensure_topics(kafka, [topic], partitions=1)
    broker = KafkaBroker(bootstrap_list(kafka), acks="all", enable_idempotence=True)
    await broker.start()
    relay = OutboxRelay(
        service=f"bench-{secrets.token_hex(3)}", session_factory=factory, broker=broker
    )
    cpu: list[float] = []
    wall: list[float] = []
    statements = 0
    if hasattr(relay, "open"):  # as `run` does: wake-ups on a connection of its own
        await relay.open()
    own = getattr(relay, "_own", None)
    backend = own.get_server_pid() if own is not None else None
    server_before: float | None = None
    try:
        for n in range(warmup + rows):
            if n == warmup and backend is not None:
                server_before = cpu_seconds(backend)
            async with factory() as session, session.begin():
                env = make_envelope(carrier(n), chain_id=None, key="k", correlation_id=uuid.uuid4())
                await enqueue(session, topic, env)
            with counted_statements(engine) as sent:
                started, started_wall = time.process_time(), time.perf_counter()
                assert await relay.publish_once() == 1
                spent = time.process_time() - started
                spent_wall = time.perf_counter() - started_wall
            if n >= warmup:
                cpu.append(spent * 1000)
                wall.append(spent_wall * 1000)
                statements += len(sent)
        server_after = cpu_seconds(backend) if backend is not None else None
    finally:
        if hasattr(relay, "close"):
            await relay.close()
        await broker.stop()
        await engine.dispose()
    return {
        "rows": rows,
        "cpu_ms_per_wake_up": round(statistics.median(cpu), 3),
        "wall_ms_per_wake_up": round(statistics.median(wall), 3),
        "server_cpu_ms_per_wake_up": (
            round(1000 * (server_after - server_before) / rows, 3)
            if server_before is not None and server_after is not None
            else None
        ),
        "statements_per_wake_up": statements / rows,
    }


_FIGURES = (
    "cpu_ms_per_wake_up",
    "wall_ms_per_wake_up",
    "server_cpu_ms_per_wake_up",
    "statements_per_wake_up",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_cpu")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.ab_src:
        passed = [f"--rows={args.rows}", f"--warmup={args.warmup}"]
        runs = alternate(
            "bench.relay_cpu", passed, args.ab_src, (), args.repeats, libs=("servicekit",)
        )
        # every figure's runs in the order run: the variants alternate, so they pair up
        summary = {
            name: {
                key: {
                    "median": statistics.median(values),
                    "range": [min(values), max(values)],
                    "runs": values,
                }
                for key in _FIGURES
                if None not in (values := [r.get(key) for r in results])
            }
            for name, results in runs.items()
        }
        print(json.dumps(summary, indent=2))
        return 0
    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    url = with_database(os.environ["DATABASE_URL"], f"bench_relay_{secrets.token_hex(3)}")
    print(json.dumps(asyncio.run(_run(kafka, url, args.rows, args.warmup))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
