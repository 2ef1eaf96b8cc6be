"""Builders for tests of the credit service: sales, lines and payments with readable defaults."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from contracts.credit.v1 import ApplyBonuses
from contracts.enums import DebtPaymentKind, MoneyMethod, PaymentMethod, RefundMethod
from contracts.gateway.v1 import (
    AllocationRequest,
    ChainSettingsSnapshot,
    CustomerSnapshot,
    RecordAdvance,
    RecordDebtPayment,
    RecordRefund,
    RecordReturn,
    RecordSale,
    ReturnLineRequest,
    RevokeDiscount,
    SaleLine,
    SalePayment,
)
from contracts.loyalty.v1 import BonusesApplied, BonusesRefused, PaymentBonus
from credit.domain.model import AllocationRequest as LedgerAllocation
from credit.domain.model import (
    Ledger,
    Line,
    Method,
    Mode,
    MoneyInOutcome,
    Payment,
    ReturnOutcome,
    ReturnRequest,
    Sale,
    SaleOutcome,
    due_date_for,
)

DAY0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
STORE = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
TERMINAL = uuid.UUID("00000000-0000-0000-0000-0000000000bb")


def D(value: str | int | Decimal) -> Decimal:
    return Decimal(str(value))


def day(n: int) -> datetime:
    return DAY0 + timedelta(days=n)


def local(n: int) -> date:
    return day(n).date()


class LineOptions(TypedDict, total=False):
    """What a test's receipt line may set besides its number and amount: by default one item,
    no discount, named "item <line_no>", no barcode."""

    discount: str
    name: str | None
    barcode: str | None
    quantity: str


class _LineFields(TypedDict):
    line_no: int
    name: str
    barcode: str | None
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    amount: Decimal


def _line_fields(line_no: int, amount: str, options: LineOptions) -> _LineFields:
    """A receipt line: `quantity` at the unit price that, less `discount`, comes to `amount`
    (rounded to cents)."""
    discount = options.get("discount", "0.00")
    qty = Decimal(options.get("quantity", "1"))
    gross = Decimal(amount) + Decimal(discount)
    return _LineFields(
        line_no=line_no,
        name=options.get("name") or f"item {line_no}",
        barcode=options.get("barcode"),
        quantity=qty,
        unit_price=(gross / qty).quantize(Decimal("0.01")),
        discount=Decimal(discount),
        amount=Decimal(amount),
    )


def line(line_no: int, amount: str, **options: Unpack[LineOptions]) -> Line:
    return Line(**_line_fields(line_no, amount, options))


def pay(method: str, amount: str) -> Payment:
    return Payment(uuid.uuid4(), Method(method), D(amount))


def sale(
    lines: list[Line],
    payments: list[Payment],
    *,
    at: int = 0,
    delay: int = 30,
    sale_id: uuid.UUID | None = None,
) -> Sale:
    return Sale(
        sale_id=sale_id or uuid.uuid4(),
        store_id=STORE,
        sold_at=day(at),
        local_date=local(at),
        due_date=due_date_for(local(at), delay),
        lines=tuple(lines),
        payments=tuple(payments),
    )


# --------------------------------------------------------------------------- ledger operations


def vip_sale(
    ledger: Ledger,
    s: Sale,
    *,
    limit: str | None = None,
    block: bool = False,
    change: str = "0.00",
    change_to_advance: str = "0.00",
    today: date | None = None,
) -> SaleOutcome:
    """`s` sold to a known VIP customer (no credit limit, not blocked unless said)."""
    return ledger.record_sale(
        sale=s,
        customer_known=True,
        vip=True,
        credit_limit=D(limit) if limit is not None else None,
        block_credit_when_overdue=block,
        change=D(change),
        change_to_advance=D(change_to_advance),
        today=today or s.local_date,
    )


def take_money(
    ledger: Ledger,
    amount: str | Decimal,
    *,
    at: int,
    mode: Mode,
    method: Method = Method.CASH,
    allocations: list[LedgerAllocation] | None = None,
    dated: bool = False,
) -> MoneyInOutcome:
    """`amount` paid towards the debt on day `at`."""
    return ledger.take_money(
        payment_id=uuid.uuid4(),
        amount=D(amount),
        method=method,
        at=day(at),
        mode=mode,
        allocations=allocations or (),
        dated=dated,
    )


def return_goods(
    ledger: Ledger,
    sale_id: uuid.UUID,
    *,
    at: int,
    quantity: str = "1",
    line_no: int = 1,
    mode: Mode = Mode.PER_ITEM,
    refund: Method = Method.CASH,
    dated: bool = False,
) -> ReturnOutcome:
    """`quantity` of line `line_no` of the sale brought back on day `at`."""
    return ledger.record_return(
        return_id=uuid.uuid4(),
        sale_id=sale_id,
        lines=[ReturnRequest(line_no, D(quantity))],
        refund=refund,
        at=day(at),
        mode=mode,
        dated=dated,
    )


# --------------------------------------------------------------------------- commands


def settings_snapshot(**overrides: object) -> ChainSettingsSnapshot:
    values: dict[str, object] = {
        "credit_mode": "per_sale",
        "max_payment_delay_days": 30,
        "overdue_discount": "keep",
        "block_credit_when_overdue": False,
        "reminder_repeat_days": 7,
        "bonus_rate_percent": "10.00",
        "bonus_expiry_days": None,
        "timezone": "Europe/Bucharest",
        "currency": "EUR",
        "minor_units": 2,
    }
    values.update(overrides)
    return ChainSettingsSnapshot.model_validate(values)


def customer_snapshot(
    customer_id: uuid.UUID | None = None, **overrides: object
) -> CustomerSnapshot:
    values: dict[str, object] = {
        "customer_id": str(customer_id or uuid.uuid4()),
        "name": "Ana Pop",
        "phone": "+40700000000",
        "vip": True,
        "bonus_accrual": True,
        "credit_limit": None,
        "max_payment_delay_days": None,
        "card_number": "VIP-1",
    }
    values.update(overrides)
    return CustomerSnapshot.model_validate(values)


def sale_line(line_no: int, amount: str, **options: Unpack[LineOptions]) -> SaleLine:
    return SaleLine(sku=None, **_line_fields(line_no, amount, options))


def _till(
    chain_id: uuid.UUID, customer: CustomerSnapshot | None, settings: ChainSettingsSnapshot
) -> dict[str, Any]:
    """What every command from the till (STORE, TERMINAL) carries."""
    return {
        "chain_id": chain_id,
        "store_id": STORE,
        "terminal_id": TERMINAL,
        "customer": customer,
        "settings": settings,
    }


def record_sale(
    *,
    chain_id: uuid.UUID,
    customer: CustomerSnapshot | None,
    lines: list[SaleLine],
    payments: list[tuple[str, str]],
    settings: ChainSettingsSnapshot,
    sold_at: datetime,
    change: str = "0.00",
    change_to_advance: str = "0.00",
    sale_id: uuid.UUID | None = None,
) -> RecordSale:
    return RecordSale(
        sale_id=sale_id or uuid.uuid4(),
        **_till(chain_id, customer, settings),
        card_number=customer.card_number if customer else None,
        sold_at=sold_at,
        lines=lines,
        payments=[
            SalePayment(payment_id=uuid.uuid4(), method=PaymentMethod(mth), amount=Decimal(amt))
            for mth, amt in payments
        ],
        total=sum((x.amount for x in lines), Decimal(0)),
        change=Decimal(change),
        change_to_advance=Decimal(change_to_advance),
    )


def one_line_sale(
    chain_id: uuid.UUID,
    customer: CustomerSnapshot | None,
    settings: ChainSettingsSnapshot,
    amount: str,
    *,
    at: int = 0,
    paid_with: str = "on_account",
    sale_id: uuid.UUID | None = None,
    **line: Unpack[LineOptions],
) -> RecordSale:
    """A sale of one line of `amount` (with the `line` options) on day `at`, all of it paid one
    way (on account)."""
    return record_sale(
        chain_id=chain_id,
        customer=customer,
        settings=settings,
        sold_at=day(at),
        lines=[sale_line(1, amount, **line)],
        payments=[(paid_with, amount)],
        sale_id=sale_id,
    )


def record_payment(
    *,
    chain_id: uuid.UUID,
    customer: CustomerSnapshot,
    settings: ChainSettingsSnapshot,
    at: datetime,
    amount: str | None,
    method: str = "cash",
    allocations: list[tuple[uuid.UUID, int | None, str]] | None = None,
    payment_id: uuid.UUID | None = None,
) -> RecordDebtPayment:
    return RecordDebtPayment(
        payment_id=payment_id or uuid.uuid4(),
        **_till(chain_id, customer, settings),
        card_number=customer.card_number,
        kind=DebtPaymentKind.TAKE_MONEY if amount is not None else DebtPaymentKind.PAY_DEBT,
        amount=Decimal(amount) if amount is not None else None,
        method=MoneyMethod(method),
        allocations=[
            AllocationRequest(sale_id=s, line_no=ln, amount=Decimal(a))
            for s, ln, a in (allocations or [])
        ],
        occurred_at=at,
    )


class CashAtTill(TypedDict):
    """An advance or a refund paid in cash at `at`, at the till (STORE, TERMINAL)."""

    chain_id: uuid.UUID
    customer: CustomerSnapshot
    settings: ChainSettingsSnapshot
    at: datetime
    amount: str


def _cash_at_till(cash: CashAtTill) -> dict[str, Any]:
    """What an advance or a refund carries besides its own id."""
    return {
        **_till(cash["chain_id"], cash["customer"], cash["settings"]),
        "card_number": cash["customer"].card_number,
        "amount": Decimal(cash["amount"]),
        "method": MoneyMethod.CASH,
        "occurred_at": cash["at"],
    }


def record_advance(**cash: Unpack[CashAtTill]) -> RecordAdvance:
    return RecordAdvance(payment_id=uuid.uuid4(), **_cash_at_till(cash))


def record_refund(**cash: Unpack[CashAtTill]) -> RecordRefund:
    return RecordRefund(refund_id=uuid.uuid4(), **_cash_at_till(cash))


def record_return(
    *,
    chain_id: uuid.UUID,
    customer: CustomerSnapshot | None,
    sale_id: uuid.UUID,
    settings: ChainSettingsSnapshot,
    at: datetime,
    lines: list[tuple[int, str]],
    refund: str = "cash",
) -> RecordReturn:
    return RecordReturn(
        return_id=uuid.uuid4(),
        sale_id=sale_id,
        **_till(chain_id, customer, settings),
        lines=[ReturnLineRequest(line_no=n, quantity=Decimal(q)) for n, q in lines],
        refund=RefundMethod(refund),
        occurred_at=at,
    )


def one_item_return(
    sale: RecordSale, line_no: int, *, at: int, refund: str = "cash"
) -> RecordReturn:
    """One item of the sale's line `line_no` comes back on day `at`, at the sale's till."""
    return record_return(
        chain_id=sale.chain_id,
        customer=sale.customer,
        sale_id=sale.sale_id,
        settings=sale.settings,
        at=day(at),
        lines=[(line_no, "1")],
        refund=refund,
    )


def revoke(
    *,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    sale_id: uuid.UUID,
    settings: ChainSettingsSnapshot,
    at: datetime,
) -> RevokeDiscount:
    return RevokeDiscount(
        sale_id=sale_id,
        chain_id=chain_id,
        customer_id=customer_id,
        settings=settings,
        requested_at=at,
    )


def bonuses_refused(cmd: ApplyBonuses, balance: Decimal) -> BonusesRefused:
    """Loyalty's refusal of `cmd` for want of bonus, the customer's balance being `balance`."""
    return BonusesRefused(
        operation_id=cmd.operation_id,
        operation_kind=cmd.operation_kind,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        code="insufficient_bonus",
        detail="not enough bonus",
        balance=balance,
    )


def bonuses_applied(
    cmd: ApplyBonuses, accrued: list[PaymentBonus], balance_after: Decimal
) -> BonusesApplied:
    """Loyalty's answer applying `cmd`: its spend and restore as asked, `accrued` per payment."""
    return BonusesApplied(
        operation_id=cmd.operation_id,
        operation_kind=cmd.operation_kind,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        spent=cmd.spend,
        accrued=sum((a.amount for a in accrued), Decimal(0)),
        accrued_by_payment=accrued,
        restored=cmd.restore_up_to,
        reversed=Decimal("0.00"),
        reversed_by_payment=[],
        balance_after=balance_after,
    )
