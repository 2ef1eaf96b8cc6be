"""The machine's own ceiling, measured in the same run: pgbench TPC-B TPS and Kafka producer
throughput with acks=all, so the pipeline's figures can be quoted as ratios.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from servicekit.settings import with_database


async def _create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


def pgbench_version() -> str:
    exe = shutil.which("pgbench")
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


async def pgbench(
    server_url: str, *, scale: int = 10, clients: int = 2, seconds: int = 20
) -> dict[str, Any]:
    """TPC-B (pgbench's default script) on a database of its own on the stack's server."""
    exe = shutil.which("pgbench")
    if exe is None:
        return {"error": "pgbench not installed"}
    url = await _create_database(server_url, "bench_pgbench")
    init = await asyncio.to_thread(
        subprocess.run,
        [exe, "-i", "-q", "-s", str(scale), url],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        return {"error": f"pgbench -i failed: {init.stderr[-500:]}"}
    run = await asyncio.to_thread(
        subprocess.run,
        [exe, "-c", str(clients), "-j", str(clients), "-T", str(seconds), url],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", run.stdout)
    if run.returncode != 0 or match is None:
        return {"error": f"pgbench failed: {run.stderr[-500:]} {run.stdout[-500:]}"}
    return {
        "tps": float(match.group(1)),
        "latency_ms": float(latency.group(1)) if latency else None,
        "scale": scale,
        "clients": clients,
        "seconds": seconds,
        "version": pgbench_version(),
    }


async def kafka_producer(
    bootstrap: str,
    *,
    messages: int = 100_000,
    size: int = 700,
    partitions: int = 6,
    in_flight: int = 5_000,
) -> dict[str, Any]:
    """Messages/s one aiokafka producer gets acknowledged with acks=all and idempotence, as the
    services' outbox relays publish, with values the size of an envelope and a 1 ms linger (the
    relays send at once; a ceiling of many concurrent sends gathers them)."""
    topic = f"bench.producer-perf.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1
    )
    await producer.start()
    value = b"x" * size
    try:
        # warm-up: metadata and connections
        await (await producer.send(topic, value, key=b"warm"))
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        for i in range(messages):
            futures.append(await producer.send(topic, value, key=str(i % 1000).encode()))
            if len(futures) >= in_flight:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    return {
        "messages_per_second": round(messages / elapsed, 1),
        "mb_per_second": round(messages * size / elapsed / 1e6, 2),
        "messages": messages,
        "size_bytes": size,
        "client": "aiokafka (acks=all, idempotent, linger_ms=1)",
    }
