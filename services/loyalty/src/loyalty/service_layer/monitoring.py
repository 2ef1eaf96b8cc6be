"""The `business-gauges` job: the bonus liability per chain, read from the balance projection.

Every instance exports the same whole-chain value (dashboards take `max`); a chain whose
customers hold no bonus exports 0.
"""

from __future__ import annotations

import sqlalchemy as sa

from loyalty import metrics
from loyalty.adapters import tables as t
from servicekit.db import SessionFactory
from servicekit.metrics import set_by_chain


async def refresh_gauges(session_factory: SessionFactory) -> None:
    async with session_factory() as session, session.begin():
        chains = set((await session.execute(sa.select(t.chain_settings.c.chain_id))).scalars())
        rows = (
            await session.execute(
                sa.select(t.customer_bonus.c.chain_id, sa.func.sum(t.customer_bonus.c.balance))
                .group_by(t.customer_bonus.c.chain_id)
            )
        ).all()
    set_by_chain(metrics.BONUS_LIABILITY, chains, {r[0]: r[1] for r in rows})
