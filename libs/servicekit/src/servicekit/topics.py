"""Creates the system's topics at start-up, and keeps their configuration what the settings say.

Replication follows the cluster: replication factor 3 with `min.insync.replicas=2` on three
brokers or more (every acknowledged write is on two brokers, and one broker may be down), 1 and
1 on a single broker, unless `KAFKA_REPLICATION_FACTOR` / `KAFKA_MIN_INSYNC_REPLICAS` say
otherwise. Producers write with `acks=all`, so `min.insync.replicas` is what an acknowledged
write survives.

Retention is finite (30 days, dead letters 90: `KAFKA_RETENTION_DAYS`,
`KAFKA_DEAD_LETTER_RETENTION_DAYS`): reporting rebuilds from a snapshot of its read models plus
the log after it, not from offset 0. A topic's managed configuration (retention,
`min.insync.replicas`, and any extra config given) is set when it is created and brought back
to the settings at every start when it differs, so changing a setting needs no tool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    LeaderNotAvailableError,
    TopicAlreadyExistsError,
    for_code,
)

from contracts.topics import DAY_MS, DEFAULT_RETENTION_MS, KEEP_FOREVER, RETENTION_MS

log = logging.getLogger(__name__)

#: DescribeConfigs' `config_source` of a value set on the topic itself.
_DYNAMIC_TOPIC_CONFIG = 1


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`: 3 and 2 from three
    brokers up, else 1 and 1 (devstack's `replication_for` says the same for its brokers)."""
    if brokers >= 3:
        return 3, 2
    return 1, 1


def min_insync_for(replication_factor: int) -> int:
    """2 when a topic has three replicas or more (a write survives one broker's loss and one
    broker may be down), else 1."""
    return 2 if replication_factor >= 3 else 1


def days_to_ms(days: float) -> int:
    """A retention in days as `retention.ms` (a negative number of days: kept forever)."""
    return KEEP_FOREVER if days < 0 else int(days * DAY_MS)


def topic_configs(
    retention_ms: int, min_insync_replicas: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The configuration servicekit manages on a topic."""
    return {
        "retention.ms": str(retention_ms),
        "retention.bytes": "-1",  # time decides, never size
        "min.insync.replicas": str(min_insync_replicas),
        **(extra or {}),
    }


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 6,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    retention_ms: int | Mapping[str, int] | None = None,
    extra_configs: Mapping[str, str] | None = None,
    attempts: int = 30,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics that are missing and bring the managed configuration of every one of
    them to what is asked; safe to call from every instance at once.

    `replication_factor` None: 3 on a cluster of three brokers or more, else 1 (counted from the
    cluster's live brokers when a topic is created). `min_insync_replicas` None: 2 for a topic
    with three replicas or more, else 1 (from the topic's own replica count, so a broker that is
    down while a service starts changes nothing). `retention_ms`: one value for all, or per
    topic; None: the contracts' default (30 days, dead letters 90).

    `client_options`: `servicekit.kafkasecurity.client_options` (TLS, SASL) of the admin client.
    """
    wanted = list(topics)
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, client_id="topic-setup", **(client_options or {})
        )
        try:
            await admin.start()
            brokers = len((await admin.describe_cluster())["brokers"])
            shapes = await _shapes(admin, wanted)
            missing = [t for t in wanted if t not in shapes]
            if missing:
                factor = replication_factor or replication_for(brokers)[0]
                try:
                    await _create(
                        admin,
                        missing,
                        partitions,
                        factor,
                        {
                            t: topic_configs(
                                _retention(t, retention_ms),
                                min_insync_replicas or min_insync_for(factor),
                                extra_configs,
                            )
                            for t in missing
                        },
                    )
                    log.info(
                        "created topics %s (%d partitions, replication factor %d)",
                        missing,
                        partitions,
                        factor,
                    )
                except TopicAlreadyExistsError:
                    pass  # another instance was faster: its configuration is checked below
                shapes = await _shapes(admin, wanted)
            for topic, (count, _) in shapes.items():
                if count < partitions:
                    log.warning(
                        "topic %s has %d partitions, KAFKA_TOPIC_PARTITIONS says %d: "
                        "add them in a quiet window (docs/operations.md, Scaling)",
                        topic,
                        count,
                        partitions,
                    )
            desired = {
                topic: topic_configs(
                    _retention(topic, retention_ms),
                    min_insync_replicas or min_insync_for(factor_of),
                    extra_configs,
                )
                for topic, (_, factor_of) in shapes.items()
            }
            await _align_configs(admin, desired)
            return
        except (KafkaError, OSError) as exc:
            if attempt == attempts:
                raise
            log.info(
                "waiting for Kafka to create or configure topics (%s: %s)", type(exc).__name__, exc
            )
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


