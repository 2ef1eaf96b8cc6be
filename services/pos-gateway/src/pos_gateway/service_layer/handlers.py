"""The gateway's handler maps: which use case each consumed message runs (the two members of
consumer group `gateway` in `entrypoints/app.py` are built from them, one a topic)."""

from __future__ import annotations

from typing import Any

from contracts.credit.v1 import (
    AdvanceRecorded,
    DebtPaymentRecorded,
    DiscountRevoked,
    OperationRefused,
    RefundRecorded,
    ReturnRecorded,
    SaleCompleted,
)
from contracts.loyalty.v1 import BonusCancellationRefused, PaymentBonusCancelled
from pos_gateway.service_layer import outcomes as o

#: credit's outcomes (`credit.events.v1`)
HANDLERS: dict[type[Any], Any] = {
    SaleCompleted: o.on_sale_completed,
    OperationRefused: o.on_operation_refused,
    DebtPaymentRecorded: o.on_debt_payment_recorded,
    AdvanceRecorded: o.on_advance_recorded,
    RefundRecorded: o.on_refund_recorded,
    ReturnRecorded: o.on_return_recorded,
    DiscountRevoked: o.on_discount_revoked,
}

#: loyalty's answers to a payment bonus's cancellation (`loyalty.events.v1`)
BONUS_HANDLERS: dict[type[Any], Any] = {
    PaymentBonusCancelled: o.on_payment_bonus_cancelled,
    BonusCancellationRefused: o.on_bonus_cancellation_refused,
}

#: the handlers that store an outcome in one statement (`outcomes._settle`); a return's also
#: counts its lines' returned quantities, once, in statements of their own
ONE_STATEMENT: frozenset[type[Any]] = frozenset({*HANDLERS, *BONUS_HANDLERS}) - {ReturnRecorded}
