"""Real Kafka and PostgreSQL: start, use with aiokafka and asyncpg, stop, PIDs gone."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from devstack import pid_alive, start_infra, stop_run

pytestmark = pytest.mark.integration


async def kafka_round_trip(bootstrap: str) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"devstack-it-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"customer-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="devstack-it",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < 5:
                batch = await consumer.getmany(timeout_ms=1000)
                for messages in batch.values():
                    received += [m.value for m in messages if m.value is not None]
        await consumer.commit()
    finally:
        await consumer.stop()
    return received


async def test_real_kafka_and_postgres(tmp_path: Path) -> None:
    import asyncpg

    name = f"it-{os.getpid()}"
    # use_env=False: this tests devstack itself, even when make test already provides infra.
    infra = await asyncio.to_thread(start_infra, name, run_root=tmp_path, use_env=False)
    assert infra.kafka is not None and infra.postgres is not None
    pids = [infra.kafka.pid, infra.postgres.pid]
    try:
        assert infra.kafka_bootstrap_servers.startswith("127.0.0.1:")
        assert infra.database_url.startswith("postgresql://retail:")
        # Same key, so one partition: order is kept.
        assert await kafka_round_trip(infra.kafka_bootstrap_servers) == [
            f"m{i}".encode() for i in range(5)
        ]
        conn = await asyncpg.connect(infra.database_url)
        try:
            assert await conn.fetchval("select 1") == 1
            await conn.execute("create database devstack_it")  # the role has CREATEDB
        finally:
            await conn.close()
        assert "export KAFKA_BOOTSTRAP_SERVERS=" in infra.export_lines()
    finally:
        # `devstack down` path: by the pid files alone.
        stopped = await asyncio.to_thread(stop_run, name, run_root=tmp_path, purge=True)
        infra.stop()  # reaps our children; nothing left to signal
    assert sorted(stopped) == ["kafka", "postgres"]
    assert not any(pid_alive(pid) for pid in pids)
    assert not (tmp_path / name).exists()
