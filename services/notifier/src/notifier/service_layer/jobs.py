"""Periodic work: the re-raise scan, and the webhook deliveries with retries and dead letters.

Both are safe with several instances: the scan takes each customer's row with
`FOR UPDATE SKIP LOCKED` (a customer busy elsewhere is done by that instance or the next
scan); deliveries are claimed the same way, one transaction per batch.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from notifier.adapters.repository import OverdueSales, Webhooks
from notifier.adapters.webhook_http import Resolver, post_signed, resolve
from notifier.config import Settings
from notifier.domain import tasks as rules
from notifier.domain.tasks import Decision, backoff_seconds
from notifier.service_layer.tasks import (
    chain_settings,
    lock_customer,
    outbox_emitter,
    overdue_sales_of,
    raise_task,
    task_states,
)
from servicekit.db import SessionFactory

log = logging.getLogger(__name__)


async def scan_once(session_factory: SessionFactory, now: datetime | None = None) -> int:
    """Re-raise reminders of customers still overdue; returns how many tasks were raised."""
    moment = now or datetime.now(UTC)
    async with session_factory() as session:
        candidates = await OverdueSales(session).owing_customers()
    raised = 0
    run_id = uuid.uuid4()
    for chain_id, customer_id in candidates:
        async with session_factory() as session, session.begin():
            if not await lock_customer(session, chain_id, customer_id, skip_locked=True):
                continue
            still = bool((await overdue_sales_of(session, [customer_id]))[customer_id])
            open_row, open_state, last_state = await task_states(session, customer_id)
            settings = await chain_settings(session, chain_id)
            outcome = rules.on_scan(
                open_task=open_state,
                last_task=last_state,
                still_overdue=still,
                now=moment,
                repeat_days=settings.reminder_repeat_days,
            )
            if outcome.decision is Decision.NOTHING:
                continue
            await raise_task(
                session,
                outbox_emitter(session, run_id),
                chain_id=chain_id,
                customer_id=customer_id,
                level=outcome.level,
                now=moment,
                escalate_task_id=open_row.task_id
                if outcome.decision is Decision.ESCALATE
                else None,
            )
            raised += 1
    return raised


async def deliver_once(
    session_factory: SessionFactory,
    settings: Settings,
    client: httpx.AsyncClient,
    now: datetime | None = None,
    resolver: Resolver = resolve,
) -> int:
    """Try every due webhook delivery once; returns how many were attempted. The URL is
    checked again before each try (`adapters.webhook_http`): a refused destination is a failed
    try like any other, retried with back-off and dead-lettered after the last one."""
    moment = now or datetime.now(UTC)
    async with session_factory() as session, session.begin():
        webhooks = Webhooks(session)
        due = await webhooks.claim_due(moment, settings.webhook_batch_size)
        for row in due:
            await _deliver(webhooks, row, settings, client, moment, resolver)
    return len(due)


async def _deliver(
    webhooks: Webhooks,
    row: Any,
    settings: Settings,
    client: httpx.AsyncClient,
    moment: datetime,
    resolver: Resolver,
) -> None:
    """One try of one delivery: cancelled when the chain removed its webhook meanwhile, else
    posted and recorded as delivered or failed."""
    hook = await webhooks.url_and_secret(row.chain_id)
    if hook is None:
        await webhooks.update_delivery(row.delivery_id, status="cancelled")
        return
    error = await post_signed(
        client,
        hook.url,
        hook.secret,
        str(row.delivery_id),
        row.body,
        timeout_seconds=settings.webhook_timeout_seconds,
        allow_private=settings.webhook_allow_private,
        resolver=resolver,
    )
    attempts = row.attempts + 1
    if error is None:
        await webhooks.update_delivery(
            row.delivery_id, status="delivered", attempts=attempts, delivered_at=moment
        )
    elif attempts >= settings.webhook_max_attempts:
        await _dead(webhooks, row, hook.url, attempts, error, moment)
    else:
        delay = backoff_seconds(
            attempts, settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds
        )
        await webhooks.update_delivery(
            row.delivery_id,
            attempts=attempts,
            last_error=error,
            next_attempt_at=moment + timedelta(seconds=delay),
        )


async def _dead(
    webhooks: Webhooks, row: Any, url: str, attempts: int, error: str, moment: datetime
) -> None:
    """The last try failed: the delivery is dead, and a dead letter keeps what was sent."""
    log.warning("webhook delivery %s dead after %d tries: %s", row.delivery_id, attempts, error)
    await webhooks.update_delivery(
        row.delivery_id, status="dead", attempts=attempts, last_error=error
    )
    await webhooks.insert_dead_letter(
        delivery_id=row.delivery_id,
        chain_id=row.chain_id,
        task_id=row.task_id,
        url=url,
        body=row.body,
        attempts=attempts,
        last_error=error,
        failed_at=moment,
    )
