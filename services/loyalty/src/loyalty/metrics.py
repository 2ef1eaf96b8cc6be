"""Loyalty's own Prometheus metrics (servicekit exports the consumer, outbox and HTTP ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPERATIONS = Counter(
    "loyalty_bonus_operations_total",
    "ApplyBonuses operations by outcome (applied, refused, repeated), and voided ones",
    ["outcome"],
)
CANCELLATIONS = Counter(
    "loyalty_accrual_cancellations_total", "Payments whose accrual the back office cancelled"
)
EXPIRED_LOTS = Counter(
    "loyalty_bonus_lots_expired_total", "Accruals or restorations that expired unspent"
)
BONUS_LIABILITY = Gauge(
    "loyalty_bonus_liability",
    "Outstanding (unspent, unexpired) bonus balance of the chain's customers, in currency",
    ["chain_id"],
)
