"""Topic creation against the real Kafka of the run: replication from the cluster's size,
finite retention, and configuration brought back to the settings at the next start."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import DAY_MS
from servicekit.runtime import make_broker
from servicekit.settings import ServiceSettings
from servicekit.testing import unique_topic
from servicekit.topics import ensure_topics, replication_for

pytestmark = pytest.mark.integration


async def _state(bootstrap: str, topic: str) -> tuple[int, int, dict[str, str]]:
    """(brokers in the cluster, replicas of partition 0, topic-level configs)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        described = await admin.describe_topics([topic])
        assert not described[0]["error_code"], described  # ensure_topics waits until it is
        replicas = len(described[0]["partitions"][0]["replicas"])
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries: list[dict[str, Any]] = [
        e for r in responses for res in r.to_object()["resources"] for e in res["config_entries"]
    ]
    configs = {e["config_names"]: e["config_value"] for e in entries if e["config_source"] == 1}
    return brokers, replicas, configs


async def test_topics_get_the_replication_the_cluster_calls_for_and_a_finite_retention(
    kafka_bootstrap_servers: str,
) -> None:
    events, letters = unique_topic("events"), unique_topic("letters")
    await ensure_topics(
        kafka_bootstrap_servers,
        [events, letters],
        partitions=2,
        retention_ms={events: 30 * DAY_MS, letters: 90 * DAY_MS},
    )
    brokers, replicas, configs = await _state(kafka_bootstrap_servers, events)
    factor, min_isr = replication_for(brokers)  # 3 and 2 on a three-broker run, else 1 and 1
    assert replicas == factor
    assert configs["min.insync.replicas"] == str(min_isr)
    assert configs["retention.ms"] == str(30 * DAY_MS)
    assert (await _state(kafka_bootstrap_servers, letters))[2]["retention.ms"] == str(90 * DAY_MS)


async def test_a_topic_whose_configuration_differs_is_set_again_at_the_next_start(
    kafka_bootstrap_servers: str,
) -> None:
    topic = unique_topic("drift")
    await ensure_topics(
        kafka_bootstrap_servers,
        [topic],
        partitions=1,
        retention_ms=-1,
        extra_configs={"max.message.bytes": "2000000"},
    )
    assert (await _state(kafka_bootstrap_servers, topic))[2]["retention.ms"] == "-1"

    # a later release shortens retention; a config servicekit does not manage is kept
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1, retention_ms=7 * DAY_MS)
    configs = (await _state(kafka_bootstrap_servers, topic))[2]
    assert configs["retention.ms"] == str(7 * DAY_MS)
    assert configs["max.message.bytes"] == "2000000"

    # min.insync.replicas follows the topic's own replica count, whatever is set by hand
    await ensure_topics(
        kafka_bootstrap_servers,
        [topic],
        partitions=1,
        retention_ms=7 * DAY_MS,
        min_insync_replicas=1,
    )
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1, retention_ms=7 * DAY_MS)
    _, replicas, configs = await _state(kafka_bootstrap_servers, topic)
    assert configs["min.insync.replicas"] == ("2" if replicas >= 3 else "1")


async def test_a_service_reaches_kafka_through_any_of_several_bootstrap_servers(
    kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cluster's KAFKA_BOOTSTRAP_SERVERS lists every broker; one of them may be down. (FastStream
    # took the whole comma-separated string for one host name.)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"{down},{kafka_bootstrap_servers}")
    broker = make_broker(ServiceSettings(), "bootstrap-test")
    await broker.start()
    try:
        assert await broker.ping(timeout=10.0)
    finally:
        await broker.stop()


async def _fastest_publish(settings: ServiceSettings, topic: str) -> float:
    """The shortest of five acknowledged publishes through the runtime's broker (seconds)."""
    import time

    broker = make_broker(settings, "linger-test")
    await broker.start()
    try:
        await broker.publish(b"warm-up", topic=topic, key=b"k")
        spent = []
        for _ in range(5):
            started = time.perf_counter()
            await broker.publish(b"x", topic=topic, key=b"k")
            spent.append(time.perf_counter() - started)
    finally:
        await broker.stop()
    return min(spent)


async def test_the_runtimes_producer_waits_as_long_as_its_setting_says(
    kafka_bootstrap_servers: str,
) -> None:
    """Every hop of a sale waits for the producer: `<PREFIX>_PRODUCER_LINGER_MS` sets how long
    it gathers records before it sends them (default 0: at once, docs/benchmarks.md "Stop
    29")."""
    from servicekit.testing import unique_topic
    from servicekit.topics import ensure_topics

    topic = unique_topic()
    await ensure_topics(kafka_bootstrap_servers, [topic], partitions=1)
    default = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap_servers)
    assert default.producer_linger_ms == 0
    assert await _fastest_publish(default, topic) < 0.15
    at_once = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap_servers, producer_linger_ms=0)
    assert await _fastest_publish(at_once, topic) < 0.15
    lingering = ServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap_servers, producer_linger_ms=300
    )
    assert await _fastest_publish(lingering, topic) >= 0.29
