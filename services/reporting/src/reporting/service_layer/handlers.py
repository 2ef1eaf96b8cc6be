"""Reporting's handler map: the projection's handler of each consumed message, and the consumer
that runs them (the live one, and the rebuild's over its scratch tables)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from contracts.credit import v1 as credit
from contracts.gateway import v1 as gateway
from contracts.loyalty import v1 as loyalty
from reporting.adapters import projection_batch
from reporting.service_layer import projection as p
from reporting.service_layer.projection import TOPICS
from servicekit.consumer import Consumer, Handler, MessageContext


def flushing(handler: Handler) -> Handler:
    """`handler`, after the writes the batch's earlier messages left are written
    (`adapters.projection_batch`): it may read or change what they write (a return's lines, a
    voided bonus movement), or what their triggers read (a customer's name)."""

    async def after_pending(ctx: MessageContext, msg: Any) -> None:
        await projection_batch.flush(ctx.db)
        await handler(ctx, msg)

    return after_pending


#: credit's money events and loyalty's bonus movements leave their writes for the batch's end
#: on the consumer's fast path; every other handler writes what is pending first
HANDLERS: dict[type[BaseModel], Handler] = {
    gateway.ChainRegistered: flushing(p.on_chain_registered),
    gateway.ChainSettingsChanged: flushing(p.on_chain_settings_changed),
    gateway.StoreRegistered: flushing(p.on_store_registered),
    gateway.CustomerRegistered: flushing(p.on_customer_registered),
    gateway.CustomerUpdated: flushing(p.on_customer_updated),
    gateway.CardIssued: flushing(p.on_card_issued),
    credit.SaleCompleted: p.on_sale_completed,
    credit.DebtPaymentRecorded: p.on_debt_payment,
    credit.AdvanceRecorded: p.on_advance,
    credit.RefundRecorded: p.on_refund,
    credit.ReturnRecorded: flushing(p.on_return),
    credit.DiscountRevoked: flushing(p.on_discount_revoked),
    credit.SaleOverdue: flushing(p.on_sale_overdue),
    loyalty.BonusMovementRecorded: p.on_bonus_movement,
    loyalty.BonusesVoided: flushing(p.on_bonuses_voided),
}


def make_consumer(name: str = "reporting", topics: Sequence[str] = TOPICS) -> Consumer:
    """The projection's consumer (the rebuild makes one too, for its scratch tables). It records
    its position per partition in each batch's transaction: the snapshots' offsets."""
    return Consumer(
        name=name,
        topics=list(topics),
        handlers=dict(HANDLERS),
        record_positions=True,
        # a customer's events come on two topics, whose partitions may be read by two
        # instances at once: each batch locks its customers' balances in key order (deadlocks
        # between instances were measured without it: docs/benchmarks, `stop23-x4`)
        sort_batch_by_key=True,
        # the money and bonus writes the batch's handlers left: one statement per table
        before_commit=projection_batch.flush,
    )
