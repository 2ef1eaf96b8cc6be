"""The services' money helpers round and format as they did before they used `contracts.money`:
the formulas they had are written out here as the reference, and every helper agrees with them
to the last digit over the whole range of money the contracts accept."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from credit.service_layer.outcomes import Money
from notifier.service_layer import tasks as notifier_tasks
from pos_gateway.domain import money as gateway_money
from pos_gateway.service_layer.operations import render_outcome_money
from reporting.domain.model import money_str

#: what the contracts accept: up to 15 integer digits and 6 decimals (quantities), signed
AMOUNTS = st.decimals(
    min_value=Decimal("-999999999999999.999999"),
    max_value=Decimal("999999999999999.999999"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)
MINOR_UNITS = st.integers(min_value=0, max_value=4)


def _old_quantize(value: Decimal, minor_units: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-minor_units), rounding=ROUND_HALF_UP)


def _old_format(value: Decimal, minor_units: int) -> str:
    return format(_old_quantize(value, minor_units), "f")


def _old_quantity(value: Decimal) -> str:
    if value == value.to_integral_value():
        return format(value.quantize(Decimal(1)), "f")
    return format(value.normalize(), "f")


@given(AMOUNTS, MINOR_UNITS)
def test_every_money_formatter_gives_the_digits_the_old_formula_gave(
    value: Decimal, minor_units: int
) -> None:
    expected = _old_format(value, minor_units)
    assert gateway_money.fmt_money(value, minor_units) == expected
    assert gateway_money.fmt_money(str(value), minor_units) == expected
    assert render_outcome_money(str(value), minor_units) == expected
    assert money_str(value, minor_units) == expected
    assert notifier_tasks.money(value, minor_units) == expected


@given(AMOUNTS, MINOR_UNITS)
def test_every_money_rounding_gives_the_amount_the_old_formula_gave(
    value: Decimal, minor_units: int
) -> None:
    expected = _old_quantize(value, minor_units)
    for rounded in (gateway_money.money(value, minor_units), Money(minor_units)(value)):
        assert rounded == expected
        assert rounded.as_tuple() == expected.as_tuple()  # the same digits, not only equal
    assert gateway_money.fits_minor_units(value, minor_units) is (value == expected)


@given(AMOUNTS.filter(lambda q: q > 0))
def test_quantities_are_shown_as_the_old_formula_showed_them(quantity: Decimal) -> None:
    assert gateway_money.fmt_quantity(quantity) == _old_quantity(quantity)
    assert gateway_money.fmt_quantity(str(quantity)) == _old_quantity(quantity)
