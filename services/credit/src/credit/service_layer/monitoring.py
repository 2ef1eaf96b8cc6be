"""The `business-gauges` job: credit's per-chain gauges and the saga watch, from the database.

Every instance runs it and exports the same whole-chain values (dashboards take `max`).
Operations waiting for loyalty are counted in `credit_saga_in_flight_operations`; one that
waits past its deadline is failed by the `operation-deadline` job (`deadline.py`).
"""

from __future__ import annotations

from credit import metrics
from credit.adapters.figures import chain_figures
from servicekit.db import SessionFactory
from servicekit.metrics import set_by_chain


async def refresh_gauges(session_factory: SessionFactory) -> None:
    async with session_factory() as session, session.begin():
        figures = await chain_figures(session)
    set_by_chain(metrics.OPEN_DEBT, figures.chains, figures.open_debt)
    set_by_chain(metrics.OVERDUE_DEBT, figures.chains, figures.overdue_debt)
    set_by_chain(metrics.OVERDUE_CUSTOMERS, figures.chains, figures.overdue_customers)
    set_by_chain(metrics.ADVANCES_HELD, figures.chains, figures.advances)
    metrics.SAGA_IN_FLIGHT.set(figures.in_flight)
