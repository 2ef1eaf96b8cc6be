"""Reporting's handler map: the projection's handler of each consumed message, and the consumer
that runs them (the live one, and the rebuild's over its scratch tables)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from contracts.credit import v1 as credit
from contracts.gateway import v1 as gateway
from contracts.loyalty import v1 as loyalty
from reporting.service_layer import projection as p
from reporting.service_layer.projection import TOPICS
from servicekit.consumer import Consumer, Handler

HANDLERS: dict[type[BaseModel], Handler] = {
    gateway.ChainRegistered: p.on_chain_registered,
    gateway.ChainSettingsChanged: p.on_chain_settings_changed,
    gateway.StoreRegistered: p.on_store_registered,
    gateway.CustomerRegistered: p.on_customer_registered,
    gateway.CustomerUpdated: p.on_customer_updated,
    gateway.CardIssued: p.on_card_issued,
    credit.SaleCompleted: p.on_sale_completed,
    credit.DebtPaymentRecorded: p.on_debt_payment,
    credit.AdvanceRecorded: p.on_advance,
    credit.RefundRecorded: p.on_refund,
    credit.ReturnRecorded: p.on_return,
    credit.DiscountRevoked: p.on_discount_revoked,
    credit.SaleOverdue: p.on_sale_overdue,
    loyalty.BonusMovementRecorded: p.on_bonus_movement,
    loyalty.BonusesVoided: p.on_bonuses_voided,
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
    )
