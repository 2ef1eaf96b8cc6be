"""Request and response models of the public API (api.md), documented in /openapi.json.

Shared by the routes (which validate input with them) and the use cases (which take the
validated requests as their commands).

Requests refuse unknown fields and JSON numbers for money and quantities (decimal strings of
ASCII digits within the API's limits: `domain.limits`); integers and booleans are strict (no
"30" for 30, no "yes" for true).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Annotated, Any, Literal, Self
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from contracts.enums import (
    CreditMode,
    DebtPaymentKind,
    MoneyMethod,
    OverdueDiscountPolicy,
    PaymentMethod,
    RefundMethod,
    TaskClosedReason,
    TaskOutcome,
)
from contracts.money import Percent
from pos_gateway.domain.auth import Role
from pos_gateway.domain.cards import looks_like_payment_card
from pos_gateway.domain.currencies import is_iso_4217
from pos_gateway.domain.errors import PROBLEMS
from pos_gateway.domain.limits import RequestMoney, RequestPositiveMoney, RequestQuantity
from pos_gateway.domain.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from pos_gateway.domain.passwords import MIN_LENGTH as PASSWORD_MIN_LENGTH

Name = Annotated[
    str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=200)
]
ShortText = Annotated[
    str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64)
]
LongText = Annotated[str, StringConstraints(strict=True, max_length=4000)]
Email = Annotated[
    str,
    StringConstraints(
        strict=True, strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ),
]
CardNumber = Annotated[
    str,
    StringConstraints(
        strict=True, strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$"
    ),
]
Days = Annotated[StrictInt, Field(ge=0, le=3650)]
#: Lines of a sale at most (so a line number is at most this too).
MAX_LINES = 1000


def _not_a_payment_card(number: str) -> str:
    # refused before anything is stored: a PAN must never enter the database or the logs
    if looks_like_payment_card(number):
        raise ValueError("looks like a payment card number; use a loyalty card number")
    return number


#: A card number being stored (new customer, issued card): never a payment card number.
NewCardNumber = Annotated[CardNumber, AfterValidator(_not_a_payment_card)]


class Request(BaseModel):
    """A request body: unknown fields are errors, and so is a NUL character in any text
    (PostgreSQL text cannot hold it: it would fail at the database as a 500, found by
    schemathesis)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


def _refuse_nulls(model: BaseModel, nullable: set[str]) -> None:
    # a partial update may leave a field out, but null only clears fields that may be empty
    for name in model.model_fields_set:
        if getattr(model, name) is None and name not in nullable:
            raise ValueError(f"{name} may not be null")


# --------------------------------------------------------------------------- chains


@functools.cache
def _iana_zones() -> frozenset[str]:
    # read from the zoneinfo database once: listing it walks the files
    return frozenset(available_timezones()) | {"UTC"}


class ChainCreate(Request):
    name: Name
    currency: Annotated[
        str,
        StringConstraints(strict=True, pattern=r"^[A-Z]{3}$"),
        Field(description="An ISO 4217 currency code"),
    ] = "EUR"
    timezone: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=64),
        Field(description="An IANA time zone"),
    ] = "UTC"

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not is_iso_4217(value):
            raise ValueError("not an ISO 4217 currency code")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _iana_zones():
            raise ValueError("unknown IANA time zone")
        ZoneInfo(value)
        return value


class ChainCreated(BaseModel):
    chain_id: UUID
    admin_api_key: str


class ChainOut(BaseModel):
    chain_id: UUID
    name: str
    currency: str
    timezone: str
    created_at: str


class ChainPage(BaseModel):
    items: list[ChainOut]
    next: str | None


class AdminKeyOut(BaseModel):
    admin_api_key: str


class StoreCreate(Request):
    code: ShortText
    name: Name


class StoreOut(BaseModel):
    store_id: UUID
    code: str
    name: str


class TerminalCreate(Request):
    name: Name


