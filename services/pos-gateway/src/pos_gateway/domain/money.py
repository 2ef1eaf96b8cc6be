"""Money and quantity arithmetic: Decimal end to end, half-up to the currency's minor units."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from contracts.money import quantize_money
from pos_gateway.domain.currencies import MINOR_UNITS


def minor_units_of(currency: str) -> int:
    """The currency's ISO 4217 minor units (KeyError for a code that is not ISO 4217)."""
    return MINOR_UNITS[currency]


def has_at_most_scale(value: Decimal, minor_units: int) -> bool:
    """False when `value` has non-zero digits below the minor unit ("1.005" in EUR)."""
    return value == value.quantize(Decimal(1).scaleb(-minor_units), rounding=ROUND_HALF_UP)


def money(value: Decimal, minor_units: int) -> Decimal:
    return quantize_money(value, minor_units)


def fmt_money(value: Decimal | str | None, minor_units: int) -> str | None:
    """Exactly the currency's minor-unit digits, as the API answers money ("12.50")."""
    if value is None:
        return None
    return format(quantize_money(Decimal(value), minor_units), "f")


def fmt_quantity(value: Decimal | str) -> str:
    """A quantity without trailing zeros ("1", "0.75"), never in exponent notation."""
    d = Decimal(value)
    if d == d.to_integral_value():
        return format(d.quantize(Decimal(1)), "f")
    return format(d.normalize(), "f")


def line_amount(
    quantity: Decimal, unit_price: Decimal, discount: Decimal, minor_units: int
) -> Decimal:
    """quantity x unit_price rounded half-up to the minor unit, minus the line's discount."""
    return quantize_money(quantity * unit_price, minor_units) - discount
