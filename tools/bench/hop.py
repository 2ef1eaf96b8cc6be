"""One hop of a sale, alone: a message published to Kafka until its handler has run in the
consumer's committed transaction, at a low rate (every message a batch of its own, as at the
rates this machine sustains), through servicekit's `Consumer` on a real Kafka and PostgreSQL.

Two consumers in one process, each on a topic of its own, take the messages alternately:
servicekit's subscriber as it is, and FastStream's own batch subscriber with the poll timeout
servicekit used before (20 ms), which sleeps that long after every empty poll. Reported per
variant: the hop's latency (p50, p99, max) from the publish call to the start of the handler.
Then the process's CPU while idle, each variant alone (four consumers), in
alternating rounds: what waking up for nothing costs.

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.hop --messages 400
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
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber

from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import encode, make_envelope
from servicekit.consumer import Consumer, MessageContext
from servicekit.db import ensure_database, make_engine, make_session_factory
from servicekit.schema import messaging_tables
from servicekit.settings import with_database
from servicekit.topics import ensure_topics

VARIANTS = ("servicekit", "FastStream's sleep, 20 ms")


def _legacy(consumer: Consumer) -> None:
    """The subscriber as it was: FastStream's class, a 20 ms poll, a 20 ms sleep after it."""
    consumer._subscriber.__class__ = BatchSubscriber
    consumer._subscriber.batch_timeout_ms = 20


def _letter(n: int) -> bytes:
    letter = DeadLetter(
        consumer="bench",
        original_topic="x",
        partition=0,
        offset=n,
        key="k",
        reason="carrier",
        error_type="none",
        original_value="{}",
        failed_at=datetime.now(UTC),
    )
    return encode(make_envelope(letter, chain_id=None, key="k", correlation_id=uuid.uuid4()))


def _consumers(
    broker: KafkaBroker, factory: Any, topics: list[str], handler: Any, legacy: list[bool]
) -> list[Consumer]:
    made = []
    for topic, old in zip(topics, legacy, strict=True):
        consumer = Consumer(
            name=f"hop-{secrets.token_hex(3)}", topics=[topic], handlers={DeadLetter: handler}
        )
        consumer.attach(broker, factory)
        if old:
            _legacy(consumer)
        made.append(consumer)
    return made


async def _run(
    kafka: str, url: str, messages: int, rate: float, idle_seconds: float
) -> dict[str, Any]:
    await ensure_database(url)
    engine = make_engine(url, pool_size=4)
    meta = sa.MetaData()
    messaging_tables(meta)
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    factory = make_session_factory(engine)
    run = secrets.token_hex(3)
    topics = [f"bench.hop.{run}.{i}" for i in range(2)]
    await ensure_topics(kafka, topics, partitions=1)
    sent: dict[int, float] = {}
    latency: dict[str, list[float]] = {v: [] for v in VARIANTS}
    done = asyncio.Event()
    seen: set[int] = set()

    async def handle(ctx: MessageContext, payload: DeadLetter) -> None:
        n = payload.offset
        if n in sent and n not in seen:
            seen.add(n)
            latency[VARIANTS[n % 2]].append((time.perf_counter() - sent[n]) * 1000)
            if len(seen) >= messages:
                done.set()

    broker = KafkaBroker(kafka, linger_ms=1, acks="all")
    _consumers(broker, factory, topics, handle, [False, True])
    await broker.start()
    await asyncio.sleep(8)  # both groups joined and assigned
    for n in range(messages):
        sent[n] = time.perf_counter()
        await broker.publish(_letter(n), topics[n % 2], key=b"k")
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(done.wait(), 60)
    await broker.stop()

    # idle: four consumers of one variant at a time, nothing to consume
    idle: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(2):
        for i, variant in enumerate(VARIANTS):
            idle_broker = KafkaBroker(kafka)
            _consumers(idle_broker, factory, [topics[0]] * 4, handle, [bool(i)] * 4)
            await idle_broker.start()
            await asyncio.sleep(8)
            cpu = time.process_time()
            await asyncio.sleep(idle_seconds)
            idle[variant].append((time.process_time() - cpu) / idle_seconds * 100)
            await idle_broker.stop()
    await engine.dispose()

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "messages": messages,
        "rate_per_second": rate,
        "hop_ms": {
            v: {
                "count": len(ms),
                "p50": round(statistics.median(ms), 1),
                "p99": pct(ms, 0.99),
                "max": round(max(ms), 1),
            }
            for v, ms in latency.items()
        },
        "idle_cpu_percent_of_a_core_four_consumers": {
            v: [round(x, 2) for x in values] for v, values in idle.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hop")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    # Kafka and PostgreSQL from the environment (scripts/with-infra.sh starts both)
    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    url = with_database(os.environ["DATABASE_URL"], f"bench_hop_{secrets.token_hex(3)}")
    result = asyncio.run(_run(kafka, url, args.messages, args.rate, args.idle_seconds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