class TerminalCreated(BaseModel):
    terminal_id: UUID
    api_key: str


class TerminalOut(BaseModel):
    terminal_id: UUID
    name: str
    created_at: str
    revoked_at: str | None


class StoreWithTerminals(BaseModel):
    store_id: UUID
    code: str
    name: str
    terminals: list[TerminalOut]


class StorePage(BaseModel):
    items: list[StoreWithTerminals]
    next: str | None


class TerminalRevoked(BaseModel):
    terminal_id: UUID
    revoked_at: str


class SettingsOut(BaseModel):
    credit_mode: CreditMode
    max_payment_delay_days: int
    overdue_discount: OverdueDiscountPolicy
    block_credit_when_overdue: bool
    reminder_repeat_days: int
    bonus_rate_percent: str
    bonus_expiry_days: int | None
    reminder_email: str | None = Field(
        default=None,
        description="Customer service's address: new and re-raised reminder tasks are mailed "
        "there as one digest per run with a link to each in the back office (null: no mail)",
    )


class SettingsUpdate(Request):
    """Any subset of the settings; fields left out keep their values."""

    credit_mode: CreditMode | None = None
    max_payment_delay_days: Days | None = None
    overdue_discount: OverdueDiscountPolicy | None = None
    block_credit_when_overdue: StrictBool | None = None
    reminder_repeat_days: Annotated[StrictInt, Field(ge=1, le=3650)] | None = None
    bonus_rate_percent: Percent | None = None
    bonus_expiry_days: Annotated[StrictInt, Field(ge=1, le=36500)] | None = None
    reminder_email: Email | None = None

    @model_validator(mode="after")
    def _nulls(self) -> Self:
        _refuse_nulls(self, {"bonus_expiry_days", "reminder_email"})
        return self


# --------------------------------------------------------------------------- staff

