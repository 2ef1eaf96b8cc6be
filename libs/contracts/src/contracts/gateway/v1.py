"""Messages the POS gateway produces, schema version 1.

* Commands to credit on ``pos.commands.v1``: every till operation the gateway accepted after
  its static checks (card, VIP, arithmetic). Each carries a snapshot of the customer and of the
  chain settings as they were when the gateway accepted it, so "new settings apply to every
  operation accepted after the 200" holds without races.
* Commands to loyalty on ``loyalty.commands.v1``: the back office cancelling one accrual.
* Master data events on ``masterdata.events.v1``: chains, stores, terminals, settings,
  customers and cards, owned by the gateway and mirrored by every other service.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from contracts.base import (
    CardNumber,
    Command,
    ContractModel,
    Days,
    Event,
    LineNo,
    Text,
    ensure_unique,
)
from contracts.enums import (
    CreditMode,
    DebtPaymentKind,
    MoneyMethod,
    OverdueDiscountPolicy,
    PaymentMethod,
    RefundMethod,
)
from contracts.money import NonNegativeMoney, Percent, PositiveMoney, Quantity
from contracts.topics import LOYALTY_COMMANDS, MASTERDATA_EVENTS, POS_COMMANDS

__all__ = [
    "AllocationRequest",
    "CancelPaymentBonus",
    "CardBlocked",
    "CardIssued",
    "ChainRegistered",
    "ChainSettingsChanged",
    "ChainSettingsSnapshot",
    "CustomerRegistered",
    "CustomerSnapshot",
    "CustomerUpdated",
    "RecordAdvance",
    "RecordDebtPayment",
    "RecordRefund",
    "RecordReturn",
    "RecordSale",
    "ReturnLineRequest",
    "RevokeDiscount",
    "SaleLine",
    "SalePayment",
    "StoreRegistered",
    "TerminalRegistered",
]

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

# methods that only make sense for a known customer (their card was checked by the gateway)
_CUSTOMER_METHODS = frozenset(
    {PaymentMethod.BONUS, PaymentMethod.ADVANCE, PaymentMethod.ON_ACCOUNT}
)


# --------------------------------------------------------------------------- snapshots


class ChainSettingsSnapshot(ContractModel):
    """All settings of a chain at one moment (the API's ``GET /v1/settings`` plus currency).

    Embedded in every command so the consumer applies the settings the gateway accepted the
    operation under, and in ``ChainRegistered``/``ChainSettingsChanged`` for the services that
    act on their own (overdue scan, bonus expiry, reminders).
    """

    credit_mode: CreditMode
    max_payment_delay_days: Days
    """Default payment term of a sale; a customer's own delay overrides it."""
    overdue_discount: OverdueDiscountPolicy
    block_credit_when_overdue: bool
    reminder_repeat_days: Annotated[int, Field(ge=1)]
    bonus_rate_percent: Percent
    bonus_expiry_days: Annotated[int, Field(ge=1)] | None
    """Days after which an accrual expires; null: bonuses never expire."""
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """IANA time zone of the chain; due dates and report days are in it."""
    currency: CurrencyCode
    minor_units: Annotated[int, Field(ge=0, le=4)]
    """Digits after the decimal point of the currency (2 for EUR)."""
    reminder_email: Annotated[str, StringConstraints(min_length=3, max_length=254)] | None = None
    """Customer service's address for the notifier's reminder digest; null: no mail."""


class CustomerSnapshot(ContractModel):
    """Everything about a customer that a consumer may decide on, at one moment.

    Embedded in commands (as the gateway saw the customer when it accepted the operation) and
    in ``CustomerRegistered``/``CustomerUpdated`` (the full record after the change).
    """

    customer_id: UUID
    name: Text
    phone: Text | None
    email: Text | None = None
    vip: bool
    """Only a VIP customer may take goods on account."""
    bonus_accrual: bool
    """Whether the customer accrues bonuses at all."""
    credit_limit: NonNegativeMoney | None
    """Maximum debt; null: no limit."""
    max_payment_delay_days: Days | None
    """Overrides the chain's payment term; null: the chain's default applies."""
    card_number: CardNumber | None
    """The active card; null when the customer has none."""


# --------------------------------------------------------------------------- command parts


class SaleLine(ContractModel):
    """A receipt line. ``amount`` = quantity x unit_price rounded half-up, minus discount."""

    line_no: LineNo
    sku: Text | None
    barcode: Text | None
    name: Text
    quantity: Quantity
    unit_price: NonNegativeMoney
    discount: NonNegativeMoney
    amount: NonNegativeMoney


class SalePayment(ContractModel):
    """One payment of a sale as tendered; the gateway mints ``payment_id``."""

    payment_id: UUID
    method: PaymentMethod
    amount: PositiveMoney
    """What was tendered (cash may exceed what is due: the excess is change)."""


class AllocationRequest(ContractModel):
    """The cashier names where a debt payment goes: a sale, or one line of it (per_item)."""

    sale_id: UUID
    line_no: LineNo | None
    amount: PositiveMoney


class ReturnLineRequest(ContractModel):
    """How much of one receipt line comes back."""

    line_no: LineNo
    quantity: Quantity


# --------------------------------------------------------------------------- gateway -> credit


class RecordSale(Command):
    """Record a sale (``POST /v1/sales``).

    Produced by the gateway after its static checks (card, VIP, arithmetic); consumed by
    credit, which checks limit/overdue/advance, asks loyalty to apply bonuses and answers with
    ``credit.SaleCompleted`` or ``credit.OperationRefused`` (operation_id = sale_id).
    """

    TYPE: ClassVar[str] = "credit.RecordSale"
    TOPIC: ClassVar[str] = POS_COMMANDS

    sale_id: UUID
    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    customer: CustomerSnapshot | None
    """The customer (from the card or a customer id); null for an anonymous sale."""
    settings: ChainSettingsSnapshot
    card_number: CardNumber | None
    """The card presented at the till; required by the gateway for on_account and bonus."""
    sold_at: AwareDatetime
    """When the sale happened at the till (may be up to 90 days back for offline POS)."""
    lines: Annotated[list[SaleLine], Field(min_length=1)]
    payments: list[SalePayment]
    """In request order; includes on_account, which is what is left owed."""
    total: NonNegativeMoney
    """Sum of line amounts."""
    change: NonNegativeMoney
    """Sum of payments - total (only from cash)."""
    change_to_advance: NonNegativeMoney
    """Part of the change the customer keeps as advance (<= change)."""

    @model_validator(mode="after")
    def _check_structure(self) -> Self:
        ensure_unique((line.line_no for line in self.lines), "line_no")
        ensure_unique((p.payment_id for p in self.payments), "payment_id")
        if self.change_to_advance > self.change:
            raise ValueError("change_to_advance may not exceed change")
        if self.customer is None:
            if any(p.method in _CUSTOMER_METHODS for p in self.payments):
                raise ValueError("bonus, advance and on_account payments need a customer")
            if self.change_to_advance:
                raise ValueError("change_to_advance needs a customer")
        return self


class RecordDebtPayment(Command):
    """Record "Take money" or "Pay debt" (``POST /v1/customers/{id}/payments``).

    Produced by the gateway; consumed by credit, which allocates the money (named allocations
    first, then oldest first), asks loyalty for the accrual and answers with
    ``credit.DebtPaymentRecorded`` or ``credit.OperationRefused`` (``no_debt``).
    """

    TYPE: ClassVar[str] = "credit.RecordDebtPayment"
    TOPIC: ClassVar[str] = POS_COMMANDS

    payment_id: UUID
    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    customer: CustomerSnapshot
    settings: ChainSettingsSnapshot
    card_number: CardNumber | None
    kind: DebtPaymentKind
    amount: PositiveMoney | None
    """Required for take_money; null for pay_debt (credit computes the whole debt)."""
    method: MoneyMethod
    allocations: list[AllocationRequest]
    """Where the cashier wants the money to go; empty: oldest first."""
    occurred_at: AwareDatetime
    occurred_at_given: bool = False
    """True when the POS named ``occurred_at`` (an operation made offline): credit then refuses,
    with ``validation_error`` on ``occurred_at``, to put the money on a sale made after it (or,
    for a return, to return goods before their sale). False: the gateway's clock when it
    accepted the request, which may lag a concurrently accepted sale by moments."""

    @model_validator(mode="after")
    def _check_amount(self) -> Self:
        if self.kind is DebtPaymentKind.TAKE_MONEY:
            if self.amount is None:
                raise ValueError("take_money needs an amount")
            if sum((a.amount for a in self.allocations), Decimal(0)) > self.amount:
                raise ValueError("allocations exceed the amount")
        elif self.amount is not None:
            raise ValueError("pay_debt takes no amount: credit computes the debt")
        ensure_unique(((a.sale_id, a.line_no) for a in self.allocations), "allocation")
        return self


class RecordAdvance(Command):
    """Record an advance paid by the customer (``POST /v1/customers/{id}/advances``).

    Produced by the gateway; consumed by credit: money arriving while debt is open pays it
    first (and accrues bonus on that part), the rest becomes advance. Answered with
    ``credit.AdvanceRecorded``.
    """

    TYPE: ClassVar[str] = "credit.RecordAdvance"
    TOPIC: ClassVar[str] = POS_COMMANDS

    payment_id: UUID
    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    customer: CustomerSnapshot
    settings: ChainSettingsSnapshot
    card_number: CardNumber | None
    amount: PositiveMoney
    method: MoneyMethod
    occurred_at: AwareDatetime
    occurred_at_given: bool = False
    """True when the POS named ``occurred_at`` (an operation made offline): credit then refuses,
    with ``validation_error`` on ``occurred_at``, to put the money on a sale made after it (or,
    for a return, to return goods before their sale). False: the gateway's clock when it
    accepted the request, which may lag a concurrently accepted sale by moments."""


class RecordRefund(Command):
    """Pay advance back to the customer, "Return money" (``POST /v1/customers/{id}/refunds``).

    Produced by the gateway; consumed by credit, which refuses more than the advance
    (``insufficient_advance``) and otherwise answers with ``credit.RefundRecorded``.
    """

    TYPE: ClassVar[str] = "credit.RecordRefund"
    TOPIC: ClassVar[str] = POS_COMMANDS

    refund_id: UUID
    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    customer: CustomerSnapshot
    settings: ChainSettingsSnapshot
    card_number: CardNumber | None
    amount: PositiveMoney
    method: MoneyMethod
    occurred_at: AwareDatetime


class RecordReturn(Command):
    """Record goods brought back (``POST /v1/sales/{sale_id}/returns``).

    Produced by the gateway; consumed by credit, which cancels open debt on the goods, has
    loyalty restore spent bonus and reverse accrued bonus, refunds or keeps the rest as
    advance, and answers with ``credit.ReturnRecorded`` or ``credit.OperationRefused``
    (``return_exceeds_sold``).
    """

    TYPE: ClassVar[str] = "credit.RecordReturn"
    TOPIC: ClassVar[str] = POS_COMMANDS

    return_id: UUID
    sale_id: UUID
    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    customer: CustomerSnapshot | None
    """The sale's customer; null when the sale was anonymous."""
    settings: ChainSettingsSnapshot
    lines: Annotated[list[ReturnLineRequest], Field(min_length=1)]
    refund: RefundMethod
    """Where the real-money value goes: cash, card, or kept as advance."""
    occurred_at: AwareDatetime
    occurred_at_given: bool = False
    """True when the POS named ``occurred_at`` (an operation made offline): credit then refuses,
    with ``validation_error`` on ``occurred_at``, to put the money on a sale made after it (or,
    for a return, to return goods before their sale). False: the gateway's clock when it
    accepted the request, which may lag a concurrently accepted sale by moments."""

    @model_validator(mode="after")
    def _check_structure(self) -> Self:
        ensure_unique((line.line_no for line in self.lines), "line_no")
        if self.customer is None and self.refund is RefundMethod.ADVANCE:
            raise ValueError("an anonymous sale cannot be refunded as advance")
        return self


class RevokeDiscount(Command):
    """Revoke the discount of an overdue sale (``POST /v1/sales/{id}/revoke-discount``).

    Produced by the gateway for ``overdue_discount=offer`` (automatic revocation under
    ``revoke`` happens inside credit without a command); consumed by credit, which answers
    with ``credit.DiscountRevoked`` or ``credit.OperationRefused`` (``already_revoked``,
    ``not_overdue``), operation_id = sale_id.
    """

    TYPE: ClassVar[str] = "credit.RevokeDiscount"
    TOPIC: ClassVar[str] = POS_COMMANDS

    sale_id: UUID
    chain_id: UUID
    customer_id: UUID
    settings: ChainSettingsSnapshot
    requested_at: AwareDatetime


# --------------------------------------------------------------------------- gateway -> loyalty


class CancelPaymentBonus(Command):
    """Cancel the bonus accrued on one payment (``POST /v1/payments/{id}/bonus-type``).

    Produced by the gateway for the back office; consumed by loyalty, which reverses the
    accrual (the balance may go negative) and answers with ``loyalty.PaymentBonusCancelled``
    (``already=true`` the second time) or ``loyalty.BonusCancellationRefused``.
    """

    TYPE: ClassVar[str] = "loyalty.CancelPaymentBonus"
    TOPIC: ClassVar[str] = LOYALTY_COMMANDS

    payment_id: UUID
    chain_id: UUID
    customer_id: UUID
    requested_at: AwareDatetime


# --------------------------------------------------------------------------- master data


class ChainRegistered(Event):
    """A chain (tenant) was created (``POST /v1/chains``), with its initial settings.

    Produced by the gateway; consumed by credit, loyalty, reporting and notifier to know the
    chain's currency, time zone and settings.
    """

    TYPE: ClassVar[str] = "masterdata.ChainRegistered"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    name: Text
    settings: ChainSettingsSnapshot
    registered_at: AwareDatetime


class StoreRegistered(Event):
    """A store was added to a chain (``POST /v1/stores``).

    Produced by the gateway; consumed by reporting (per-store reports and statistics).
    """

    TYPE: ClassVar[str] = "masterdata.StoreRegistered"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    store_id: UUID
    code: Text
    name: Text
    registered_at: AwareDatetime


class TerminalRegistered(Event):
    """A terminal was added to a store (``POST /v1/stores/{id}/terminals``).

    Produced by the gateway; consumed by reporting. Never carries the API key.
    """

    TYPE: ClassVar[str] = "masterdata.TerminalRegistered"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    store_id: UUID
    terminal_id: UUID
    name: Text
    registered_at: AwareDatetime


class ChainSettingsChanged(Event):
    """The chain's settings changed (``PUT /v1/settings``); carries all of them after it.

    Produced by the gateway; consumed by credit (overdue scan, automatic discount revocation
    when switched to ``revoke``), loyalty (bonus expiry), notifier (reminder repeat, offer
    actions) and reporting (credit mode, currency).
    """

    TYPE: ClassVar[str] = "masterdata.ChainSettingsChanged"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    settings: ChainSettingsSnapshot
    changed_at: AwareDatetime


class CustomerRegistered(Event):
    """A customer was registered (``POST /v1/customers``), with the full record.

    Produced by the gateway; consumed by credit (limits, delays for the overdue scan),
    loyalty, reporting (names, VIP filter) and notifier (name and phone for tasks).
    """

    TYPE: ClassVar[str] = "masterdata.CustomerRegistered"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    customer: CustomerSnapshot
    registered_at: AwareDatetime


class CustomerUpdated(Event):
    """A customer's record changed (``PATCH``, or a card change); the full record after it.

    Produced by the gateway; consumed by credit, loyalty, reporting and notifier, like
    ``CustomerRegistered``.
    """

    TYPE: ClassVar[str] = "masterdata.CustomerUpdated"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    customer: CustomerSnapshot
    updated_at: AwareDatetime


class CardIssued(Event):
    """A new card was issued to a customer; the previous card, if any, is blocked by it.

    Produced by the gateway (``POST /v1/customers/{id}/cards``, or a card given at
    registration); consumed by reporting (card view) and notifier.
    """

    TYPE: ClassVar[str] = "masterdata.CardIssued"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    customer_id: UUID
    card_number: CardNumber
    previous_card_number: CardNumber | None
    """The card this one replaces, blocked from now on; null for a first card."""
    issued_at: AwareDatetime


class CardBlocked(Event):
    """A card was blocked (``POST /v1/cards/{number}/block``, e.g. reported lost).

    Produced by the gateway; consumed by reporting (card view). The gateway itself refuses
    blocked cards; other services only display the fact.
    """

    TYPE: ClassVar[str] = "masterdata.CardBlocked"
    TOPIC: ClassVar[str] = MASTERDATA_EVENTS

    chain_id: UUID
    customer_id: UUID
    card_number: CardNumber
    blocked_at: AwareDatetime
