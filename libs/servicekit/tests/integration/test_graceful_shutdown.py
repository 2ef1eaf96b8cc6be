"""SIGTERM during consumption: the batch in hand finishes and commits; nothing lost or doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from contracts.envelope import encode, make_envelope
from servicekit.testing import carrier_letter, unique_topic
from servicekit.topics import ensure_topics

pytestmark = pytest.mark.integration

SERVICE = Path(__file__).parent / "sample_service.py"
MESSAGES = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(SERVICE), env=env, stderr=sink
        )


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _wait_for(url: str, sql: str, at_least: int, seconds: float) -> int:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            n = await _count(url, sql)
        except (asyncpg.UndefinedTableError, OSError):
            n = 0
        if n >= at_least or asyncio.get_running_loop().time() > deadline:
            return n
        await asyncio.sleep(0.05)


async def test_sigterm_finishes_the_batch_in_hand_and_a_restart_applies_the_rest_once(
    fresh_database_url: str, kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    topic = unique_topic("shutdown")
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for i in range(MESSAGES):
            letter = carrier_letter(consumer="c", original_topic="t", offset=i)
            env = make_envelope(
                letter, chain_id=None, key=f"customer-{i % 7}", correlation_id=uuid.uuid4()
            )
            await producer.send_and_wait(topic, encode(env), key=env.key.encode())
    finally:
        await producer.stop()
    env = {
        **os.environ,
        "SAMPLE_DATABASE_URL": fresh_database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "SAMPLE_TOPIC": topic,
        "SAMPLE_PORT": str(_free_port()),
        "SAMPLE_CONSUMER_BATCH_SIZE": "20",
        "KAFKA_TOPIC_PARTITIONS": "1",
    }
    things = "SELECT count(*) FROM things"

    log = tmp_path / "service.log"
    first = await _start(env, log)
    try:
        assert await _wait_for(fresh_database_url, things, 1, seconds=60) >= 1
        first.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(first.wait(), timeout=30)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done
    assert rc in (0, -signal.SIGTERM)
    assert "sample stopping" in log.read_text(), log.read_text()[-2000:]
    after_stop = await _count(fresh_database_url, things)
    # what was applied is exactly what the inbox recorded: no half-applied batch
    assert await _count(fresh_database_url, "SELECT count(*) FROM inbox") == after_stop

    second = await _start({**env, "SAMPLE_PORT": str(_free_port())}, log)
    try:
        done = await _wait_for(fresh_database_url, things, MESSAGES, seconds=60)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(second.wait(), timeout=30)
        except TimeoutError:
            second.kill()
            await second.wait()
    assert done == MESSAGES
    assert await _count(fresh_database_url, "SELECT count(DISTINCT message_id) FROM things") == (
        MESSAGES
    )
    assert await _count(fresh_database_url, "SELECT count(*) FROM outbox") == 0  # no dead letter