Password = Annotated[
    str,
    StringConstraints(strict=True, min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
]


class UserCreate(Request):
    email: Email
    name: Name
    role: Role
    password: Password


class UserOut(BaseModel):
    user_id: UUID
    email: str
    name: str
    role: Role
    created_at: AwareDatetime


class UserPage(BaseModel):
    items: list[UserOut]
    next: str | None


class UserDeleted(BaseModel):
    user_id: UUID
    email: str
    name: str
    role: Role
    deleted_at: AwareDatetime


class SessionCreate(Request):
    # no format check: whatever is wrong with the email, the answer is the same 401
    email: Annotated[str, StringConstraints(strict=True, max_length=254)]
    password: Annotated[str, StringConstraints(strict=True, max_length=PASSWORD_MAX_LENGTH)]


class SessionUser(BaseModel):
    user_id: UUID
    email: str
    name: str
    role: Role
    chain_id: UUID


class SessionChain(BaseModel):
    """The chain a user works for: what a back office needs to format money and dates."""

    chain_id: UUID
    name: str
    currency: str
    timezone: str


class SessionCreated(BaseModel):
    access_token: str
    expires_at: AwareDatetime
    user: SessionUser
    chain: SessionChain


class SessionOut(BaseModel):
    expires_at: AwareDatetime
    user: SessionUser
    chain: SessionChain


# --------------------------------------------------------------------------- customers


class CustomerCreate(Request):
    name: Name
    phone: ShortText
    email: Email | None = None
    vip: StrictBool = False
    card_number: NewCardNumber | None = None
    bonus_accrual: StrictBool = True
    credit_limit: RequestMoney | None = None
    max_payment_delay_days: Days | None = None


class CustomerPatch(Request):
    """Any creation field except the card (cards have their own endpoints)."""

    name: Name | None = None
    phone: ShortText | None = None
    email: Email | None = None
    vip: StrictBool | None = None
    bonus_accrual: StrictBool | None = None
    credit_limit: RequestMoney | None = None
    max_payment_delay_days: Days | None = None

    @model_validator(mode="after")
    def _nulls(self) -> Self:
        _refuse_nulls(self, {"email", "credit_limit", "max_payment_delay_days"})
        return self


class CustomerOut(BaseModel):
    customer_id: UUID
    name: str
    phone: str | None
    email: str | None
    vip: bool
    card_number: str | None
    bonus_accrual: bool
    credit_limit: str | None
    max_payment_delay_days: int | None
    debt: str
    advance: str
    bonus_balance: str
    credit_available: str | None
    overdue: bool


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next: str | None


class CardIssue(Request):
    card_number: NewCardNumber


class CardIssued(BaseModel):
    customer_id: UUID
    card_number: str


class CardBlockedOut(BaseModel):
    card_number: str
    blocked: bool


class OpenSaleLine(BaseModel):
    line_no: int
    name: str
    barcode: str | None
    amount_owed: str


class OpenSale(BaseModel):
    sale_id: UUID
    sold_at: str
    due_date: str | None
    amount_owed: str
    overdue: bool
    lines: list[OpenSaleLine] | None = None


class CardLookup(BaseModel):
    customer_id: UUID
    name: str
    vip: bool
    debt: str
    advance: str
    bonus_balance: str
    credit_limit: str | None
    credit_available: str | None
    overdue: bool
    open_sales: list[OpenSale]


# --------------------------------------------------------------------------- till


class SaleLineIn(Request):
    sku: Annotated[str, StringConstraints(strict=True, max_length=200)] | None = None
    barcode: Annotated[str, StringConstraints(strict=True, max_length=200)] | None = None
    name: Name
    quantity: RequestQuantity
    unit_price: RequestMoney
    discount: RequestMoney = Decimal("0")


class SalePaymentIn(Request):
    method: PaymentMethod
    amount: RequestPositiveMoney


class SaleCreate(Request):
    sale_id: UUID | None = None
    card_number: CardNumber | None = None
    customer_id: UUID | None = None
    occurred_at: AwareDatetime | None = None
    lines: Annotated[list[SaleLineIn], Field(min_length=1, max_length=MAX_LINES)]
    payments: Annotated[list[SalePaymentIn], Field(max_length=100)] = []
    change_to_advance: RequestMoney | None = None


class Balances(BaseModel):
    debt: str
    advance: str
    bonus_balance: str


class SalePaymentOut(BaseModel):
    payment_id: UUID
    method: PaymentMethod
    amount: str
    bonus_accrued: str


class SaleOutcome(BaseModel):
    sale_id: UUID
    status: Literal["completed"]
    sold_at: str
    total: str
    paid: str
    on_account: str
    advance_applied: str
    due_date: str | None
    bonus_accrued: str
    bonus_spent: str
    payments: list[SalePaymentOut]
    customer: Balances | None


class SaleLineOut(BaseModel):
    line_no: int
    sku: str | None
    barcode: str | None
    name: str
    quantity: str
    unit_price: str
    discount: str
    amount: str
    returned_quantity: str


class SaleRead(BaseModel):
    """Completed: the outcome plus its lines; pending: sale_id and status; refused: + code."""

    sale_id: UUID
    status: Literal["completed", "pending", "refused"]
    code: str | None = None
    detail: str | None = None
    lines: list[SaleLineOut] | None = None
    model_config = ConfigDict(extra="allow")


class Pending(BaseModel):
    status: Literal["pending"]
    status_url: str
    model_config = ConfigDict(extra="allow")


class AllocationIn(Request):
    sale_id: UUID
    line_no: Annotated[StrictInt, Field(ge=1, le=MAX_LINES)] | None = None
    amount: RequestPositiveMoney


class DebtPaymentCreate(Request):
    kind: DebtPaymentKind
    amount: RequestPositiveMoney | None = None
    method: MoneyMethod
    card_number: CardNumber | None = None
    occurred_at: AwareDatetime | None = None
    allocations: Annotated[list[AllocationIn], Field(max_length=1000)] = []


class AllocationOut(BaseModel):
    sale_id: UUID
    line_no: int | None
    amount: str


class DebtPaymentOut(BaseModel):
    payment_id: UUID
    amount: str
    allocated: list[AllocationOut]
    advance_added: str
    bonus_accrued: str
    customer: Balances


class MoneyAtTill(Request):
    """Money handed over at the till, either way: an advance paid in or a refund paid out.
    Each operation has its own subclass, so the OpenAPI keeps a schema of each name."""

    amount: RequestPositiveMoney
    method: MoneyMethod
    card_number: CardNumber | None = None
    occurred_at: AwareDatetime | None = None


class AdvanceCreate(MoneyAtTill):
    pass


class AdvanceOut(BaseModel):
    payment_id: UUID
    amount: str
    applied_to_debt: str
    advance_added: str
    bonus_accrued: str
    customer: Balances


class RefundCreate(MoneyAtTill):
    pass


class RefundOut(BaseModel):
    refund_id: UUID
    amount: str
    customer: Balances


class ReturnLineIn(Request):
    line_no: Annotated[StrictInt, Field(ge=1, le=MAX_LINES)]
    quantity: RequestQuantity


class ReturnCreate(Request):
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=1000)]
    refund: RefundMethod
    occurred_at: AwareDatetime | None = None


