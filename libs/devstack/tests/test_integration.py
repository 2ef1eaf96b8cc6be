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
        assert await _client_address(infra.database_url) is None  # the unix socket: no address
        assert "export KAFKA_BOOTSTRAP_SERVERS=" in infra.export_lines()
    finally:
        # `devstack down` path: by the pid files alone.
        stopped = await asyncio.to_thread(stop_run, name, run_root=tmp_path, purge=True)
        infra.stop()  # reaps our children; nothing left to signal
    assert sorted(stopped) == ["kafka", "postgres"]
    assert not any(pid_alive(pid) for pid in pids)
    assert not (tmp_path / name).exists()


async def _client_address(url: str) -> object:
    """The address PostgreSQL sees for a connection of the services' kind (a SQLAlchemy
    engine over asyncpg, which takes the URL's `?host=<socket directory>`; asyncpg's own
    `connect` prefers the URL's TCP address)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("select inet_client_addr()"))).scalar()
    finally:
        await engine.dispose()


async def _partition_state(bootstrap: str, topic: str) -> list[dict[str, object]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return list(described[0]["partitions"])


async def _until_in_sync(bootstrap: str, topic: str) -> None:
    for _ in range(10_000):
        isr = (await _partition_state(bootstrap, topic))[0]["isr"]
        if isinstance(isr, list) and len(isr) == 3:
            return
        await asyncio.sleep(0.5)


@pytest.mark.cluster
async def test_a_three_broker_cluster_keeps_every_acknowledged_write_when_a_broker_is_killed(
    tmp_path: Path,
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"it3-{os.getpid()}"
    infra = await asyncio.to_thread(
        start_infra, name, run_root=tmp_path, use_env=False, kafka_brokers=3
    )
    assert infra.kafka is not None and infra.postgres is not None
    pids = [*infra.kafka.pids, infra.postgres.pid]
    try:
        bootstrap = infra.kafka_bootstrap_servers
        assert len(bootstrap.split(",")) == 3
        assert infra.kafka.live_brokers() == [1, 2, 3]
        topic = f"devstack-it3-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=1,
                        replication_factor=3,
                        topic_configs={"min.insync.replicas": "2"},
                    )
                ]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=b"customer-1")
            leader = int(str((await _partition_state(bootstrap, topic))[0]["leader"]))
            await asyncio.to_thread(infra.kill_kafka, node=leader)
            # acks=all with min.insync.replicas=2: the two brokers left take every write
            async with asyncio.timeout(90):
                for i in range(5, 10):
                    await producer.send_and_wait(topic, f"m{i}".encode(), key=b"customer-1")
        finally:
            await producer.stop()
        moved = (await _partition_state(bootstrap, topic))[0]
        assert moved["leader"] != leader
        assert isinstance(moved["isr"], list) and leader not in moved["isr"]

        await asyncio.to_thread(infra.restart_kafka, node=leader)
        assert infra.kafka.live_brokers() == [1, 2, 3]
        async with asyncio.timeout(120):  # caught up: back in the ISR
            await _until_in_sync(bootstrap, topic)
        pids.append(infra.kafka.node(leader).pid)

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id="it3",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                while len(received) < 10:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for messages in batch.values():
                        received += [m.value for m in messages if m.value is not None]
        finally:
            await consumer.stop()
        assert received == [f"m{i}".encode() for i in range(10)]
    finally:
        stopped = await asyncio.to_thread(stop_run, name, run_root=tmp_path, purge=True)
        infra.stop()
    assert sorted(stopped) == ["kafka-1", "kafka-2", "kafka-3", "postgres"]
    assert not any(pid_alive(pid) for pid in pids)
