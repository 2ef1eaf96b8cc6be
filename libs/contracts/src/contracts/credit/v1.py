"""Messages the credit service produces, schema version 1.

* ``loyalty.ApplyBonuses`` on ``loyalty.commands.v1``: the bonus side of a pending operation;
  ``loyalty.VoidBonuses`` when that operation failed for good (undo whatever was applied).
* Events on ``credit.events.v1``: one outcome per operation (carrying the whole answer the POS
  gets, including the customer's balances after it), refusals, and the overdue/settled facts
  the notifier and reporting need. Only confirmed operations are published, so a refused
  operation never reaches a report.

Every event about a customer carries ``customer_balances`` (after the event) and
``lines_changed`` (the owed amount after the event of every receipt line it touched), so
reporting can keep debt per line, and with it every credit mode's view, from these events
alone.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from contracts.base import CardNumber, Command, ContractModel, Event, LineNo, Text
from contracts.enums import (
    BonusOperationKind,
    CreditMode,
    DebtPaymentKind,
    MoneyMethod,
    OperationKind,
    PaymentMethod,
    RefundMethod,
    RefusalCode,
)
from contracts.gateway.v1 import SaleLine
from contracts.money import Money, NonNegativeMoney, Percent, PositiveMoney, Quantity
from contracts.topics import CREDIT_EVENTS, LOYALTY_COMMANDS

__all__ = [
    "AdvanceRecorded",
    "Allocation",
    "ApplyBonuses",
    "BonusBase",
    "CustomerBalances",
    "DebtPaymentRecorded",
    "DiscountRevoked",
    "LineOwedChange",
    "OperationRefused",
    "OverdueLine",
    "RefundRecorded",
    "ReturnRecorded",
    "ReturnedLine",
    "RevokedDiscountLine",
    "SaleCompleted",
    "SaleLineOutcome",
    "SaleOverdue",
    "SalePaymentOutcome",
    "SaleSettled",
    "VoidBonuses",
]

_REAL_MONEY = frozenset({PaymentMethod.CASH, PaymentMethod.CARD, PaymentMethod.ADVANCE})


# --------------------------------------------------------------------------- parts


class CustomerBalances(ContractModel):
    """A customer's balances right after an event (the API's ``"customer": {...}``).

    Never both debt and advance positive at once; ``bonus_balance`` may be negative after an
    accrual was cancelled.
    """

    debt: NonNegativeMoney
    advance: NonNegativeMoney
    bonus_balance: Money


class LineOwedChange(ContractModel):
    """What is still owed on one receipt line after the event (0.00: the line is paid)."""

    sale_id: UUID
    line_no: LineNo
    owed_after: NonNegativeMoney


class Allocation(ContractModel):
    """Money applied to debt: a sale, and the line in per_item mode (null otherwise)."""

    sale_id: UUID
    line_no: LineNo | None
    amount: PositiveMoney


class BonusBase(ContractModel):
    """Real money (cash, card, advance) that paid for goods: the base of one accrual."""

    payment_id: UUID
    method: PaymentMethod
    base_amount: NonNegativeMoney

    @model_validator(mode="after")
    def _real_money_only(self) -> Self:
        if self.method not in _REAL_MONEY:
            raise ValueError("only cash, card and advance money accrue bonuses")
        return self


class SalePaymentOutcome(ContractModel):
    """One payment of a completed sale, as the POS is answered (on_account excluded)."""

    payment_id: UUID
    method: PaymentMethod
    amount: PositiveMoney
    bonus_accrued: NonNegativeMoney


# the command's line as sold (`SaleLine`, the gateway priced it), plus what is owed on it: one
# line shape from the till's request to the till's answer
class SaleLineOutcome(SaleLine):
    """A receipt line of a completed sale and what is owed on it after the sale."""

    owed: NonNegativeMoney


class ReturnedLine(ContractModel):
    """One receipt line brought back: its value (after discount) and the debt cancelled on it."""

    line_no: LineNo
    sku: Text | None
    barcode: Text | None
    name: Text
    quantity: Quantity
    value: NonNegativeMoney
    debt_cancelled: NonNegativeMoney


class RevokedDiscountLine(ContractModel):
    """The discount of one line added back to what is owed on it."""

    line_no: LineNo
    amount: PositiveMoney


class OverdueLine(ContractModel):
    """Goods still unpaid on an overdue sale (the FIFO goods in balance mode)."""

    line_no: LineNo
    barcode: Text | None
    name: Text
    quantity: Quantity
    amount_owed: PositiveMoney


# --------------------------------------------------------------------------- credit -> loyalty


class ApplyBonuses(Command):
    """Apply the bonus side of a pending credit operation, atomically.

    Produced by credit in the same transaction as the pending ledger entries, for every
    operation that involves a customer; consumed by loyalty, which spends ``spend`` (refusing
    the whole operation when the balance is short), accrues ``bonus_rate_percent`` of every
    accrual base rounded half-up to ``minor_units`` (only when ``bonus_accrual``), and for
    returns restores spent bonus up to ``restore_up_to`` and reverses the accrual of each
    ``reverse_bases`` payment in proportion. It answers ``loyalty.BonusesApplied`` or
    ``loyalty.BonusesRefused`` with the same ``operation_id``.
    """

    TYPE: ClassVar[str] = "loyalty.ApplyBonuses"
    TOPIC: ClassVar[str] = LOYALTY_COMMANDS

    operation_id: UUID
    """The sale id, payment id, refund id or return id of the credit operation; for a requested
    discount revocation, the id of that request's attempt (one per request, not the sale's)."""
    operation_kind: BonusOperationKind
    chain_id: UUID
    customer_id: UUID
    store_id: UUID
    sale_id: UUID | None
    """The sale spent on or returned to (sale and return operations); null otherwise."""
    occurred_at: AwareDatetime
    """Business time of the operation; accruals expire counting from it."""
    bonus_accrual: bool
    bonus_rate_percent: Percent
    bonus_expiry_days: Annotated[int, Field(ge=1)] | None
    minor_units: Annotated[int, Field(ge=0, le=4)]
    spend: NonNegativeMoney
    """Bonus paid with (sales only)."""
    accrual_bases: list[BonusBase]
    """Per payment, the real money that pays for goods in this operation."""
    restore_up_to: NonNegativeMoney
    """Returns: give back bonus spent on the sale, at most this much; 0.00 otherwise."""
    reverse_bases: list[BonusBase]
    """Returns: per original payment, the real money refunded or kept whose accrual goes."""


class VoidBonuses(Command):
    """Undo the bonus side of an operation that failed for good, whatever loyalty did of it.

    Produced by credit when an operation it had asked loyalty about (``ApplyBonuses``) ends as
    ``operation_failed``: no answer within the deadline, or its answer could not be processed.
    It follows that ``ApplyBonuses`` on the same partition (key: the customer), so loyalty
    always sees the two in this order. Consumed by loyalty, which takes back everything the
    operation applied
    (spend, accruals, restorations, reversals), records that it was voided (a later copy of
    the ``ApplyBonuses`` is refused), and answers ``loyalty.BonusesVoided``. Voiding an
    operation loyalty never applied, or voided before, changes nothing.
    """

    TYPE: ClassVar[str] = "loyalty.VoidBonuses"
    TOPIC: ClassVar[str] = LOYALTY_COMMANDS

    operation_id: UUID
    operation_kind: BonusOperationKind
    chain_id: UUID
    customer_id: UUID
    reason: Text
    """Why credit gave the operation up (for the logs)."""
    requested_at: AwareDatetime


# --------------------------------------------------------------------------- credit events


class SaleCompleted(Event):
    """A sale was recorded: the whole outcome of ``POST /v1/sales`` plus its lines.

    Produced by credit once loyalty applied the bonuses; consumed by the gateway (answers the
    POS), reporting (goods, payments, unpaid goods, statement) and notifier (none of its
    business unless it settles debt).
    """

    TYPE: ClassVar[str] = "credit.SaleCompleted"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    sale_id: UUID
    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    customer_id: UUID | None
    card_number: CardNumber | None
    credit_mode: CreditMode
    sold_at: AwareDatetime
    total: NonNegativeMoney
    paid: NonNegativeMoney
    """Everything but on_account, less change."""
    on_account: NonNegativeMoney
    """As requested, before an existing advance covered it."""
    advance_applied: NonNegativeMoney
    """The customer's existing advance that automatically covered the on-account part."""
    change: NonNegativeMoney
    change_to_advance: NonNegativeMoney
    change_allocated: list[Allocation]
    """Change kept while other debt was open pays that debt first (oldest first)."""
    advance_added: NonNegativeMoney
    """What of the kept change became advance."""
    due_date: date | None
    """Chain-local due date; null when the sale leaves no debt."""
    bonus_accrued: NonNegativeMoney
    bonus_spent: NonNegativeMoney
    payments: list[SalePaymentOutcome]
    """Request order, on_account excluded."""
    lines: Annotated[list[SaleLineOutcome], Field(min_length=1)]
    customer_balances: CustomerBalances | None
    """Null for an anonymous sale."""
    lines_changed: list[LineOwedChange]
    """Lines of this sale left owed, and of older sales paid by kept change."""


