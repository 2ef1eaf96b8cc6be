"""The `business-gauges` job: the bonus liability per chain, read from the balance projection.

Every instance exports the same whole-chain value (dashboards take `max`); a chain whose
customers hold no bonus exports 0.
"""

from __future__ import annotations

from loyalty import metrics
from loyalty.adapters.repository import bonus_liability
from servicekit.db import SessionFactory
from servicekit.metrics import set_by_chain


async def refresh_gauges(session_factory: SessionFactory) -> None:
    async with session_factory() as session, session.begin():
        chains, liability = await bonus_liability(session)
    set_by_chain(metrics.BONUS_LIABILITY, chains, liability)
