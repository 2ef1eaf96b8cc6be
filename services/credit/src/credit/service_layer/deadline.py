"""The `operation-deadline` job: an operation that waited for loyalty too long fails.

Every pending operation (credit wrote its entries and asked loyalty, `ApplyBonuses`) has a
deadline, `CREDIT_OPERATION_DEADLINE_SECONDS` after credit wrote it. Past it, the operation is
ended as any permanent failure is (`handlers.fail_operation`): voided, refused as
`operation_failed` (the till's `202` resolves to that `422`), loyalty asked to undo whatever it
applied of it when the command or the answer arrives after all, and the customer's parked
commands released in order. A late answer then finds nothing pending and changes nothing.

An instance counts the deadline from its own start as well: right after a restart the answers
that arrived meanwhile are still waiting in Kafka, and the consumer gets a whole deadline to
read them before the operations they answer are given up.

Every instance runs the job; each operation is failed under its customer's row lock (`SKIP
LOCKED`: a customer busy in a consumer batch is looked at next round), and once (it is no
longer pending afterwards).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from credit.adapters.repository import Repository
from credit.service_layer.emitter import Emitter
from credit.service_layer.handlers import drain_parked, fail_operation
from servicekit.db import SessionFactory

log = logging.getLogger(__name__)


async def expire_operations(
    session_factory: SessionFactory,
    *,
    deadline_seconds: float,
    watching_since: datetime,
    now: datetime | None = None,
) -> int:
    """Fail every operation pending since before the deadline; returns how many."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=deadline_seconds)
    if watching_since > cutoff:
        return 0  # this instance has not yet watched for a whole deadline
    async with session_factory() as session, session.begin():
        overdue = await Repository(session).pending_since_before(cutoff)
    failed = 0
    for chain_id, operation_id, customer_id in overdue:
        async with session_factory() as session, session.begin():
            repo = Repository(session)
            row = await repo.lock_customer(customer_id, chain_id, skip_locked=True)
            if row is None or row.in_flight != operation_id:
                continue  # busy right now, or answered meanwhile
            op = await repo.pending_operation(chain_id, operation_id)
            if op is None or op.created_at >= cutoff:
                continue
            emitter = Emitter(session, correlation_id=op.correlation_id, causation_id=None)
            waited = (now - op.created_at).total_seconds()
            await fail_operation(
                repo,
                emitter,
                op,
                reason="deadline",
                detail=f"no answer from loyalty within {deadline_seconds:g} s "
                f"(waited {waited:.0f} s)",
            )
            await drain_parked(repo, customer_id, chain_id, emitter, clear=True)
            failed += 1
    return failed