class OperationRefused(Event):
    """Credit (or loyalty, through credit) refused an operation; nothing was recorded.

    Produced by credit; consumed by the gateway, which answers the POS with ``422`` (or
    ``409 already_revoked``) and keeps the refusal on the request.
    """

    TYPE: ClassVar[str] = "credit.OperationRefused"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    operation_id: UUID
    """sale_id, payment_id, refund_id, return_id, or the sale_id of a revoke_discount."""
    operation_kind: OperationKind
    chain_id: UUID
    customer_id: UUID | None
    code: RefusalCode
    detail: Text
    refused_at: AwareDatetime
    field: Text | None = None
    """For ``validation_error``: the request field at fault (``occurred_at``)."""


class DebtPaymentRecorded(Event):
    """Money paid against debt ("Take money" / "Pay debt") was recorded.

    Produced by credit; consumed by the gateway (the API answer), reporting (payments,
    unpaid goods, aging, statement) and notifier (overdue amounts go down).
    """

    TYPE: ClassVar[str] = "credit.DebtPaymentRecorded"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    payment_id: UUID
    chain_id: UUID
    customer_id: UUID
    store_id: UUID
    terminal_id: UUID
    kind: DebtPaymentKind
    method: MoneyMethod
    amount: PositiveMoney
    allocated: list[Allocation]
    advance_added: NonNegativeMoney
    """What exceeded the debt and became advance."""
    bonus_accrued: NonNegativeMoney
    occurred_at: AwareDatetime
    customer_balances: CustomerBalances
    lines_changed: list[LineOwedChange]


