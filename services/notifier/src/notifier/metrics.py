"""The notifier's own Prometheus metrics (servicekit exports the consumer, outbox, HTTP ones)."""

from __future__ import annotations

from prometheus_client import Gauge

OPEN_TASKS = Gauge("notifier_open_tasks", "Open reminder tasks of the chain", ["chain_id"])
