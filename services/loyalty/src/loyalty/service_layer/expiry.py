"""The expiry job: records the expiry of accruals older than the chain's ``bonus_expiry_days``.

Each customer is handled in a short transaction of its own under the customer's row lock
(``SKIP LOCKED``: a customer busy in a consumer is left for the next round, and that
consumer records due expiries itself before applying its operation). A lot that expired has
nothing left, and a unique index allows one expiry per lot, so every expiry is recorded exactly
once however many instances run the job.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID, uuid4

from contracts.topics import LOYALTY_EVENTS
from loyalty import metrics
from loyalty.adapters import repository as repo
from loyalty.service_layer.handlers import movement_event
from servicekit.db import SessionFactory
from servicekit.outbox import enqueue_message

log = logging.getLogger(__name__)


async def expire_due_bonuses(
    session_factory: SessionFactory, *, now: datetime, batch_size: int = 500
) -> int:
    """One run: every customer with a lot past its expiry; returns how many lots expired."""
    run_id = uuid4()  # the correlation id of every event of this run
    done: set[tuple[UUID, UUID]] = set()
    expired = 0
    while True:
        async with session_factory() as session:
            found = await repo.customers_with_expired_lots(session, now, batch_size)
        todo = [(chain, customer) for chain, customer, _ in found if (chain, customer) not in done]
        if not todo:
            break
        for chain_id, customer_id in todo:
            done.add((chain_id, customer_id))
            expired += await _expire_customer(session_factory, chain_id, customer_id, now, run_id)
    if expired:
        log.info("expired %d bonus lots", expired)
    return expired


async def _expire_customer(
    session_factory: SessionFactory,
    chain_id: UUID,
    customer_id: UUID,
    now: datetime,
    run_id: UUID,
) -> int:
    async with session_factory() as session, session.begin():
        chain = await repo.get_chain_settings(session, chain_id)
        if chain is None or chain.bonus_expiry_days is None:
            return 0
        account = await repo.load_account(
            session, chain_id, customer_id, minor_units=chain.minor_units, skip_locked=True
        )
        if account is None:
            return 0  # busy: its operation expires what is due, or the next run does
        movements = account.expire_due(now, chain.bonus_expiry_days)
        if not movements:
            return 0
        await repo.save_account(session, chain_id, account)
        for m in movements:
            await enqueue_message(
                session,
                LOYALTY_EVENTS,
                movement_event(chain_id, customer_id, m),
                chain_id=chain_id,
                key=str(customer_id),
                correlation_id=run_id,
            )
        metrics.EXPIRED_LOTS.inc(len(movements))
        return len(movements)