class AdvanceRecorded(Event):
    """An advance payment was recorded; while debt was open it paid that first.

    Produced by credit; consumed by the gateway, reporting and notifier (like
    ``DebtPaymentRecorded``).
    """

    TYPE: ClassVar[str] = "credit.AdvanceRecorded"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    payment_id: UUID
    chain_id: UUID
    customer_id: UUID
    store_id: UUID
    terminal_id: UUID
    method: MoneyMethod
    amount: PositiveMoney
    applied_to_debt: NonNegativeMoney
    allocated: list[Allocation]
    advance_added: NonNegativeMoney
    bonus_accrued: NonNegativeMoney
    """Accrued on the part that paid debt (goods); the advance accrues when it buys goods."""
    occurred_at: AwareDatetime
    customer_balances: CustomerBalances
    lines_changed: list[LineOwedChange]


class RefundRecorded(Event):
    """Advance money was paid back to the customer ("Return money").

    Produced by credit; consumed by the gateway and reporting (payments balance goes down).
    """

    TYPE: ClassVar[str] = "credit.RefundRecorded"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    refund_id: UUID
    chain_id: UUID
    customer_id: UUID
    store_id: UUID
    terminal_id: UUID
    method: MoneyMethod
    amount: PositiveMoney
    occurred_at: AwareDatetime
    customer_balances: CustomerBalances


