"""One hop of a sale, alone: a message published to Kafka until its handler runs, through
servicekit's `Consumer` on the service runtime's broker (`make_broker`), a real Kafka and a real
PostgreSQL, at a low rate (every message a batch of its own, as at the rates this machine
sustains).

The message is published through the runtime's broker too, as the outbox relay publishes (its
producer's settings: acks, idempotence, `<PREFIX>_PRODUCER_LINGER_MS`). Reported: the hop's
latency (p50, p99, max) from the publish call to the start of the handler;
this process's CPU per message while sending and consuming them (`time.process_time` over the
whole phase: the producer's and the consumer's work, the idle polls between messages included);
then the CPU of four idle consumers over `--idle-seconds` (what waking up for nothing costs).

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.hop --messages 400

`--ab-src DIR` runs the measure alternately with servicekit's code under DIR (a checkout's root)
and with this checkout's, `--repeats` times each (`bench.inprocess.alternate`), and prints the
medians and ranges of both.
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

from bench.inprocess import alternate, carrier, messaging_database
from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import encode, make_envelope
from servicekit.consumer import Consumer, MessageContext
from servicekit.runtime import make_broker
from servicekit.settings import ServiceSettings, with_database
from servicekit.topics import ensure_topics


def _letter(n: int) -> bytes:
    env = make_envelope(carrier(n), chain_id=None, key="k", correlation_id=uuid.uuid4())
    return encode(env)


async def _run(
    kafka: str, url: str, messages: int, rate: float, idle_seconds: float
) -> dict[str, Any]:
    engine, factory = await messaging_database(url, pool_size=4)
    topic = f"bench.hop.{secrets.token_hex(3)}"
    await ensure_topics(kafka, [topic], partitions=1)
    settings = ServiceSettings(kafka_bootstrap_servers=kafka)
    sent: dict[int, float] = {}
    latency: list[float] = []
    done = asyncio.Event()

    async def handle(ctx: MessageContext, payload: DeadLetter) -> None:
        n = payload.offset
        if n in sent and len(latency) < messages:
            latency.append((time.perf_counter() - sent[n]) * 1000)
            if len(latency) >= messages:
                done.set()

    def consumers(broker: Any, count: int) -> None:
        for _ in range(count):
            consumer = Consumer(
                name=f"hop-{secrets.token_hex(3)}", topics=[topic], handlers={DeadLetter: handle}
            )
            consumer.attach(broker, factory)

    broker = make_broker(settings, "bench-hop")
    consumers(broker, 1)
    await broker.start()
    await asyncio.sleep(8)  # the group joined and assigned
    payloads = [_letter(n) for n in range(messages)]
    cpu = time.process_time()
    for n in range(messages):
        sent[n] = time.perf_counter()
        # through the runtime's own producer (`make_broker`: acks, idempotence, linger), as
        # the outbox relay publishes; the acknowledgement awaited
        await broker.publish(payloads[n], topic=topic, key=b"k")
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(done.wait(), 60)
    cpu_per_message = (time.process_time() - cpu) / messages * 1000
    await broker.stop()

    # idle: four consumers with nothing to consume
    idle_broker = make_broker(settings, "bench-hop-idle")
    consumers(idle_broker, 4)
    await idle_broker.start()
    await asyncio.sleep(8)
    cpu = time.process_time()
    await asyncio.sleep(idle_seconds)
    idle = (time.process_time() - cpu) / idle_seconds * 100
    await idle_broker.stop()
    await engine.dispose()
    ordered = sorted(latency)
    return {
        "messages": messages,
        "rate_per_second": rate,
        "hop_ms_p50": round(statistics.median(ordered), 2),
        "hop_ms_p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "hop_ms_max": round(ordered[-1], 2),
        "cpu_ms_per_message": round(cpu_per_message, 3),
        "idle_cpu_percent_four_consumers": round(idle, 2),
    }


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant and figure: the median and the range of the runs."""
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = {
            key: {
                "median": round(statistics.median(r[key] for r in results), 3),
                "range": [min(r[key] for r in results), max(r[key] for r in results)],
            }
            for key in results[0]
            if key not in ("messages", "rate_per_second")
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hop")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.ab_src:
        passed = [
            f"--messages={args.messages}",
            f"--rate={args.rate}",
            f"--idle-seconds={args.idle_seconds}",
        ]
        runs = alternate("bench.hop", passed, args.ab_src, (), args.repeats, libs=("servicekit",))
        print(json.dumps(_summary(runs), indent=2))
        return 0
    # Kafka from the environment (scripts/with-infra.sh starts it and PostgreSQL)
    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    url = with_database(os.environ["DATABASE_URL"], f"bench_hop_{secrets.token_hex(3)}")
    result = asyncio.run(_run(kafka, url, args.messages, args.rate, args.idle_seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