class ReturnOut(BaseModel):
    return_id: UUID
    value: str
    debt_cancelled: str
    bonus_restored: str
    refunded: str
    advance_added: str
    bonus_reversed: str
    customer: Balances | None


# --------------------------------------------------------------------------- back office


class BonusTypeUpdate(Request):
    bonus_type: Literal["none"]


class BonusTypeOut(BaseModel):
    payment_id: UUID
    bonus_cancelled: str
    customer: Balances


class RevokeDiscountOut(BaseModel):
    sale_id: UUID
    discount_revoked: str
    customer: Balances


class TaskComplete(Request):
    outcome: TaskOutcome
    note: LongText | None = None


class WebhookSet(Request):
    """Where the notifier posts new reminder tasks, signed with the secret the Standard
    Webhooks way. The URL is https and every address its host resolves to public: the
    notifier checks it (`422` naming `url`) and again at each delivery; only its
    `NOTIFIER_WEBHOOK_ALLOW_PRIVATE` setting (local testing) allows http and private ones. A
    secret `whsec_<base64>` is used as the Standard Webhooks libraries read it."""

    url: Annotated[
        str, StringConstraints(strict=True, max_length=2000, pattern=r"^https?://[^\s]+$")
    ]
    secret: Annotated[str, StringConstraints(strict=True, min_length=16, max_length=200)]


class PaymentBalanceFigures(BaseModel):
    opening: str
    goods: str
    payments: str
    closing: str


class PaymentBalanceRow(PaymentBalanceFigures):
    """One customer: closing = opening + payments - goods (negative: the customer owes)."""

    customer_id: UUID
    name: str


def _next_with_limit() -> Any:
    """`next` of an answer that pages only when asked: present with `limit` (null on the
    last page), absent without it."""
    return Field(
        default=None,
        description="With `limit`: the cursor of the next page (null "
        "on the last page); absent without `limit`",
    )


class PaymentBalanceReport(BaseModel):
    rows: list[PaymentBalanceRow]
    totals: PaymentBalanceFigures
    next: str | None = _next_with_limit()


class UnpaidGoodsRow(BaseModel):
    customer_id: UUID
    customer_name: str
    sale_id: UUID
    sold_at: str
    due_date: str | None
    days_overdue: int = Field(description="0 when not yet overdue")
    item: str = Field(description="The line's name and, when known, its barcode in brackets")
    barcode: str | None
    quantity: str
    amount_owed: str


class UnpaidGoodsReport(BaseModel):
    rows: list[UnpaidGoodsRow]
    next: str | None


