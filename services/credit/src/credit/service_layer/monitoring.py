"""The `business-gauges` job: credit's per-chain gauges and the saga watch, from the database.

Every instance runs it and exports the same whole-chain values (dashboards take `max`). A
pending operation waiting for loyalty longer than the saga timeout is counted once in
`credit_saga_timeouts_total` and logged; it keeps waiting (loyalty's answer arrives through
Kafka, only late), and the customer's later commands stay parked behind it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from servicekit.db import SessionFactory
from servicekit.metrics import set_by_chain

from credit import metrics
from credit.adapters.figures import chain_figures, record_saga_timeouts

log = logging.getLogger(__name__)


async def refresh_gauges(
    session_factory: SessionFactory, *, saga_timeout_seconds: float, now: datetime | None = None
) -> None:
    now = now or datetime.now(UTC)
    async with session_factory() as session, session.begin():
        timed_out = await record_saga_timeouts(
            session, older_than=now - timedelta(seconds=saga_timeout_seconds)
        )
        figures = await chain_figures(session)
    for op in timed_out:
        metrics.SAGA_TIMEOUTS.inc()
        log.warning(
            "operation %s has waited %.0f s for loyalty's answer (timeout %.0f s); still waiting",
            op.operation_id,
            (now - op.waiting_since).total_seconds(),
            saga_timeout_seconds,
            extra={"fields": {"chain_id": str(op.chain_id), "operation_id": str(op.operation_id)}},
        )
    set_by_chain(metrics.OPEN_DEBT, figures.chains, figures.open_debt)
    set_by_chain(metrics.OVERDUE_DEBT, figures.chains, figures.overdue_debt)
    set_by_chain(metrics.OVERDUE_CUSTOMERS, figures.chains, figures.overdue_customers)
    set_by_chain(metrics.ADVANCES_HELD, figures.chains, figures.advances)
    metrics.SAGA_IN_FLIGHT.set(figures.in_flight)
