"""The notifier's own Prometheus metrics (servicekit exports the consumer, outbox, HTTP ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPEN_TASKS = Gauge("notifier_open_tasks", "Open reminder tasks of the chain", ["chain_id"])

MAIL_DIGESTS = Counter(
    "notifier_mail_digests_total",
    "Tries to send a reminder digest: sent, failed (retried later) or dead (given up)",
    ["result"],
)
for _result in ("sent", "failed", "dead"):  # every series exists from the start, at 0
    MAIL_DIGESTS.labels(_result)