class ReturnRecorded(Event):
    """Goods came back: debt cancelled, spent bonus restored, the rest refunded or kept.

    Produced by credit; consumed by the gateway (the API answer and ``returned_quantity`` of
    the sale), reporting (goods net of returns, unpaid goods, statement) and notifier.
    """

    TYPE: ClassVar[str] = "credit.ReturnRecorded"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    return_id: UUID
    sale_id: UUID
    chain_id: UUID
    customer_id: UUID | None
    store_id: UUID
    terminal_id: UUID
    refund: RefundMethod
    lines: Annotated[list[ReturnedLine], Field(min_length=1)]
    value: NonNegativeMoney
    """Value of the returned goods after their discount."""
    debt_cancelled: NonNegativeMoney
    bonus_restored: NonNegativeMoney
    refunded: NonNegativeMoney
    """Paid out in cash or card."""
    applied_to_debt: NonNegativeMoney
    """Kept as advance but paying other open debt first."""
    allocated: list[Allocation]
    advance_added: NonNegativeMoney
    bonus_reversed: NonNegativeMoney
    occurred_at: AwareDatetime
    customer_balances: CustomerBalances | None
    lines_changed: list[LineOwedChange]


class DiscountRevoked(Event):
    """The discount of an overdue sale was added to what is owed on it (once).

    Produced by credit, automatically under ``overdue_discount=revoke`` or on request under
    ``offer``; consumed by the gateway (the API answer), reporting (goods and debt go up) and
    notifier (drops the revoke action).
    """

    TYPE: ClassVar[str] = "credit.DiscountRevoked"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    sale_id: UUID
    chain_id: UUID
    customer_id: UUID
    amount: PositiveMoney
    """The API's ``discount_revoked``."""
    lines: Annotated[list[RevokedDiscountLine], Field(min_length=1)]
    trigger: Literal["automatic", "requested"]
    revoked_at: AwareDatetime
    customer_balances: CustomerBalances
    lines_changed: list[LineOwedChange]


class SaleOverdue(Event):
    """A sale's due date passed with money still owed (found by credit's overdue scan).

    Published once per sale. In balance mode the sale is the one holding the oldest unpaid
    goods (first in, first out). Produced by credit; consumed by notifier (raises or extends
    the customer's reminder task) and reporting (overdue flag, aging).
    """

    TYPE: ClassVar[str] = "credit.SaleOverdue"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    sale_id: UUID
    chain_id: UUID
    customer_id: UUID
    credit_mode: CreditMode
    sold_at: AwareDatetime
    due_date: date
    amount_owed: PositiveMoney
    days_overdue: Annotated[int, Field(ge=1)]
    discount: NonNegativeMoney
    """Total discount of the sale (what a revocation would add)."""
    discount_revoked: bool
    lines: list[OverdueLine]
    """The unpaid goods of the sale."""
    detected_at: AwareDatetime


class SaleSettled(Event):
    """A sale that had debt owes nothing any more (paid, returned or covered).

    Produced by credit; consumed by notifier (closes the task when ``customer_overdue_amount``
    is 0.00) and reporting.
    """

    TYPE: ClassVar[str] = "credit.SaleSettled"
    TOPIC: ClassVar[str] = CREDIT_EVENTS

    sale_id: UUID
    chain_id: UUID
    customer_id: UUID
    was_overdue: bool
    customer_overdue_amount: NonNegativeMoney
    """The customer's overdue debt left on other sales after this one settled."""
    settled_at: AwareDatetime
