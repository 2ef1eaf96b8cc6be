"""The reminder digest job: every run gathers the chain's new and re-raised tasks into ONE
message and sends the digests that are due, retrying with back-off like webhook deliveries.

Why it neither loses nor repeats a digest:
* A task raised for a chain with a reminder email writes an `nt_mail_items` row in the
  transaction that raises it (`tasks.enqueue_mail`): no raised task is left out.
* Composing takes the chain's row lock and, in one transaction, writes the digest (subject,
  text, HTML and Message-ID fixed once) and marks its items as taken: every item is in exactly
  one digest, and one run makes one message per chain.
* Sending holds the digest's row lock (`FOR UPDATE SKIP LOCKED`) through the SMTP conversation
  and commits `sent` right after the server's acceptance, one digest per transaction: two
  instances never send the same digest. Only a crash between the server's "250 accepted" and
  that commit sends it again on the next try, with the same Message-ID (SMTP has no
  two-phase commit; mail clients show a message with a Message-ID already seen once).
* A failed try is retried after `mail_backoff_seconds`, doubled each time up to
  `mail_backoff_max_seconds`; after `mail_max_attempts` the digest is `dead` (kept, logged).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notifier import metrics
from notifier.adapters.mailer import SEND_ERRORS, describe
from notifier.adapters.repository import Directory, Mail, Tasks
from notifier.config import Settings
from notifier.domain.mail import DigestTask, render_digest
from notifier.domain.tasks import backoff_seconds
from notifier.service_layer.tasks import task_views
from servicekit.db import SessionFactory

log = logging.getLogger(__name__)

#: sends one message or raises one of `adapters.mailer.SEND_ERRORS`
Send = Callable[[EmailMessage], Awaitable[None]]


def _now() -> datetime:
    return datetime.now(UTC)


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip(" >") or "localhost"


async def _compose_for_chain(
    session: AsyncSession, settings: Settings, chain: Any, now: datetime
) -> bool:
    """One digest of every waiting item of the chain; False when nothing was left to say."""
    mail = Mail(session)
    items = await mail.waiting_items(chain.chain_id)
    if not items:
        return False
    digest_id = uuid.uuid4()
    # a task raised then re-raised before this run is listed once, at its latest level
    latest: dict[uuid.UUID, Any] = {}
    for item in items:
        latest[item.task_id] = item
    rows = await Tasks(session).open_of_items(list(latest))
    # every item is taken now, also those of tasks closed meanwhile (paid before the run:
    # nobody needs to call)
    await mail.take_items([i.item_id for i in items], digest_id)
    if not rows:
        return False
    views = await task_views(session, rows, now)
    tasks = [
        DigestTask(
            task_id=view["task_id"],
            customer_name=view["customer_name"],
            phone=view["phone"],
            level=view["level"],
            overdue_amount=view["overdue_amount"],
            days_overdue=view["days_overdue"],
            sales=len(view["sales"]),
            re_raised=latest[uuid.UUID(view["task_id"])].re_raised,
        )
        for view in views
    ]
    digest = render_digest(
        tasks,
        chain_name=chain.name or "",
        currency=chain.currency or "",
        backoffice_url=settings.backoffice_url,
    )
    await mail.insert_digest(
        digest_id=digest_id,
        chain_id=chain.chain_id,
        message_id=f"<{digest_id}@{_domain(settings.smtp_from)}>",
        subject=digest.subject,
        body_text=digest.text,
        body_html=digest.html,
        tasks=len(tasks),
        next_attempt_at=now,
        created_at=now,
    )
    return True


async def compose_digests(
    session_factory: SessionFactory, settings: Settings, now: datetime | None = None
) -> int:
    """One digest per chain with waiting items; returns how many were composed."""
    moment = now or _now()
    async with session_factory() as session:
        chain_ids = await Mail(session).chains_waiting()
    composed = 0
    for chain_id in chain_ids:
        async with session_factory() as session, session.begin():
            # another instance composing this chain right now takes it this run
            chain = await Directory(session).lock_chain_or_skip(chain_id)
            if chain is None:
                continue
            composed += await _compose_for_chain(session, settings, chain, moment)
    return composed


def build_message(digest: Any, sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = digest.subject
    message["Message-ID"] = digest.message_id
    message["Date"] = format_datetime(digest.created_at)
    message.set_content(digest.body_text)
    message.add_alternative(digest.body_html, subtype="html")
    return message


async def send_digests(
    session_factory: SessionFactory,
    settings: Settings,
    send: Send,
    now: datetime | None = None,
) -> int:
    """Try every due digest once, one per transaction; returns how many were tried."""
    moment = now or _now()
    tried = 0
    while tried < settings.mail_batch_size:
        async with session_factory() as session, session.begin():
            mail = Mail(session)
            digest = await mail.claim_due_digest(moment)
            if digest is None:
                break
            tried += 1
            recipient = await Directory(session).reminder_email(digest.chain_id)
            if not recipient:  # the chain turned reminder mail off meanwhile
                await mail.update_digest(digest.digest_id, status="cancelled")
                continue
            attempts = digest.attempts + 1
            try:
                await send(build_message(digest, settings.smtp_from, recipient))
            except SEND_ERRORS as exc:
                await _failed(session, settings, digest, attempts, describe(exc), moment)
                continue
            await mail.update_digest(
                digest.digest_id,
                status="sent",
                attempts=attempts,
                sent_at=_now(),
                sent_to=recipient,
                last_error=None,
            )
            metrics.MAIL_DIGESTS.labels("sent").inc()
    return tried


async def _failed(
    session: AsyncSession,
    settings: Settings,
    digest: Any,
    attempts: int,
    error: str,
    moment: datetime,
) -> None:
    mail = Mail(session)
    if attempts >= settings.mail_max_attempts:
        log.warning(
            "reminder digest %s of chain %s given up after %d tries: %s",
            digest.digest_id,
            digest.chain_id,
            attempts,
            error,
        )
        await mail.update_digest(
            digest.digest_id, status="dead", attempts=attempts, last_error=error
        )
        metrics.MAIL_DIGESTS.labels("dead").inc()
        return
    delay = backoff_seconds(
        attempts, settings.mail_backoff_seconds, settings.mail_backoff_max_seconds
    )
    log.info(
        "reminder digest %s: try %d failed (%s); next in %.0f s",
        digest.digest_id,
        attempts,
        error,
        delay,
    )
    await mail.update_digest(
        digest.digest_id,
        attempts=attempts,
        last_error=error,
        next_attempt_at=moment + timedelta(seconds=delay),
    )
    metrics.MAIL_DIGESTS.labels("failed").inc()


async def mail_once(
    session_factory: SessionFactory,
    settings: Settings,
    send: Send,
    now: datetime | None = None,
) -> tuple[int, int]:
    """One run: compose the chains' digests, then send the due ones. (composed, tried)"""
    composed = await compose_digests(session_factory, settings, now)
    tried = await send_digests(session_factory, settings, send, now)
    return composed, tried
