"""Credit's own Prometheus metrics (servicekit exports the consumer, outbox and HTTP ones).

Names and labels are what deploy/ (dashboards, alerts) and docs/operations.md use. The business
gauges are whole-chain values read from the database by the `business-gauges` job, identical
on every instance; money in the chain's currency, major unit. Failed operations are counted in
servicekit's `operations_failed_total` (shared with loyalty).
"""

from __future__ import annotations

from prometheus_client import Gauge

OPEN_DEBT = Gauge(
    "credit_open_debt", "Open (unpaid) debt of the chain's customers, in currency", ["chain_id"]
)
OVERDUE_DEBT = Gauge(
    "credit_overdue_debt", "The part of the open debt that is overdue, in currency", ["chain_id"]
)
OVERDUE_CUSTOMERS = Gauge(
    "credit_overdue_customers", "Customers of the chain with overdue debt", ["chain_id"]
)
ADVANCES_HELD = Gauge(
    "credit_advances_held", "Advances the chain's customers hold (owed to them)", ["chain_id"]
)
SAGA_IN_FLIGHT = Gauge(
    "credit_saga_in_flight_operations", "Pending operations waiting for loyalty's answer"
)