def _retention(topic: str, retention_ms: int | Mapping[str, int] | None) -> int:
    if isinstance(retention_ms, int):
        return retention_ms
    if retention_ms is not None and topic in retention_ms:
        return retention_ms[topic]
    return RETENTION_MS.get(topic, DEFAULT_RETENTION_MS)


async def _shapes(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, tuple[int, int]]:
    """topic -> (partitions, replicas per partition), for the topics that exist."""
    described = await admin.describe_topics(topics)
    shapes: dict[str, tuple[int, int]] = {}
    for item in described:
        error = item.get("error_code", 0)
        if error == 3:  # UNKNOWN_TOPIC_OR_PARTITION: missing
            continue
        parts = item["partitions"]
        if error or not parts:
            # LEADER_NOT_AVAILABLE and no partitions yet right after creation: the caller
            # tries again rather than take the topic for one with a single replica
            raise (for_code(error) if error else LeaderNotAvailableError)(
                f"topic {item.get('topic')} is not ready"
            )
        shapes[item["topic"]] = (len(parts), max(len(p["replicas"]) for p in parts))
    return shapes


async def _create(
    admin: AIOKafkaAdminClient,
    topics: list[str],
    partitions: int,
    factor: int,
    configs: Mapping[str, Mapping[str, str]],
) -> None:
    response = await admin.create_topics(
        [
            NewTopic(
                name=t,
                num_partitions=partitions,
                replication_factor=factor,
                topic_configs=dict(configs[t]),
            )
            for t in topics
        ]
    )
    for item in response.to_object().get("topic_errors", []):
        error = item.get("error_code", 0)
        if error == 36:  # TOPIC_ALREADY_EXISTS
            continue
        if error:
            message = item.get("error_message") or ""
            raise for_code(error)(f"creating topic {item.get('topic')}: {message}")


async def _align_configs(
    admin: AIOKafkaAdminClient, desired: Mapping[str, Mapping[str, str]]
) -> None:
    """Set the managed configs that differ. AlterConfigs replaces a topic's whole set of
    topic-level configs, so the ones set on it that servicekit does not manage are sent along
    unchanged."""
    if not desired:
        return
    current = await _topic_level_configs(admin, list(desired))
    changes = []
    for topic, wanted in desired.items():
        have = current.get(topic, {})
        differs = {k: v for k, v in wanted.items() if have.get(k) != v}
        if not differs:
            continue
        log.info(
            "updating topic configs of %s: %s",
            topic,
            ", ".join(f"{k} {have.get(k, '(default)')} -> {v}" for k, v in differs.items()),
        )
        changes.append(ConfigResource(ConfigResourceType.TOPIC, topic, {**have, **wanted}))
    if not changes:
        return
    for response in await admin.alter_configs(changes):
        for item in response.to_object().get("resources", []):
            if item.get("error_code"):
                raise for_code(item["error_code"])(
                    f"altering configs of {item.get('resource_name')}: {item.get('error_message')}"
                )


async def _topic_level_configs(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, dict[str, str]]:
    """topic -> the configs set on the topic itself (not broker defaults)."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    )
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object().get("resources", []):
            if resource.get("error_code"):
                raise for_code(resource["error_code"])(
                    f"describing configs of {resource.get('resource_name')}"
                )
            entries: list[dict[str, Any]] = resource.get("config_entries", [])
            out[resource["resource_name"]] = {
                e["config_names"]: e["config_value"]
                for e in entries
                if e.get("config_source") == _DYNAMIC_TOPIC_CONFIG
                and e.get("config_value") is not None
            }
    return out