class AgingFigures(BaseModel):
    current: str = Field(description="Debt not yet past its due date")
    d1_30: str
    d31_60: str
    d61_90: str
    d90_plus: str
    total: str


class AgingRow(AgingFigures):
    customer_id: UUID
    name: str


class AgingReport(BaseModel):
    rows: list[AgingRow]
    totals: AgingFigures
    next: str | None


class BonusMovements(BaseModel):
    """Gross bonus movements in the period."""

    accrued: str
    spent: str
    cancelled: str
    reversed: str
    restored: str
    expired: str


class BonusByStore(BonusMovements):
    store_id: UUID | None = Field(description="null for movements of no store (expiries)")
    name: str | None = Field(
        default=None, description="The store's name (null for movements of no store)"
    )


class BonusByCustomer(BonusMovements):
    customer_id: UUID
    name: str = Field(default="", description="The customer's name (empty until it is known)")
    balance: str = Field(description="The bonus balance at the end of the period")


class BonusStatistics(BonusMovements):
    outstanding: str = Field(description="Every bonus balance at the end of the period, summed")
    by_store: list[BonusByStore]
    by_customer: list[BonusByCustomer]
    next: str | None = Field(description="The cursor of `by_customer`'s next page")


class StatementEntry(BaseModel):
    at: str
    kind: str = Field(
        description="`sale`, `payment`, `advance`, `refund`, `return`, "
        "`discount_revoked` or `bonus_<movement>`"
    )
    sale_id: UUID | None
    payment_id: UUID | None
    description: str
    debt_change: str
    advance_change: str
    bonus_change: str
    debt: str
    advance: str
    bonus_balance: str


class Statement(BaseModel):
    customer_id: UUID
    opening: Balances
    entries: list[StatementEntry]
    closing: Balances
    next: str | None = _next_with_limit()


class TaskSale(BaseModel):
    sale_id: UUID
    due_date: str
    amount_owed: str


class TaskAction(BaseModel):
    action: Literal["revoke_discount"]
    sale_id: UUID
    href: str


class CompletedBy(BaseModel):
    user_id: UUID
    name: str


class TaskOut(BaseModel):
    """A reminder task: open ones show the customer's overdue sales now, closed ones their
    last."""

    task_id: UUID
    customer_id: UUID
    customer_name: str
    phone: str | None
    level: int = Field(description="1, then one more each time the task is raised again")
    status: Literal["open", "done"]
    overdue_amount: str
    days_overdue: int
    sales: list[TaskSale]
    created_at: str
    raised_at: str
    closed_at: str | None
    closed_reason: TaskClosedReason | None
    outcome: TaskOutcome | None
    note: str | None
    completed_by: CompletedBy | None = Field(
        description="The staff user whose token completed it (null for the chain admin key)"
    )
    actions: list[TaskAction]


class TaskPage(BaseModel):
    items: list[TaskOut]
    next: str | None


class WebhookOut(BaseModel):
    url: str
    configured: Literal[True]


class OperationStatus(BaseModel):
    """Where a `202` points. Pending: the id field and the status; refused: also `code` and
    `detail`; completed: the status and the operation's `201` answer (its fields below are
    those of that answer)."""

    status: Literal["completed", "pending", "refused"]
    code: str | None = None
    detail: str | None = None
    model_config = ConfigDict(extra="allow")


class FieldError(BaseModel):
    field: str = Field(description="`lines.0.unit_price`, a query parameter, a header, or `body`")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with the API's stable `code` (one of the enum; api.md
    "Error codes" lists the business ones, the others are infrastructure answers)."""

    type: str = Field(default="about:blank", description="`/problems/<code>`")
    title: str
    status: int
    detail: str
    code: Annotated[str, Field(json_schema_extra={"enum": list(PROBLEMS)})]
    errors: list[FieldError] | None = Field(
        default=None, description="`validation_error` only: each field that is wrong"
    )
    model_config = ConfigDict(extra="allow")


JSON = dict[str, Any]
