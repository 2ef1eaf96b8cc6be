"""Closed vocabularies shared by several messages (values are the public API's spellings)."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BonusMovementKind",
    "BonusOperationKind",
    "CreditMode",
    "DebtPaymentKind",
    "MoneyMethod",
    "OperationKind",
    "OverdueDiscountPolicy",
    "PaymentMethod",
    "RefundMethod",
    "RefusalCode",
    "TaskClosedReason",
    "TaskOutcome",
]


class CreditMode(StrEnum):
    """How payments of a VIP customer are bound to goods (chain setting)."""

    BALANCE = "balance"
    PER_SALE = "per_sale"
    PER_ITEM = "per_item"


class OverdueDiscountPolicy(StrEnum):
    """What happens to the discount of an overdue sale (chain setting)."""

    KEEP = "keep"
    OFFER = "offer"
    REVOKE = "revoke"


class PaymentMethod(StrEnum):
    """A payment method of a sale."""

    CASH = "cash"
    CARD = "card"
    BONUS = "bonus"
    ADVANCE = "advance"
    ON_ACCOUNT = "on_account"


class MoneyMethod(StrEnum):
    """Real money crossing the till: debt payments, advances, refunds of advance."""

    CASH = "cash"
    CARD = "card"


class RefundMethod(StrEnum):
    """Where the real-money value of returned goods goes."""

    CASH = "cash"
    CARD = "card"
    ADVANCE = "advance"


class DebtPaymentKind(StrEnum):
    """Take money (an amount) or pay debt (the whole debt, computed by credit)."""

    TAKE_MONEY = "take_money"
    PAY_DEBT = "pay_debt"


class OperationKind(StrEnum):
    """A till or back-office operation that credit records (or refuses) as a whole."""

    SALE = "sale"
    DEBT_PAYMENT = "debt_payment"
    ADVANCE = "advance"
    REFUND = "refund"
    RETURN = "return"
    REVOKE_DISCOUNT = "revoke_discount"


class BonusOperationKind(StrEnum):
    """The operations credit asks loyalty about (their values are ``OperationKind``'s).

    A refund and a requested discount revocation move no bonuses: each is asked with nothing
    to apply, so that its answer carries loyalty's balance after every bonus operation of the
    customer answered before it.
    """

    SALE = "sale"
    DEBT_PAYMENT = "debt_payment"
    ADVANCE = "advance"
    REFUND = "refund"
    RETURN = "return"
    REVOKE_DISCOUNT = "revoke_discount"


class BonusMovementKind(StrEnum):
    """One line of the bonus ledger. accrued/restored add; the others subtract."""

    ACCRUED = "accrued"
    SPENT = "spent"
    CANCELLED = "cancelled"
    REVERSED = "reversed"
    RESTORED = "restored"
    EXPIRED = "expired"


class RefusalCode(StrEnum):
    """Why credit refused an operation (a subset of the API's error codes).

    ``amount_out_of_range``: the operation would take a balance (debt, advance, bonus) to
    10^13 or beyond. ``operation_failed``: the operation failed for good on its way (a handler
    raising, a dead-lettered command or answer, no answer from loyalty within the deadline);
    whatever it had pending was voided in every service.
    """

    CREDIT_LIMIT_EXCEEDED = "credit_limit_exceeded"
    CREDIT_BLOCKED_OVERDUE = "credit_blocked_overdue"
    INSUFFICIENT_ADVANCE = "insufficient_advance"
    INSUFFICIENT_BONUS = "insufficient_bonus"
    NO_DEBT = "no_debt"
    RETURN_EXCEEDS_SOLD = "return_exceeds_sold"
    ALREADY_REVOKED = "already_revoked"
    NOT_OVERDUE = "not_overdue"
    NOT_FOUND = "not_found"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    OPERATION_FAILED = "operation_failed"
    VALIDATION_ERROR = "validation_error"
    """The command is valid but its facts contradict the ledger (a payment dated before the
    sale it would pay); ``OperationRefused.field`` names the request field."""


class TaskClosedReason(StrEnum):
    """Why a reminder task closed: the overdue debt was paid, or staff completed it."""

    PAID = "paid"
    COMPLETED = "completed"


class TaskOutcome(StrEnum):
    """What staff recorded after calling the customer."""

    PROMISED = "promised"
    NO_ANSWER = "no_answer"
    DISPUTED = "disputed"
    OTHER = "other"
