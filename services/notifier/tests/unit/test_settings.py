"""The notifier's settings: its consumer is off a sale's critical path, so it lets Kafka gather
batches (its tasks and webhooks lag up to that much more; docs/architecture.md)."""

from __future__ import annotations

import pytest

from notifier.config import Settings


def test_the_projection_lets_kafka_gather_a_batch_for_50_ms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFIER_CONSUMER_FETCH_WAIT_MS", raising=False)
    assert Settings().consumer_fetch_wait_ms == 50
    monkeypatch.setenv("NOTIFIER_CONSUMER_FETCH_WAIT_MS", "0")
    assert Settings().consumer_fetch_wait_ms == 0
