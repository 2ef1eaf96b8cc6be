"""The recovery measurement reads a consumer group's lag from the broker itself (the killed
service's /metrics is gone): end offsets minus committed offsets, over every partition."""

from __future__ import annotations

import secrets

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bench.recovery import GroupLag


async def test_lag_and_committed_offsets_of_a_group_come_from_the_broker(
    kafka_bootstrap_servers: str,
) -> None:
    topic = f"bench-lag-{secrets.token_hex(4)}"
    group = f"bench-group-{secrets.token_hex(4)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    await producer.start()
    try:
        for i in range(9):
            await producer.send_and_wait(topic, b"x", partition=i % 3)
    finally:
        await producer.stop()
    # the group commits 2 of partition 0's 3 messages, nothing on the other partitions
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 2})
    finally:
        await consumer.stop()
    lag = GroupLag(kafka_bootstrap_servers, group, [topic])
    await lag.start()
    try:
        assert sorted(tp.partition for tp in lag.partitions) == [0, 1, 2]
        sample = await lag.sample()
        assert (sample.lag, sample.committed) == (7, 2)
    finally:
        await lag.close()
