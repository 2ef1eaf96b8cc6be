"""One Kafka version everywhere: the Kafka of the testcontainers fallback is the one devstack
runs (libs/devstack/kafka/pom.xml), as docker-compose.yml's is (tests/deploy/test_compose.py)."""

from __future__ import annotations

from devstack import kafka_version
from servicekit.testing import KAFKA_IMAGE


def test_the_testcontainers_kafka_is_the_version_devstack_runs() -> None:
    assert KAFKA_IMAGE.removeprefix("apache/kafka:") == kafka_version()
