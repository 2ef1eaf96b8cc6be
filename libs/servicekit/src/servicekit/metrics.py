"""Prometheus metrics that every service exports (consumers, outbox, HTTP), in one registry.

Names follow Prometheus conventions: base units in names, `_total` counters, bounded labels
(never a customer id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter(
    "messages_consumed_total", "Messages received by a consumer", ["consumer", "topic"]
)
MESSAGES_PROCESSED = Counter(
    "messages_processed_total", "Messages whose effect was committed", ["consumer", "topic"]
)
MESSAGES_DUPLICATE = Counter(
    "messages_duplicate_total",
    "Redelivered messages skipped because the inbox had them",
    ["consumer", "topic"],
)
MESSAGES_SKIPPED = Counter(
    "messages_skipped_total",
    "Messages of a registered type the consumer has no handler for: nothing applied, no inbox row",
    ["consumer", "topic"],
)
MESSAGES_FAILED = Counter(
    "messages_failed_total",
    "Batches or messages that failed and will be redelivered",
    ["consumer", "topic"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "messages_dead_lettered_total", "Messages sent to the dead-letter topic", ["consumer", "topic"]
)
MESSAGES_REDRIVEN = Counter(
    "messages_redriven_total",
    "Re-driven dead letters a consumer received (python -m servicekit.deadletters redrive)",
    ["consumer", "topic"],
)
MESSAGE_PROCESSING_SECONDS = Histogram(
    "message_processing_seconds",
    "Time to process one consumed batch, per message",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_BATCH_MESSAGES = Histogram(
    "consumer_batch_messages",
    "Records per batch a consumer processed (what one poll returned): per-batch costs (the "
    "transaction, the statements) are shared by that many messages",
    ["consumer"],
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 500),
)
MESSAGE_DELIVERY_SECONDS = Histogram(
    "message_delivery_seconds",
    "From when a handled message was made (its envelope's occurred_at, in the transaction "
    "that wrote it to the outbox) to the start of the consumer's batch: that transaction's "
    "commit, the outbox relay, Kafka and the wait for the consumer (one hop of an operation)",
    ["consumer", "topic"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "consumer_lag_messages",
    "Messages on the partition not yet consumed (high watermark - position)",
    ["consumer", "topic", "partition"],
)
CONSUMER_RESTARTS = Counter(
    "consumer_restarts_total",
    "Subscribers restarted by the watchdog because their Kafka client stopped reaching the broker",
    ["consumer"],
)
OUTBOX_BACKLOG = Gauge("outbox_backlog_messages", "Unsent rows in the service's outbox")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox row (0 when none)"
)
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox rows published to Kafka", ["topic"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures_total", "Failed attempts to publish outbox rows"
)
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10),
)
JOB_RUNS = Counter("job_runs_total", "Periodic job runs", ["job_name", "outcome"])
OPERATIONS_FAILED = Counter(
    "operations_failed_total",
    "Till and back-office operations that failed for good and were refused as operation_failed"
    " (what they had pending voided); `reason`: deadline, dead_letter, parked_command",
    ["service", "kind", "reason"],
)


def set_by_chain(
    gauge: Gauge, chain_ids: Iterable[object], values: Mapping[Any, Decimal | int | float]
) -> None:
    """Set a business gauge labelled `chain_id` for every known chain.

    A chain missing from `values` (nothing open) gets 0 rather than no series, so dashboards and
    alerts see it; money is exported as a plain number in the currency's major unit.
    """
    for chain_id in {*chain_ids, *values}:
        gauge.labels(chain_id=str(chain_id)).set(float(values.get(chain_id, 0)))
