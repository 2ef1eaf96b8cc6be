"""Reminder tasks in the database: the customer lock, the overdue view, raising, escalating,
closing and completing tasks, and the task JSON of the API (api.md "Reminder tasks").

Every change runs with the customer's `nt_customers` row locked (`FOR UPDATE`), so handlers,
the scan and staff on several instances never race; the partial unique index on open tasks is
the last guard.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.base import Message
from contracts.enums import TaskClosedReason, TaskOutcome
from contracts.money import format_money, quantize_money
from contracts.notifier.v1 import ReminderTaskClosed, ReminderTaskRaised, TaskSale
from contracts.topics import NOTIFIER_EVENTS
from notifier.adapters.repository import Directory, Mail, OverdueSales, Tasks, Webhooks
from notifier.domain.tasks import DONE, OPEN, OverdueSale, TaskState, days_overdue, revoke_actions
from servicekit.outbox import enqueue_message

#: writes an event to the outbox in the caller's transaction
Emit = Callable[[Message, str], Awaitable[None]]

ZERO = Decimal(0)


def outbox_emitter(session: AsyncSession, correlation_id: uuid.UUID) -> Emit:
    """An `Emit` for work no message caused (the scan, staff through the API)."""

    async def emit(model: Message, key: str) -> None:
        await enqueue_message(
            session,
            NOTIFIER_EVENTS,
            model,
            chain_id=None,
            key=key,
            correlation_id=correlation_id,
        )

    return emit


@dataclass(frozen=True)
class ChainSettings:
    timezone: str = "UTC"
    minor_units: int = 2
    reminder_repeat_days: int = 7
    overdue_discount: str = "keep"


async def chain_settings(session: AsyncSession, chain_id: uuid.UUID) -> ChainSettings:
    row = await Directory(session).chain(chain_id)
    if row is None:  # defaults of api.md until the chain's registration is consumed
        return ChainSettings()
    return ChainSettings(
        row.timezone, row.minor_units, row.reminder_repeat_days, row.overdue_discount
    )


def local_date(moment: datetime, tz: str) -> date:
    return moment.astimezone(ZoneInfo(tz)).date()


#: money as the task list and the mails show it ("12.50")
money = format_money


async def lock_customer(
    session: AsyncSession, chain_id: uuid.UUID, customer_id: uuid.UUID, *, skip_locked: bool = False
) -> bool:
    """Lock the customer's row (creating it if needed); False if skipped because busy."""
    return await Directory(session).lock_customer(chain_id, customer_id, skip_locked=skip_locked)


async def overdue_sales_of(
    session: AsyncSession, customer_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[OverdueSale]]:
    """The live overdue view: sales credit reported overdue that still owe money."""
    rows = await OverdueSales(session).owing(customer_ids)
    out: dict[uuid.UUID, list[OverdueSale]] = {cid: [] for cid in customer_ids}
    for r in rows:
        out[r.customer_id].append(
            OverdueSale(r.sale_id, r.due_date, r.owed, r.discount, r.discount_revoked)
        )
    return out


def _state(row: Any) -> TaskState:
    return TaskState(row.level, row.status, row.raised_at, row.closed_reason)


async def open_task_row(session: AsyncSession, customer_id: uuid.UUID) -> Any:
    return await Tasks(session).open_of(customer_id)


async def last_task_row(session: AsyncSession, customer_id: uuid.UUID) -> Any:
    return await Tasks(session).last_of(customer_id)


async def task_states(
    session: AsyncSession, customer_id: uuid.UUID
) -> tuple[Any, TaskState | None, TaskState | None]:
    open_row = await open_task_row(session, customer_id)
    last_row = await last_task_row(session, customer_id)
    return (
        open_row,
        _state(open_row) if open_row is not None else None,
        _state(last_row) if last_row is not None else None,
    )


def _snapshot(sales: Sequence[OverdueSale], mu: int) -> list[dict[str, str]]:
    return [
        {
            "sale_id": str(s.sale_id),
            "due_date": s.due_date.isoformat(),
            "amount_owed": money(s.amount_owed, mu),
        }
        for s in sales
    ]


async def refresh_snapshot(
    session: AsyncSession, task_id: uuid.UUID, sales: Sequence[OverdueSale], mu: int
) -> None:
    if sales:  # a paid task keeps the sales it was about
        await Tasks(session).update(task_id, sales=_snapshot(sales, mu))


