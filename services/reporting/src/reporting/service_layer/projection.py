"""The read-model projection: one handler per consumed message, run by servicekit's consumer
inside the batch transaction (the inbox makes each run once; a failing message is retried
alone in a savepoint of its own).

Debt and advance are taken from credit's `customer_balances` (credit owns them; one
customer's credit events arrive in order because they share a key); the statement's debt and
advance changes are the difference to the previous balances. The bonus balance is the sum of
loyalty's bonus movements, which keeps it independent of how the two topics interleave; when
loyalty voids a failed operation (`BonusesVoided`), its movements are dropped and the balance
goes down by what they added, so nothing of it is in any report.

Sales and their lines are keyed by (chain_id, sale_id): sale ids are chosen by the POS and
unique within the chain only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind, PaymentMethod
from contracts.gateway import v1 as gateway
from contracts.loyalty import v1 as loyalty
from contracts.money import decimal_to_str
from contracts.topics import CREDIT_EVENTS, LOYALTY_EVENTS, MASTERDATA_EVENTS
from reporting.adapters import projection_lock
from reporting.adapters.movements import Movements
from reporting.adapters.projection_batch import defer_bonus_event, defer_credit_event
from reporting.adapters.projection_writes import (
    CreditMovement,
    CreditWritten,
    SaleRow,
    write_bonus_event,
    write_credit_event,
)
from reporting.adapters.read_models import Balances, MasterData
from reporting.adapters.sales import Sales
from reporting.domain.model import ZERO, return_shares, sale_shares
from servicekit.consumer import MessageContext
from servicekit.sql import Db

log = logging.getLogger(__name__)

TOPICS: tuple[str, ...] = (CREDIT_EVENTS, LOYALTY_EVENTS, MASTERDATA_EVENTS)

#: Live handlers hold the projection lock (`adapters.projection_lock`) shared; the rebuild
#: takes it exclusively to swap the rebuilt tables in while no batch is half-way.
#: False inside the rebuild, whose scratch tables no live handler touches.
projection_lock_enabled: ContextVar[bool] = ContextVar("projection_lock_enabled", default=True)

_BONUS_ADDS = frozenset({BonusMovementKind.ACCRUED, BonusMovementKind.RESTORED})


# --------------------------------------------------------------------------- helpers


async def _hold_projection_lock(db: Db) -> None:
    if not projection_lock_enabled.get():
        return
    await projection_lock.hold_shared(db)


def _check_drift(
    ctx: MessageContext, kind: str, goods: Decimal, payments: Decimal, written: CreditWritten
) -> None:
    if payments - goods != written.advance_change - written.debt_change:
        # The report's closing (opening + payments - goods) would drift from advance - debt:
        # credit's event and this projection disagree on what the operation did.
        log.error(
            "%s %s: payments - goods = %s but advance - debt changed by %s",
            kind,
            ctx.envelope.message_id,
            payments - goods,
            written.advance_change - written.debt_change,
        )


async def _credit_movement(
    ctx: MessageContext,
    chain_id: UUID,
    customer_id: UUID,
    after: credit.CustomerBalances,
    lines_changed: Iterable[credit.LineOwedChange],
    *,
    sale: SaleRow | None = None,
    **movement: Any,
) -> None:
    """What every credit event with money or goods writes, in one statement: its sale (if it
    is one), the owed amounts per line, credit's balances after it, and its movement with the
    debt and advance changes."""
    changes = list(lines_changed)
    sale_id = sale.sale_id if sale is not None else None
    own = {c.line_no: c.owed_after for c in changes if c.sale_id == sale_id}
    if sale is not None and own:
        # the sale's own lines are written with what they owe after it
        lines = [
            line.model_copy(update={"owed": own.get(line.line_no, line.owed)})
            for line in sale.lines
        ]
        sale = replace(sale, lines=lines)
    older = [(c.sale_id, c.line_no, c.owed_after) for c in changes if c.sale_id != sale_id]
    stored = {line.line_no for line in sale.lines} if sale is not None else set()

    def check(written: CreditWritten) -> None:
        unknown = [(sale_id, n) for n in sorted(own) if n not in stored]
        unknown += [(s, n) for s, n, _ in older if (s, n) not in written.owed_set]
        for unknown_sale, line_no in unknown:
            log.warning("owed change for unknown line %s/%s", unknown_sale, line_no)
        goods, payments = movement.get("goods", ZERO), movement.get("payments", ZERO)
        _check_drift(ctx, movement["kind"], goods, payments, written)

    write: dict[str, Any] = {
        "chain_id": chain_id,
        "customer_id": customer_id,
        "debt": after.debt,
        "advance": after.advance,
        "movement": CreditMovement(message_id=ctx.envelope.message_id, **movement),
        "owed": older,
        "sale": sale,
        "sale_owed_changed": sorted(own),
    }
    if ctx.batched:  # with the rest of the batch, before its commit
        await defer_credit_event(ctx.db, done=check, **write)
        return
    check(await write_credit_event(ctx.db, **write))


def _m(value: Decimal) -> str:
    return decimal_to_str(value)


# --------------------------------------------------------------------------- master data


async def on_chain_registered(ctx: MessageContext, msg: gateway.ChainRegistered) -> None:
    await _hold_projection_lock(ctx.db)
    await _upsert_chain(ctx.session, msg.chain_id, msg.name, msg.settings)


async def on_chain_settings_changed(ctx: MessageContext, msg: gateway.ChainSettingsChanged) -> None:
    await _hold_projection_lock(ctx.db)
    await _upsert_chain(ctx.session, msg.chain_id, None, msg.settings)


async def _upsert_chain(
    session: AsyncSession, chain_id: UUID, name: str | None, s: gateway.ChainSettingsSnapshot
) -> None:
    values: dict[str, Any] = {
        "timezone": s.timezone,
        "currency": s.currency,
        "minor_units": s.minor_units,
        "credit_mode": s.credit_mode.value,
    }
    if name is not None:
        values["name"] = name
    await MasterData(session).upsert_chain(chain_id, name or "", values)


async def on_store_registered(ctx: MessageContext, msg: gateway.StoreRegistered) -> None:
    await _hold_projection_lock(ctx.db)
    values = {"chain_id": msg.chain_id, "code": msg.code, "name": msg.name}
    await MasterData(ctx.session).upsert_store(msg.store_id, values)


async def _upsert_customer(
    session: AsyncSession, chain_id: UUID, c: gateway.CustomerSnapshot
) -> None:
    values = {
        "chain_id": chain_id,
        "name": c.name,
        "name_key": c.name.casefold(),
        "phone": c.phone,
        "vip": c.vip,
        "card_number": c.card_number,
    }
    await MasterData(session).upsert_customer(c.customer_id, values)


async def on_customer_registered(ctx: MessageContext, msg: gateway.CustomerRegistered) -> None:
    await _hold_projection_lock(ctx.db)
    await _upsert_customer(ctx.session, msg.chain_id, msg.customer)


async def on_customer_updated(ctx: MessageContext, msg: gateway.CustomerUpdated) -> None:
    await _hold_projection_lock(ctx.db)
    await _upsert_customer(ctx.session, msg.chain_id, msg.customer)


async def on_card_issued(ctx: MessageContext, msg: gateway.CardIssued) -> None:
    await _hold_projection_lock(ctx.db)
    await MasterData(ctx.session).set_card_number(msg.customer_id, msg.card_number)


# --------------------------------------------------------------------------- credit


async def on_sale_completed(ctx: MessageContext, msg: credit.SaleCompleted) -> None:
    if msg.customer_id is None or msg.customer_balances is None:
        return  # anonymous sales are in no customer report
    await _hold_projection_lock(ctx.db)
    advance_payments = sum(
        (p.amount for p in msg.payments if p.method is PaymentMethod.ADVANCE), ZERO
    )
    goods, payments = sale_shares(
        total=msg.total,
        paid=msg.paid,
        advance_payments=advance_payments,
        change_to_advance=msg.change_to_advance,
    )
    parts = [f"Sale, {len(msg.lines)} line(s), total {_m(msg.total)}"]
    if msg.on_account:
        parts.append(f"on account {_m(msg.on_account)}")
    if msg.due_date:
        parts.append(f"due {msg.due_date.isoformat()}")
    sale = SaleRow(
        sale_id=msg.sale_id,
        store_id=msg.store_id,
        sold_at=msg.sold_at,
        due_date=msg.due_date,
        total=msg.total,
        lines=list(msg.lines),
    )
    await _credit_movement(
        ctx,
        msg.chain_id,
        msg.customer_id,
        msg.customer_balances,
        msg.lines_changed,
        sale=sale,
        store_id=msg.store_id,
        at=msg.sold_at,
        kind="sale",
        sale_id=msg.sale_id,
        description=", ".join(parts),
        goods=goods,
        payments=payments,
    )


class _CreditMoneyEvent(Protocol):
    @property
    def chain_id(self) -> UUID: ...
    @property
    def customer_id(self) -> UUID: ...
    @property
    def store_id(self) -> UUID | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def customer_balances(self) -> credit.CustomerBalances: ...


async def _credit_money_movement(
    ctx: MessageContext,
    msg: _CreditMoneyEvent,
    *,
    lines_changed: Sequence[credit.LineOwedChange] = (),
    kind: str,
    payment_id: UUID,
    description: str,
    payments: Decimal,
    sale_id: UUID | None = None,
) -> None:
    """A payment, advance or refund: owed amounts per line, balances, one movement."""
    await _hold_projection_lock(ctx.db)
    await _credit_movement(
        ctx,
        msg.chain_id,
        msg.customer_id,
        msg.customer_balances,
        lines_changed,
        store_id=msg.store_id,
        at=msg.occurred_at,
        kind=kind,
        payment_id=payment_id,
        sale_id=sale_id,
        description=description,
        payments=payments,
    )


async def on_debt_payment(ctx: MessageContext, msg: credit.DebtPaymentRecorded) -> None:
    await _credit_money_movement(
        ctx,
        msg,
        lines_changed=msg.lines_changed,
        kind="payment",
        payment_id=msg.payment_id,
        sale_id=msg.allocated[0].sale_id if len({a.sale_id for a in msg.allocated}) == 1 else None,
        description=f"Payment ({msg.kind.value}, {msg.method.value}) {_m(msg.amount)}",
        payments=msg.amount,
    )


async def on_advance(ctx: MessageContext, msg: credit.AdvanceRecorded) -> None:
    description = f"Advance ({msg.method.value}) {_m(msg.amount)}"
    if msg.applied_to_debt:
        description += f", {_m(msg.applied_to_debt)} paid debt"
    await _credit_money_movement(
        ctx,
        msg,
        lines_changed=msg.lines_changed,
        kind="advance",
        payment_id=msg.payment_id,
        description=description,
        payments=msg.amount,
    )


async def on_refund(ctx: MessageContext, msg: credit.RefundRecorded) -> None:
    await _credit_money_movement(
        ctx,
        msg,
        kind="refund",
        payment_id=msg.refund_id,
        description=f"Money returned ({msg.method.value}) {_m(msg.amount)}",
        payments=-msg.amount,
    )


async def on_return(ctx: MessageContext, msg: credit.ReturnRecorded) -> None:
    if msg.customer_id is None or msg.customer_balances is None:
        return
    await _hold_projection_lock(ctx.db)
    sales = Sales(ctx.session)
    for line in msg.lines:
        await sales.add_to_line(
            msg.chain_id, msg.sale_id, line.line_no, "returned_quantity", line.quantity
        )
    goods, payments = return_shares(
        value=msg.value, refunded=msg.refunded, bonus_restored=msg.bonus_restored
    )
    await _credit_movement(
        ctx,
        msg.chain_id,
        msg.customer_id,
        msg.customer_balances,
        msg.lines_changed,
        store_id=msg.store_id,
        at=msg.occurred_at,
        kind="return",
        sale_id=msg.sale_id,
        payment_id=msg.return_id,
        description=(
            f"Return of {len(msg.lines)} line(s), value {_m(msg.value)}, "
            f"refunded ({msg.refund.value}) {_m(msg.refunded)}"
        ),
        goods=goods,
        payments=payments,
    )


async def on_discount_revoked(ctx: MessageContext, msg: credit.DiscountRevoked) -> None:
    await _hold_projection_lock(ctx.db)
    sales = Sales(ctx.session)
    await sales.add_discount_revoked(msg.chain_id, msg.sale_id, msg.amount)
    for line in msg.lines:
        await sales.add_to_line(msg.chain_id, msg.sale_id, line.line_no, "amount", line.amount)
    store_id = await sales.store_of(msg.chain_id, msg.sale_id)
    await _credit_movement(
        ctx,
        msg.chain_id,
        msg.customer_id,
        msg.customer_balances,
        msg.lines_changed,
        store_id=store_id,
        at=msg.revoked_at,
        kind="discount_revoked",
        sale_id=msg.sale_id,
        description=f"Discount revoked ({msg.trigger}) {_m(msg.amount)}",
        goods=msg.amount,
    )


async def on_sale_overdue(ctx: MessageContext, msg: credit.SaleOverdue) -> None:
    # The due date normally came with the sale; credit's scan is the authority if not.
    await _hold_projection_lock(ctx.db)
    await Sales(ctx.session).set_due_date_if_missing(msg.chain_id, msg.sale_id, msg.due_date)


# --------------------------------------------------------------------------- loyalty


async def on_bonus_movement(ctx: MessageContext, msg: loyalty.BonusMovementRecorded) -> None:
    await _hold_projection_lock(ctx.db)
    signed = msg.amount if msg.kind in _BONUS_ADDS else -msg.amount
    write = defer_bonus_event if ctx.batched else write_bonus_event
    await write(
        ctx.db,
        message_id=ctx.envelope.message_id,
        chain_id=msg.chain_id,
        customer_id=msg.customer_id,
        store_id=msg.store_id,
        at=msg.at,
        kind=f"bonus_{msg.kind.value}",
        sale_id=msg.sale_id,
        payment_id=msg.payment_id,
        description=f"Bonus {msg.kind.value} {_m(msg.amount)}",
        bonus_change=signed,
        bonus_kind=msg.kind.value,
        bonus_amount=msg.amount,
        bonus_movement_id=msg.movement_id,
    )


async def on_bonuses_voided(ctx: MessageContext, msg: loyalty.BonusesVoided) -> None:
    """Loyalty undid a failed operation: its movements leave every report and the balance."""
    if not msg.movement_ids:
        return
    await _hold_projection_lock(ctx.db)
    balances = Balances(ctx.session)
    await balances.lock(msg.chain_id, msg.customer_id)
    dropped = await Movements(ctx.session).drop_bonus_movements(
        msg.chain_id, msg.customer_id, msg.movement_ids
    )
    change = sum(dropped, ZERO)
    if change:
        await balances.take_bonus(msg.customer_id, change)
