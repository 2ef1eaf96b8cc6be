"""Message handlers of the notifier (run by servicekit's consumer in the batch transaction).

Credit tells which sales are overdue (`SaleOverdue`) and how owed amounts change afterwards
(`lines_changed` of every money event, `DiscountRevoked`, `SaleSettled`); master data gives
names, phones and chain settings. Tasks are raised and closed from those facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import TaskClosedReason
from contracts.gateway import v1 as gateway
from contracts.topics import CREDIT_EVENTS, MASTERDATA_EVENTS, NOTIFIER_EVENTS
from notifier.adapters.repository import Directory, OverdueSales
from notifier.domain import tasks as rules
from notifier.domain.tasks import Decision
from notifier.service_layer.tasks import (
    Emit,
    chain_settings,
    close_if_paid,
    close_task,
    lock_customer,
    open_task_row,
    overdue_sales_of,
    raise_task,
    refresh_snapshot,
    task_states,
)
from servicekit.consumer import Consumer, Handler, MessageContext

TOPICS: tuple[str, ...] = (CREDIT_EVENTS, MASTERDATA_EVENTS)


def _emitter(ctx: MessageContext) -> Emit:
    async def emit(model: Message, key: str) -> None:
        await ctx.emit(NOTIFIER_EVENTS, model, key=key)

    return emit


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- master data


async def _upsert_chain(
    ctx: MessageContext,
    chain_id: UUID,
    s: gateway.ChainSettingsSnapshot,
    name: str | None = None,
) -> None:
    values: dict[str, object] = {
        "timezone": s.timezone,
        "minor_units": s.minor_units,
        "reminder_repeat_days": s.reminder_repeat_days,
        "overdue_discount": s.overdue_discount.value,
        "reminder_email": s.reminder_email,
        "currency": s.currency,
    }
    if name is not None:  # only the registration names the chain
        values["name"] = name
    await Directory(ctx.session).upsert_chain(chain_id, values)


async def on_chain_registered(ctx: MessageContext, msg: gateway.ChainRegistered) -> None:
    await _upsert_chain(ctx, msg.chain_id, msg.settings, name=msg.name)


async def on_chain_settings_changed(ctx: MessageContext, msg: gateway.ChainSettingsChanged) -> None:
    await _upsert_chain(ctx, msg.chain_id, msg.settings)


async def _upsert_customer(
    ctx: MessageContext, chain_id: UUID, c: gateway.CustomerSnapshot
) -> None:
    values = {"chain_id": chain_id, "name": c.name, "phone": c.phone}
    await Directory(ctx.session).upsert_customer(c.customer_id, values)


async def on_customer_registered(ctx: MessageContext, msg: gateway.CustomerRegistered) -> None:
    await _upsert_customer(ctx, msg.chain_id, msg.customer)


async def on_customer_updated(ctx: MessageContext, msg: gateway.CustomerUpdated) -> None:
    await _upsert_customer(ctx, msg.chain_id, msg.customer)


# --------------------------------------------------------------------------- credit


async def on_sale_overdue(ctx: MessageContext, msg: credit.SaleOverdue) -> None:
    session = ctx.session
    await lock_customer(session, msg.chain_id, msg.customer_id)
    overdue = OverdueSales(session)
    known = await overdue.is_tracked(msg.chain_id, msg.sale_id)
    overdue_before = bool((await overdue_sales_of(session, [msg.customer_id]))[msg.customer_id])
    if not known:
        # in balance mode a sale may come without lines: its amount stands on line 0
        lines = [(ln.line_no, ln.amount_owed) for ln in msg.lines] or [(0, msg.amount_owed)]
        await overdue.insert_sale(
            lines,
            sale_id=msg.sale_id,
            chain_id=msg.chain_id,
            customer_id=msg.customer_id,
            sold_at=msg.sold_at,
            due_date=msg.due_date,
            discount=msg.discount,
            discount_revoked=msg.discount_revoked,
        )
    elif msg.discount_revoked:
        await overdue.mark_discount_revoked(msg.chain_id, msg.sale_id)
    open_row, open_state, last_state = await task_states(session, msg.customer_id)
    outcome = rules.on_sale_overdue(
        sale_is_new=not known,
        open_task=open_state,
        last_task=last_state,
        overdue_before=overdue_before,
    )
    if outcome.decision is Decision.REFRESH_OPEN:
        settings = await chain_settings(session, msg.chain_id)
        sales = (await overdue_sales_of(session, [msg.customer_id]))[msg.customer_id]
        await refresh_snapshot(session, open_row.task_id, sales, settings.minor_units)
    elif outcome.decision is Decision.OPEN_NEW:
        await raise_task(
            session,
            _emitter(ctx),
            chain_id=msg.chain_id,
            customer_id=msg.customer_id,
            level=outcome.level,
            now=_now(),
        )


async def _apply_owed(
    ctx: MessageContext, chain_id: UUID, customer_id: UUID, changes: Iterable[credit.LineOwedChange]
) -> None:
    """Owed amounts after a money event, for the sales we follow; then maybe close the task."""
    changes = list(changes)
    session = ctx.session
    await lock_customer(session, chain_id, customer_id)
    overdue = OverdueSales(session)
    tracked = await overdue.tracked_of(chain_id, {c.sale_id for c in changes}) if changes else set()
    for change in changes:
        if change.sale_id not in tracked:
            continue
        # a balance-mode sale followed as one amount: a line change replaces that amount
        await overdue.set_owed(chain_id, change.sale_id, change.line_no, change.owed_after)
    await close_if_paid(session, _emitter(ctx), customer_id, _now())


def _pays_no_older_sale(msg: credit.SaleCompleted) -> bool:
    """Only older sales a sale's kept change paid concern us: the sale's own lines (what it
    left owed) are of a sale credit has not reported overdue yet, which no task follows.
    Without older sales (most sales) nothing any task shows changed: the consumer passes the
    sale over (`IGNORED`) with no inbox row and no transaction."""
    return msg.customer_id is None or all(c.sale_id == msg.sale_id for c in msg.lines_changed)


async def on_sale_completed(ctx: MessageContext, msg: credit.SaleCompleted) -> None:
    """A sale whose kept change paid older sales (`_pays_no_older_sale` passes the others
    over): their owed amounts, then maybe the task closes."""
    if _pays_no_older_sale(msg):  # the consumer passes these over; a handler called directly
        return
    assert msg.customer_id is not None  # a sale without a customer pays no older sale
    older = [c for c in msg.lines_changed if c.sale_id != msg.sale_id]
    await _apply_owed(ctx, msg.chain_id, msg.customer_id, older)


async def on_debt_payment(ctx: MessageContext, msg: credit.DebtPaymentRecorded) -> None:
    await _apply_owed(ctx, msg.chain_id, msg.customer_id, msg.lines_changed)


async def on_advance(ctx: MessageContext, msg: credit.AdvanceRecorded) -> None:
    await _apply_owed(ctx, msg.chain_id, msg.customer_id, msg.lines_changed)


async def on_return(ctx: MessageContext, msg: credit.ReturnRecorded) -> None:
    if msg.customer_id is not None:
        await _apply_owed(ctx, msg.chain_id, msg.customer_id, msg.lines_changed)


async def on_discount_revoked(ctx: MessageContext, msg: credit.DiscountRevoked) -> None:
    await OverdueSales(ctx.session).mark_discount_revoked(msg.chain_id, msg.sale_id)
    await _apply_owed(ctx, msg.chain_id, msg.customer_id, msg.lines_changed)


async def on_sale_settled(ctx: MessageContext, msg: credit.SaleSettled) -> None:
    session = ctx.session
    await lock_customer(session, msg.chain_id, msg.customer_id)
    overdue = OverdueSales(session)
    settled = [msg.sale_id]
    if msg.customer_overdue_amount == 0:
        # credit says no overdue debt is left: whatever we still follow is paid too
        settled = await overdue.sale_ids_of_customer(msg.customer_id)
    await overdue.mark_settled(msg.chain_id, settled)
    emit = _emitter(ctx)
    row = await open_task_row(session, msg.customer_id)
    if row is not None and msg.customer_overdue_amount == 0:
        await close_task(session, emit, row, reason=TaskClosedReason.PAID, now=_now())
    else:
        await close_if_paid(session, emit, msg.customer_id, _now())


#: messages of handled models that change nothing here, passed over without a transaction
IGNORED: dict[type[BaseModel], Callable[[Any], bool]] = {
    credit.SaleCompleted: _pays_no_older_sale,
}

HANDLERS: dict[type[BaseModel], Handler] = {
    gateway.ChainRegistered: on_chain_registered,
    gateway.ChainSettingsChanged: on_chain_settings_changed,
    gateway.CustomerRegistered: on_customer_registered,
    gateway.CustomerUpdated: on_customer_updated,
    credit.SaleOverdue: on_sale_overdue,
    credit.SaleCompleted: on_sale_completed,
    credit.DebtPaymentRecorded: on_debt_payment,
    credit.AdvanceRecorded: on_advance,
    credit.ReturnRecorded: on_return,
    credit.DiscountRevoked: on_discount_revoked,
    credit.SaleSettled: on_sale_settled,
}


def make_consumer(name: str = "notifier") -> Consumer:
    return Consumer(name=name, topics=list(TOPICS), handlers=dict(HANDLERS), ignore=dict(IGNORED))
