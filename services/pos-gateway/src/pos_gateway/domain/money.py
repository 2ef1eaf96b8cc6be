"""Money and quantity arithmetic: Decimal end to end, half-up to the currency's minor units."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from contracts.money import quantize_money

#: ISO 4217 minor units of the currencies that do not use 2 digits.
_MINOR_UNITS = {
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "CLF": 4, "UYW": 4,
}  # fmt: skip


def minor_units_of(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


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
