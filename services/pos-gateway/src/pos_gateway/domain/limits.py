"""The API's limits on decimal strings in requests (api.md, Conventions, "Limits").

A decimal string is ASCII digits with at most one `.`: no sign, no spaces, no exponent and no
other script's digits (Python's `\\d` and `Decimal()` both take Arabic-Indic or fullwidth "10"
as 10, so neither may decide what is a digit). Money in a request is below 10^12, a quantity
below 10^6 with at most 3 decimals; a line amount and a sale total are below 10^12 too. With
these bounds every figure a request can produce fits the NUMERIC(18,4) columns behind it, so no
input that passes validation can fail later as a database overflow.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from contracts.money import MAX_MONEY_SCALE, decimal_to_str

#: Money in a request, a line amount and a sale total are below this.
MONEY_LIMIT = Decimal(10) ** 12
#: Quantities are below this ...
QUANTITY_LIMIT = Decimal(10) ** 6
#: ... with at most this many decimals.
QUANTITY_SCALE = 3

# ASCII only: `[0-9]`, never `\d` (which matches every script's digits in a str pattern).
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# Longer strings are refused before any parsing (leading zeros may pad a small value, but not
# without bound).
_MAX_LENGTH = 40


def _scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def parse_request_decimal(
    value: object, *, what: str, max_scale: int, below: Decimal, positive: bool
) -> Decimal:
    """The Decimal of a request's decimal string, or ValueError saying what is wrong."""
    if not isinstance(value, str):
        # bool is an int, int and float are JSON numbers: all refused on purpose
        raise ValueError(
            f"{what} must be a decimal string, not a JSON number or {type(value).__name__}"
        )
    if len(value) > _MAX_LENGTH or not _DECIMAL.fullmatch(value):
        raise ValueError(
            f'{what} must be a decimal string of ASCII digits like "12.50" (at most one ".", '
            "no sign, no exponent, no spaces)"
        )
    result = Decimal(value)
    if _scale(result) > max_scale:
        raise ValueError(f"{what} has at most {max_scale} decimals")
    if result >= below:
        raise ValueError(f"{what} must be below {decimal_to_str(below)}")
    if positive and result == 0:
        raise ValueError(f"{what} must be greater than 0")
    return result


def _type(
    *,
    what: str,
    max_scale: int,
    below: Decimal,
    positive: bool,
    description: str,
    examples: list[str],
) -> Any:
    digits = len(decimal_to_str(below)) - 1
    schema: dict[str, Any] = {
        "type": "string",
        "format": "decimal",
        "pattern": rf"^[0-9]{{1,{digits}}}(\.[0-9]{{1,{max_scale}}})?$",
        "description": description,
        "examples": examples,
    }
    if positive:
        schema["not"] = {"pattern": r"^0+(\.0+)?$"}

    def validate(value: object) -> Decimal:
        return parse_request_decimal(
            value, what=what, max_scale=max_scale, below=below, positive=positive
        )

    return Annotated[
        Decimal,
        PlainValidator(validate),
        PlainSerializer(decimal_to_str, return_type=str, when_used="json"),
        WithJsonSchema(schema),
    ]


RequestMoney = _type(
    what="money",
    max_scale=MAX_MONEY_SCALE,
    below=MONEY_LIMIT,
    positive=False,
    description="Money >= 0 and below 10^12 as a decimal string of ASCII digits, with at most "
    "the currency's minor-unit digits; never a JSON number.",
    examples=["12.50", "0.00"],
)
"""Money >= 0 in a request: prices, discounts, a credit limit, change kept."""

RequestPositiveMoney = _type(
    what="money",
    max_scale=MAX_MONEY_SCALE,
    below=MONEY_LIMIT,
    positive=True,
    description="Money > 0 and below 10^12 as a decimal string of ASCII digits, with at most "
    "the currency's minor-unit digits; never a JSON number.",
    examples=["12.50"],
)
"""Money > 0 in a request: what is tendered, paid or refunded."""

RequestQuantity = _type(
    what="quantity",
    max_scale=QUANTITY_SCALE,
    below=QUANTITY_LIMIT,
    positive=True,
    description='A quantity > 0 and below 10^6 with at most 3 decimals ("1", "0.75" kg), '
    "as a decimal string of ASCII digits.",
    examples=["1", "0.75"],
)
"""A quantity of goods sold or returned."""