async def _open_task(
    session: AsyncSession,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    level: int,
    now: datetime,
    sales: list[dict[str, str]],
) -> uuid.UUID:
    """A new open task at `level`, about these sales (`_snapshot`); its id."""
    task_id = uuid.uuid4()
    await Tasks(session).insert(
        task_id=task_id,
        chain_id=chain_id,
        customer_id=customer_id,
        level=level,
        status=OPEN,
        created_at=now,
        raised_at=now,
        sales=sales,
    )
    return task_id


def _task_sales(
    sales: Sequence[OverdueSale], today: date, settings: ChainSettings
) -> list[TaskSale]:
    """The sales of a raised task as its event lists them (each at least a day overdue)."""
    return [
        TaskSale(
            sale_id=s.sale_id,
            due_date=s.due_date,
            amount_owed=quantize_money(s.amount_owed, settings.minor_units),
            days_overdue=max(1, days_overdue(s.due_date, today)),
            discount_revocable=bool(revoke_actions([s], settings.overdue_discount)),
        )
        for s in sales
    ]


async def raise_task(
    session: AsyncSession,
    emit: Emit,
    *,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    level: int,
    now: datetime,
    escalate_task_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Open a new task at `level`, or move the open one there; publish and notify the webhook."""
    settings = await chain_settings(session, chain_id)
    sales = (await overdue_sales_of(session, [customer_id]))[customer_id]
    if not sales:
        return None
    snapshot = _snapshot(sales, settings.minor_units)
    if escalate_task_id is None:
        task_id = await _open_task(session, chain_id, customer_id, level, now, snapshot)
        created_at = now
    else:
        task_id = escalate_task_id
        created_at = await Tasks(session).raise_again(
            task_id, level=level, raised_at=now, sales=snapshot
        )
    customer = await Directory(session).customer(customer_id)
    today = local_date(now, settings.timezone)
    event = ReminderTaskRaised(
        task_id=task_id,
        chain_id=chain_id,
        customer_id=customer_id,
        customer_name=customer.name or str(customer_id),
        phone=customer.phone,
        level=level,
        escalated=escalate_task_id is not None,
        overdue_amount=quantize_money(
            sum((s.amount_owed for s in sales), ZERO), settings.minor_units
        ),
        days_overdue=max(1, max(days_overdue(s.due_date, today) for s in sales)),
        sales=_task_sales(sales, today, settings),
        created_at=created_at,
        raised_at=now,
    )
    await emit(event, str(customer_id))
    await enqueue_webhook(session, chain_id, task_id, event, now)
    await enqueue_mail(
        session,
        chain_id,
        task_id,
        level=level,
        re_raised=escalate_task_id is not None or level > 1,
        now=now,
    )
    return task_id


async def close_task(
    session: AsyncSession,
    emit: Emit,
    row: Any,
    *,
    reason: TaskClosedReason,
    now: datetime,
    outcome: TaskOutcome | None = None,
    note: str | None = None,
    completed_by: tuple[uuid.UUID, str] | None = None,
) -> None:
    user_id, user_name = completed_by if completed_by is not None else (None, None)
    await Tasks(session).update(
        row.task_id,
        status=DONE,
        closed_reason=reason.value,
        closed_at=now,
        outcome=outcome,
        note=note,
        completed_by_user_id=user_id,
        completed_by_name=user_name,
    )
    await emit(
        ReminderTaskClosed(
            task_id=row.task_id,
            chain_id=row.chain_id,
            customer_id=row.customer_id,
            level=row.level,
            reason=reason,
            outcome=outcome,
            note=note or None,
            closed_at=now,
        ),
        str(row.customer_id),
    )


async def close_if_paid(
    session: AsyncSession, emit: Emit, customer_id: uuid.UUID, now: datetime
) -> None:
    """After money moved: close the open task if no overdue debt is left, else refresh it."""
    row = await open_task_row(session, customer_id)
    if row is None:
        return
    sales = (await overdue_sales_of(session, [customer_id]))[customer_id]
    if not sales:
        await close_task(session, emit, row, reason=TaskClosedReason.PAID, now=now)
    else:
        settings = await chain_settings(session, row.chain_id)
        await refresh_snapshot(session, row.task_id, sales, settings.minor_units)


# --------------------------------------------------------------------------- webhooks


async def enqueue_webhook(
    session: AsyncSession, chain_id: uuid.UUID, task_id: uuid.UUID, event: Message, now: datetime
) -> None:
    webhooks = Webhooks(session)
    if await webhooks.url(chain_id) is None:
        return
    delivery_id = uuid.uuid4()
    body = json.dumps(
        {
            "delivery_id": str(delivery_id),
            "type": event.TYPE,
            "event": event.model_dump(mode="json"),
        },
        separators=(",", ":"),
    ).encode()
    await webhooks.insert_delivery(
        delivery_id=delivery_id,
        chain_id=chain_id,
        task_id=task_id,
        event_type=event.TYPE,
        body=body,
        next_attempt_at=now,
        created_at=now,
    )


async def enqueue_mail(
    session: AsyncSession,
    chain_id: uuid.UUID,
    task_id: uuid.UUID,
    *,
    level: int,
    re_raised: bool,
    now: datetime,
) -> None:
    """The next reminder digest of the chain lists this task (only when the chain has a
    reminder email): written with the task, so a raised task is never left out."""
    if not await Directory(session).reminder_email(chain_id):
        return
    await Mail(session).insert_item(
        item_id=uuid.uuid4(),
        chain_id=chain_id,
        task_id=task_id,
        level=level,
        re_raised=re_raised,
        raised_at=now,
    )


# --------------------------------------------------------------------------- the API's JSON


#: a sale as a task shows it: (sale_id, due_date, amount_owed)
ShownSale = tuple[uuid.UUID, date, Decimal]


async def task_views(
    session: AsyncSession, rows: Sequence[Any], now: datetime | None = None
) -> list[dict[str, Any]]:
    """The public task JSON; open tasks show the live overdue sales, closed ones their last."""
    moment = now or datetime.now(UTC)
    if not rows:
        return []
    customer_ids = list({r.customer_id for r in rows})
    customers = await Directory(session).customers(customer_ids)
    live = await overdue_sales_of(session, customer_ids)
    chains: dict[uuid.UUID, ChainSettings] = {}
    out = []
    for row in rows:
        if row.chain_id not in chains:
            chains[row.chain_id] = await chain_settings(session, row.chain_id)
        cs = chains[row.chain_id]
        live_sales = live.get(row.customer_id, [])
        customer = customers.get(row.customer_id)
        out.append(_task_view(row, customer, live_sales, cs, moment))
    return out


def _shown_sales(
    row: Any, live_sales: Sequence[OverdueSale], timezone: str, moment: datetime
) -> tuple[list[ShownSale], date]:
    """The sales a task shows and the day their days overdue are counted on: an open task
    still overdue, the live sales today; any other, the sales it was last about, on the day
    it closed."""
    if row.status == OPEN and live_sales:
        shown = [(s.sale_id, s.due_date, s.amount_owed) for s in live_sales]
        return shown, local_date(moment, timezone)
    stored = [
        (uuid.UUID(s["sale_id"]), date.fromisoformat(s["due_date"]), Decimal(s["amount_owed"]))
        for s in row.sales
    ]
    return stored, local_date(row.closed_at or moment, timezone)


def _task_view(
    row: Any,
    customer: Any,
    live_sales: Sequence[OverdueSale],
    cs: ChainSettings,
    moment: datetime,
) -> dict[str, Any]:
    """One task's JSON (`customer`: None while the customer's row has not arrived); its
    actions are those of the live sales the task is about."""
    sales, today = _shown_sales(row, live_sales, cs.timezone, moment)
    in_task = {sid for sid, _, _ in sales}
    return {
        "task_id": str(row.task_id),
        "customer_id": str(row.customer_id),
        "customer_name": customer.name if customer is not None else "",
        "phone": customer.phone if customer is not None else None,
        "level": row.level,
        "status": row.status,
        "overdue_amount": money(sum((a for _, _, a in sales), ZERO), cs.minor_units),
        "days_overdue": max((days_overdue(d, today) for _, d, _ in sales), default=0),
        "sales": [
            {
                "sale_id": str(sid),
                "due_date": d.isoformat(),
                "amount_owed": money(a, cs.minor_units),
            }
            for sid, d, a in sales
        ],
        "created_at": row.created_at.isoformat(),
        "raised_at": row.raised_at.isoformat(),
        "closed_at": row.closed_at.isoformat() if row.closed_at else None,
        "closed_reason": row.closed_reason,
        "outcome": row.outcome,
        "note": row.note,
        "completed_by": {
            "user_id": str(row.completed_by_user_id),
            "name": row.completed_by_name,
        }
        if row.completed_by_user_id is not None
        else None,
        "actions": revoke_actions(
            [s for s in live_sales if s.sale_id in in_task], cs.overdue_discount
        ),
    }
