"""Kafka-level faults: re-publish already processed messages, rewind a consumer group to
offset 0, and poison messages. Uses aiokafka directly, loopback only."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from contracts import topics

#: every topic some service consumes
INPUT_TOPICS = (
    topics.POS_COMMANDS,
    topics.LOYALTY_COMMANDS,
    topics.CREDIT_EVENTS,
    topics.LOYALTY_EVENTS,
    topics.MASTERDATA_EVENTS,
)


async def republish(bootstrap: str, *, per_topic: int) -> int:
    """Read up to `per_topic` messages from the start of each input topic and publish them
    again unchanged (same key, value, headers): a broker or producer duplicating messages.
    Returns how many were re-published."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    sent = 0
    try:
        for topic in INPUT_TOPICS:
            # the producer fetches the topic's metadata (a consumer without a subscription
            # does not know the partitions yet)
            parts = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
            if not parts:
                continue
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            taken = 0
            for _ in range(20):
                batch = await consumer.getmany(timeout_ms=500, max_records=per_topic)
                for records in batch.values():
                    for record in records:
                        if taken >= per_topic:
                            break
                        await producer.send(
                            topic,
                            value=record.value,
                            key=record.key,
                            headers=list(record.headers or []),
                        )
                        taken += 1
                if taken >= per_topic or not batch:
                    break
            sent += taken
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return sent


async def rewind_group(bootstrap: str, group: str, *, wait_seconds: float = 90.0) -> int:
    """Commit offset 0 on every partition the group has offsets for, once the group is empty
    (its members stopped): the next member replays everything from the start. Returns the
    number of messages that will be delivered again (sum of the old offsets)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            described = await admin.describe_consumer_groups([group])
            state = _group_state(described)
            if state in ("Empty", "Dead", ""):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"group {group} still {state} after {wait_seconds}s")
            await asyncio.sleep(0.5)
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    if not offsets:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = list(offsets)
        consumer.assign(parts)
        await consumer.commit(dict.fromkeys(parts, 0))
    finally:
        await consumer.stop()
    return sum(max(0, meta.offset) for meta in offsets.values())


def _group_state(described: object) -> str:
    """The state of the one group in a DescribeGroups response (aiokafka returns the raw
    response objects)."""
    for response in described if isinstance(described, list) else [described]:
        for group in getattr(response, "groups", []) or []:
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            if isinstance(group, tuple) and len(group) > 2:
                return str(group[2])
    return ""


async def poison(bootstrap: str, *, keys: list[str]) -> int:
    """On every input topic: one unparsable message, one envelope of an unknown type and one
    envelope whose payload violates the schema, keyed like real traffic (so they sit in the
    partitions real customers use). Each must be dead-lettered while the partition moves on."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    count = 0
    try:
        for topic in INPUT_TOPICS:
            for index, body in enumerate(_poison_bodies()):
                key = keys[(count + index) % len(keys)].encode()
                await producer.send_and_wait(topic, value=body, key=key)
                count += 1
    finally:
        await producer.stop()
    return count


def _poison_bodies() -> list[bytes]:
    now = datetime.now(UTC).isoformat()

    def envelope(kind: str, payload: dict[str, object]) -> bytes:
        return json.dumps(
            {
                "message_id": str(uuid.uuid4()),
                "type": kind,
                "schema_version": 1,
                "occurred_at": now,
                "chain_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()),
                "causation_id": None,
                "key": str(uuid.uuid4()),
                "payload": payload,
            }
        ).encode()

    return [
        b"\x00{not json at all",
        envelope("chaos.UnknownThing", {"x": 1}),
        envelope("credit.SaleCompleted", {"sale_id": 12, "amount": 1.5}),
    ]


async def partition_state(bootstrap: str, *, attempts: int = 20) -> list[dict[str, object]]:
    """Every partition of every topic (internal ones too): topic, partition, leader, replicas,
    isr. The admin client asks a random broker, which may be the one just killed: asked again
    (a new client) until one answers."""
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="chaos-replication", request_timeout_ms=5000
        )
        try:
            await admin.start()
            described = await admin.describe_topics(None)
            break
        except (KafkaError, OSError):
            if attempt == attempts:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    return [
        {"topic": topic["topic"], **partition}
        for topic in described
        for partition in topic.get("partitions", [])
    ]


async def under_replicated(bootstrap: str) -> list[str]:
    """Partitions with fewer in-sync replicas than replicas, as `topic[partition]`."""
    return [
        f"{p['topic']}[{p['partition']}]"
        for p in await partition_state(bootstrap)
        if len(p["isr"]) < len(p["replicas"])  # type: ignore[arg-type]
    ]


_CONTROLLER = re.compile(
    r"^\[([^\]]+)\] INFO Recorded new KRaft controller, from now on will "
    r"use node \S+ \(id: (\d+)",
    re.M,
)


def active_controller(logs: Path) -> int | None:
    """The node that leads the KRaft quorum now, as the brokers last recorded it in their
    server logs (`logs/kafka-<n>-server.log`; the client protocol does not tell: a KRaft
    broker names a random broker as controller); None when no log says."""
    latest: tuple[str, int] | None = None
    for log in logs.glob("kafka-*-server.log"):
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 2_000_000))
            tail = f.read().decode(errors="replace")
        for stamp, node in _CONTROLLER.findall(tail):
            if latest is None or stamp > latest[0]:
                latest = (stamp, int(node))
    return latest[1] if latest else None


async def leaders(bootstrap: str) -> dict[int, int]:
    """node id -> how many partitions it leads (-1: partitions without a leader)."""
    counts: dict[int, int] = {}
    for p in await partition_state(bootstrap):
        leader = int(p["leader"])  # type: ignore[call-overload]
        counts[leader] = counts.get(leader, 0) + 1
    return counts


async def wait_in_sync(bootstrap: str, *, within: float) -> tuple[float, list[str]]:
    """Wait until no partition is under-replicated; (seconds waited, the partitions still
    under-replicated when `within` ran out: empty once caught up)."""
    started = asyncio.get_running_loop().time()
    lagging: list[str] = []
    while asyncio.get_running_loop().time() - started < within:
        try:
            lagging = await under_replicated(bootstrap)
        except Exception as exc:  # a broker restarting: ask again
            lagging = [f"(metadata not available: {type(exc).__name__})"]
        if not lagging:
            break
        await asyncio.sleep(0.5)
    return asyncio.get_running_loop().time() - started, lagging
