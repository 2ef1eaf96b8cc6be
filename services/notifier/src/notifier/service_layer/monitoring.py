"""The `business-gauges` job: open reminder tasks per chain (the task list's index serves it).

Every instance exports the same whole-chain value (dashboards take `max`); a chain without
open tasks exports 0.
"""

from __future__ import annotations

import sqlalchemy as sa

from notifier import metrics
from notifier.adapters import tables as t
from notifier.domain.tasks import OPEN
from servicekit.db import SessionFactory
from servicekit.metrics import set_by_chain


async def refresh_gauges(session_factory: SessionFactory) -> None:
    async with session_factory() as session, session.begin():
        chains = set((await session.execute(sa.select(t.chains.c.chain_id))).scalars())
        rows = (
            await session.execute(
                sa.select(t.tasks.c.chain_id, sa.func.count())
                .where(t.tasks.c.status == OPEN)
                .group_by(t.tasks.c.chain_id)
            )
        ).all()
    set_by_chain(metrics.OPEN_TASKS, chains, {r[0]: r[1] for r in rows})
