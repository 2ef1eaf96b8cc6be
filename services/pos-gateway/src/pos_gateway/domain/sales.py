"""The static checks of a till operation the gateway owns: arithmetic, card rules, time.

Everything else (limits, overdue, advance, bonus balance) is credit's and loyalty's to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from contracts.enums import PaymentMethod
from contracts.gateway.v1 import SaleLine
from pos_gateway.domain.errors import GatewayError, ValidationFailed, invalid
from pos_gateway.domain.limits import MONEY_LIMIT
from pos_gateway.domain.money import fits_minor_units, line_amount, money

_ZERO = Decimal(0)


class LineIn(Protocol):
    """A receipt line as the till sends it (the request body's `SaleLineIn` is one): priced,
    it becomes the command's `SaleLine`, the one shape credit receives and answers with."""

    @property
    def sku(self) -> str | None: ...
    @property
    def barcode(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def unit_price(self) -> Decimal: ...
    @property
    def discount(self) -> Decimal: ...


@dataclass(frozen=True)
class PaymentIn:
    method: PaymentMethod
    amount: Decimal


@dataclass(frozen=True)
class PricedSale:
    lines: tuple[SaleLine, ...]
    total: Decimal
    change: Decimal
    change_to_advance: Decimal


def check_money_scale(fields: Sequence[tuple[str, Decimal | None]], minor_units: int) -> None:
    """Refuse money with more decimals than the chain's currency has (all errors at once)."""
    errors = [
        {"field": name, "message": f"money has at most {minor_units} decimals in this currency"}
        for name, value in fields
        if value is not None and not fits_minor_units(value, minor_units)
    ]
    if errors:
        raise ValidationFailed(errors)


def price_sale(
    lines: Sequence[LineIn],
    payments: Sequence[PaymentIn],
    change_to_advance: Decimal | None,
    minor_units: int,
) -> PricedSale:
    """Number and price the lines, and check that the payments add up.

    Sum of payments = total + change; change comes only from cash; the change kept as advance
    may not exceed the change.
    """
    check_money_scale(
        [(f"lines.{i}.unit_price", ln.unit_price) for i, ln in enumerate(lines)]
        + [(f"lines.{i}.discount", ln.discount) for i, ln in enumerate(lines)]
        + [(f"payments.{i}.amount", p.amount) for i, p in enumerate(payments)]
        + [("change_to_advance", change_to_advance)],
        minor_units,
    )
    amounts = _line_amounts(lines, minor_units)
    total = sum(amounts, _ZERO)
    tendered = sum((p.amount for p in payments), _ZERO)
    _check_sums(total, tendered)
    change, kept = _change(payments, total, tendered, change_to_advance)
    priced = tuple(
        SaleLine(
            line_no=i,
            sku=ln.sku or None,
            barcode=ln.barcode or None,
            name=ln.name,
            quantity=ln.quantity,
            unit_price=money(ln.unit_price, minor_units),
            discount=money(ln.discount, minor_units),
            amount=money(amount, minor_units),
        )
        for i, (ln, amount) in enumerate(zip(lines, amounts, strict=True), 1)
    )
    return PricedSale(priced, total, change, kept)


def _line_amounts(lines: Sequence[LineIn], minor_units: int) -> list[Decimal]:
    """Each line's amount; every line that is negative or too large is named at once."""
    amounts: list[Decimal] = []
    errors: list[dict[str, str]] = []
    for i, ln in enumerate(lines):
        amount = line_amount(ln.quantity, ln.unit_price, ln.discount, minor_units)
        amounts.append(amount)
        if amount < _ZERO:
            errors.append(
                {"field": f"lines.{i}.discount", "message": "the discount exceeds the line's value"}
            )
        elif amount >= MONEY_LIMIT:
            errors.append(
                {
                    "field": f"lines.{i}",
                    "message": "the line's amount (quantity x unit_price - discount) "
                    f"must be below {MONEY_LIMIT:f}",
                }
            )
    if errors:
        raise ValidationFailed(errors)
    return amounts


def _check_sums(total: Decimal, tendered: Decimal) -> None:
    """Each line and each payment is within the limits; their sums must be too (the change is
    what was tendered beyond the total, so bounding both bounds it)."""
    errors: list[dict[str, str]] = []
    if total >= MONEY_LIMIT:
        errors.append(
            {"field": "lines", "message": f"the sale total must be below {MONEY_LIMIT:f}"}
        )
    if tendered >= MONEY_LIMIT:
        errors.append(
            {
                "field": "payments",
                "message": f"the payments must add up to less than {MONEY_LIMIT:f}",
            }
        )
    if errors:
        raise ValidationFailed(errors)


def _change(
    payments: Sequence[PaymentIn],
    total: Decimal,
    tendered: Decimal,
    change_to_advance: Decimal | None,
) -> tuple[Decimal, Decimal]:
    """The change and the part of it kept as advance: change comes only from cash, and no more
    than the change can be kept."""
    cash = sum((p.amount for p in payments if p.method is PaymentMethod.CASH), _ZERO)
    change = tendered - total
    if change < _ZERO:
        raise GatewayError(
            "payment_mismatch", f"payments ({tendered}) are less than the total ({total})"
        )
    if change > cash:
        raise GatewayError(
            "payment_mismatch",
            f"payments exceed the total by {change}, but change can only come from cash",
        )
    kept = change_to_advance if change_to_advance is not None else _ZERO
    if kept > change:
        raise GatewayError(
            "payment_mismatch", f"change_to_advance ({kept}) exceeds the change ({change})"
        )
    return change, kept


_CARD_METHODS = frozenset({PaymentMethod.ON_ACCOUNT, PaymentMethod.BONUS, PaymentMethod.ADVANCE})


def check_sale_customer_rules(
    payments: Sequence[PaymentIn],
    *,
    has_card: bool,
    customer_vip: bool | None,
    change_to_advance: Decimal,
) -> None:
    """Card and VIP rules: a customer id alone only earns bonus, it never spends or owes.

    `customer_vip` is None for an anonymous sale.
    """
    methods = {p.method for p in payments}
    if not has_card:
        needing = sorted(m.value for m in methods & _CARD_METHODS)
        if needing:
            raise GatewayError(
                "card_required", f"payments by {', '.join(needing)} need the customer's card"
            )
        if change_to_advance > _ZERO:
            raise GatewayError("card_required", "keeping change as advance needs the card")
    if PaymentMethod.ON_ACCOUNT in methods and not customer_vip:
        raise GatewayError("not_vip", "only VIP customers may buy on account")


def check_occurred_at(
    occurred_at: datetime | None,
    now: datetime,
    *,
    max_days: int,
    skew: timedelta,
    field: str = "occurred_at",
) -> datetime:
    """When the operation happened: now, or an offline time up to `max_days` back."""
    if occurred_at is None:
        return now
    if occurred_at < now - timedelta(days=max_days):
        raise invalid(field, f"may be at most {max_days} days in the past")
    if occurred_at > now + skew:
        raise invalid(field, "may not be in the future")
    return occurred_at
