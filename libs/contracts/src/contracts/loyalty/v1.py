"""Messages the loyalty service produces, schema version 1, on ``loyalty.events.v1``.

* Answers to ``loyalty.ApplyBonuses`` (``BonusesApplied`` / ``BonusesRefused``), consumed by
  credit to confirm or void its pending operation.
* Answers to ``loyalty.CancelPaymentBonus``, consumed by the gateway.
* ``BonusMovementRecorded``: one per line of the bonus ledger, consumed by reporting for the
  statement and the bonus statistics (including expiries, which no command causes).
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime

from contracts.base import ContractModel, Event, Text
from contracts.enums import BonusMovementKind, BonusOperationKind
from contracts.money import Money, NonNegativeMoney
from contracts.topics import LOYALTY_EVENTS

__all__ = [
    "BonusCancellationRefused",
    "BonusMovementRecorded",
    "BonusesApplied",
    "BonusesRefused",
    "BonusesVoided",
    "PaymentBonus",
    "PaymentBonusCancelled",
]

_ADDING = frozenset({BonusMovementKind.ACCRUED, BonusMovementKind.RESTORED})


class PaymentBonus(ContractModel):
    """A bonus amount attributed to one payment."""

    payment_id: UUID
    amount: NonNegativeMoney


class BonusesApplied(Event):
    """Loyalty applied the bonus side of a credit operation, all of it at once.

    Produced by loyalty in answer to ``loyalty.ApplyBonuses``; consumed by credit, which
    confirms the operation and puts these amounts and ``balance_after`` in its outcome.
    """

    TYPE: ClassVar[str] = "loyalty.BonusesApplied"
    TOPIC: ClassVar[str] = LOYALTY_EVENTS

    operation_id: UUID
    operation_kind: BonusOperationKind
    chain_id: UUID
    customer_id: UUID
    spent: NonNegativeMoney
    accrued: NonNegativeMoney
    """Sum of ``accrued_by_payment``."""
    accrued_by_payment: list[PaymentBonus]
    restored: NonNegativeMoney
    reversed: NonNegativeMoney
    reversed_by_payment: list[PaymentBonus]
    balance_after: Money
    """May be negative after a cancelled accrual that was already spent."""


class BonusesRefused(Event):
    """Loyalty refused a credit operation's bonus side and recorded nothing.

    Produced by loyalty in answer to ``loyalty.ApplyBonuses``: ``insufficient_bonus`` (spending
    more than a positive balance), ``amount_out_of_range`` (the bonus balance would reach
    10^13), ``operation_failed`` (loyalty could not process the command, or the operation was
    voided before it arrived); consumed by credit, which voids the operation and publishes
    ``credit.OperationRefused`` with the same code.
    """

    TYPE: ClassVar[str] = "loyalty.BonusesRefused"
    TOPIC: ClassVar[str] = LOYALTY_EVENTS

    operation_id: UUID
    operation_kind: BonusOperationKind
    chain_id: UUID
    customer_id: UUID
    code: Literal["insufficient_bonus", "amount_out_of_range", "operation_failed"]
    detail: Text
    balance: Money


class BonusesVoided(Event):
    """Loyalty undid the bonus side of a failed operation (``loyalty.VoidBonuses``).

    ``movement_ids`` are the ``BonusMovementRecorded`` movements whose effect the void cancels
    (the operation's own, and what expired or was cancelled of what it accrued); consumers
    that listed them (reporting) drop them, so nothing of the failed operation is in any
    report. The ledger itself keeps them with their compensation. Empty when loyalty had
    applied nothing. Produced by loyalty in answer to ``loyalty.VoidBonuses``; consumed by
    reporting (statement, statistics, balance) and credit (its copy of the bonus balance).
    """

    TYPE: ClassVar[str] = "loyalty.BonusesVoided"
    TOPIC: ClassVar[str] = LOYALTY_EVENTS

    operation_id: UUID
    operation_kind: BonusOperationKind
    chain_id: UUID
    customer_id: UUID
    movement_ids: list[UUID]
    balance_after: Money
    voided_at: AwareDatetime


class BonusMovementRecorded(Event):
    """One movement of a customer's bonus ledger, with the balance after it.

    Produced by loyalty for every accrual, spend, cancellation, reversal, restoration and
    expiry (an expiry is dated when the accrual expired); consumed by reporting (statement,
    bonus statistics per period, store and customer, outstanding liability). ``amount`` is
    the gross magnitude: accrued/restored add it, the other kinds subtract it.
    """

    TYPE: ClassVar[str] = "loyalty.BonusMovementRecorded"
    TOPIC: ClassVar[str] = LOYALTY_EVENTS

    movement_id: UUID
    chain_id: UUID
    customer_id: UUID
    kind: BonusMovementKind
    amount: NonNegativeMoney
    store_id: UUID | None
    """Store of the operation (of the original accrual for cancellations and expiries)."""
    payment_id: UUID | None
    sale_id: UUID | None
    operation_id: UUID | None
    """The credit operation or the cancelled payment; null for an expiry."""
    at: AwareDatetime
    balance_after: Money

    @property
    def signed_amount(self) -> Decimal:
        """The movement's effect on the balance: + for accrued/restored, - otherwise."""
        return self.amount if self.kind in _ADDING else -self.amount


class PaymentBonusCancelled(Event):
    """The accrual of one payment was cancelled by the back office ("no bonuses").

    Produced by loyalty in answer to ``loyalty.CancelPaymentBonus``; consumed by the gateway
    (the API answer ``bonus_cancelled``) and reporting. A repeated request changes nothing
    and answers again with ``already=true`` and the same amount.
    """

    TYPE: ClassVar[str] = "loyalty.PaymentBonusCancelled"
    TOPIC: ClassVar[str] = LOYALTY_EVENTS

    payment_id: UUID
    chain_id: UUID
    customer_id: UUID
    cancelled: NonNegativeMoney
    balance_after: Money
    already: bool
    cancelled_at: AwareDatetime


class BonusCancellationRefused(Event):
    """Loyalty knows no accrual for the payment named in ``loyalty.CancelPaymentBonus``.

    Produced by loyalty; consumed by the gateway, which answers ``404 not_found``.
    """

    TYPE: ClassVar[str] = "loyalty.BonusCancellationRefused"
    TOPIC: ClassVar[str] = LOYALTY_EVENTS

    payment_id: UUID
    chain_id: UUID
    customer_id: UUID
    code: Literal["not_found"]
    detail: Text
