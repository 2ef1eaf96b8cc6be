"""The `business-gauges` job: open reminder tasks per chain (the task list's index serves it).

Every instance exports the same whole-chain value (dashboards take `max`); a chain without
open tasks exports 0.
"""

from __future__ import annotations

from notifier import metrics
from notifier.adapters.repository import Directory, Tasks
from servicekit.db import SessionFactory
from servicekit.metrics import set_by_chain


async def refresh_gauges(session_factory: SessionFactory) -> None:
    async with session_factory() as session, session.begin():
        chains = await Directory(session).chain_ids()
        open_tasks = await Tasks(session).open_per_chain()
    set_by_chain(metrics.OPEN_TASKS, chains, open_tasks)
