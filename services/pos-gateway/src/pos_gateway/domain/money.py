"""Money and quantity arithmetic: Decimal end to end, half-up to the currency's minor units.

Rounding and formatting are `contracts.money`'s (one rule for every service); this module adds
what only the gateway needs: the currency table and the line arithmetic."""

from __future__ import annotations

from decimal import Decimal

from contracts.money import fits_minor_units, format_money, format_quantity, quantize_money
from pos_gateway.domain.currencies import MINOR_UNITS

__all__ = [
    "fits_minor_units",
    "fmt_money",
    "fmt_quantity",
    "line_amount",
    "minor_units_of",
    "money",
]

#: the gateway's short name for `contracts.money.quantize_money`
money = quantize_money


def minor_units_of(currency: str) -> int:
    """The currency's ISO 4217 minor units (KeyError for a code that is not ISO 4217)."""
    return MINOR_UNITS[currency]


def fmt_money(value: Decimal | str | None, minor_units: int) -> str | None:
    """Exactly the currency's minor-unit digits, as the API answers money ("12.50"); None stays
    None (a field the answer leaves empty)."""
    if value is None:
        return None
    return format_money(Decimal(value), minor_units)


def fmt_quantity(value: Decimal | str) -> str:
    """A quantity without trailing zeros ("1", "0.75"), never in exponent notation."""
    return format_quantity(Decimal(value))


def line_amount(
    quantity: Decimal, unit_price: Decimal, discount: Decimal, minor_units: int
) -> Decimal:
    """quantity x unit_price rounded half-up to the minor unit, minus the line's discount."""
    return quantize_money(quantity * unit_price, minor_units) - discount
