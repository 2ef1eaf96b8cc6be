"""Creates the system's topics at start-up with the partition count and retention they need.

Event topics keep their messages forever (`retention.ms=-1`) so that reporting can rebuild its
read models from the beginning of the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    attempts: int = 30,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics that are missing; safe to call from every instance at once.

    `client_options`: `servicekit.kafkasecurity.client_options` (TLS, SASL) of the admin client.
    """
    wanted = list(topics)
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, client_id="topic-setup", **(client_options or {})
        )
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in wanted if t not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [
                            NewTopic(
                                name=t,
                                num_partitions=partitions,
                                replication_factor=replication_factor,
                                topic_configs={"retention.ms": "-1", "retention.bytes": "-1"},
                            )
                            for t in missing
                        ]
                    )
                    log.info("created topics %s", missing)
                except TopicAlreadyExistsError:
                    pass
            return
        except (KafkaError, OSError) as exc:
            if attempt == attempts:
                raise
            log.info("waiting for Kafka to create topics (%s)", type(exc).__name__)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()
