"""Decimal types for money, quantities and percentages in messages.

Money travels as a JSON *string* ("12.50") and is a ``Decimal`` in Python. A JSON number is
refused on input, even ``12.5``: a float has already lost the exact value by the time a
validator sees it, and accepting it once makes every producer sloppy. Python ``float`` and
``int`` are refused for the same reason; ``str`` and ``Decimal`` are the only inputs. NaN and
infinities are refused. The value keeps the digits it was given (``"12.50"`` stays
``"12.50"``, never ``"12.5"`` nor ``"1.25E+1"``), so the producer decides the minor units.
"""

from __future__ import annotations

import operator
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

__all__ = [
    "MAX_MONEY_SCALE",
    "Money",
    "NonNegativeMoney",
    "Percent",
    "PositiveMoney",
    "Quantity",
    "decimal_to_str",
    "fits_minor_units",
    "format_money",
    "format_quantity",
    "quantize_money",
]

#: ISO 4217 has currencies with up to 4 minor-unit digits (CLF); more is surely a bug.
MAX_MONEY_SCALE = 4
MAX_QUANTITY_SCALE = 6
_MAX_INTEGER_DIGITS = 15

_HUNDRED = Decimal(100)


def decimal_to_str(value: Decimal) -> str:
    """Plain positional notation with the value's own digits: 1.50 -> "1.50", 1E+2 -> "100"."""
    return format(value, "f")


#: the minor unit of 0 to 8 decimals (`Decimal(1).scaleb(-n)`), built once: money is rounded
#: for every field of every message and lot
_UNITS = tuple(Decimal(1).scaleb(-n) for n in range(9))


def quantize_money(value: Decimal, minor_units: int = 2) -> Decimal:
    """Round to the currency's minor unit, half-up (2.345 -> 2.35, -2.345 -> -2.35)."""
    if minor_units < 0:
        raise ValueError("minor_units must be >= 0")
    unit = _UNITS[minor_units] if minor_units < len(_UNITS) else Decimal(1).scaleb(-minor_units)
    return value.quantize(unit, rounding=ROUND_HALF_UP)


def format_money(value: Decimal, minor_units: int = 2) -> str:
    """Money as answers and messages show it: exactly the minor-unit digits ("12.50", "7.000"),
    rounded half-up like `quantize_money`."""
    return decimal_to_str(quantize_money(value, minor_units))


def fits_minor_units(value: Decimal, minor_units: int) -> bool:
    """False when `value` has non-zero digits below the minor unit ("1.005" in EUR)."""
    return value == quantize_money(value, minor_units)


def format_quantity(value: Decimal) -> str:
    """A quantity without trailing zeros and never in exponent notation ("1", "0.75", "100")."""
    return decimal_to_str(value.normalize())


def _pattern(*, signed: bool, max_scale: int) -> str:
    sign = "-?" if signed else ""
    return rf"^{sign}\d{{1,{_MAX_INTEGER_DIGITS}}}(\.\d{{1,{max_scale}}})?$"


#: how many accepted strings a money validator remembers (then it starts again)
_ACCEPTED_STRINGS = 4096


def _exponent(text: str) -> int:
    """The exponent of a finite `Decimal` from its `str()` ("12.50" -2, "1E+2" 2, "1.5E-7" -8):
    a few string operations, where `as_tuple()` builds a named tuple in Python (7 times as
    long). The text is the context's: "E" or "e"."""
    mantissa, marker, power = text.upper().partition("E")
    return (int(power) if marker else 0) - len(mantissa.partition(".")[2])


def _make_validator(
    *,
    what: str,
    max_scale: int,
    minimum: Decimal | None,
    exclusive_minimum: Decimal | None,
    maximum: Decimal | None = None,
) -> Any:
    signed = minimum is None and exclusive_minimum is None
    # re.ASCII: in a Python str pattern \d matches the digits of every script (Arabic-Indic,
    # fullwidth, Devanagari, mathematical bold...) and Decimal() reads them as numbers; in the
    # JSON Schema (ECMA-262) \d is ASCII already
    regex = re.compile(_pattern(signed=signed, max_scale=max_scale), re.ASCII)
    #: strings this validator accepted, with their value: a message repeats the same amounts
    #: ("0.00", a price, a total), and a consumer reads every field of every message; a hit is
    #: a dict look-up instead of the pattern, `Decimal()` and the bounds (a `Decimal` is
    #: immutable, so one can be shared). Refused strings are not kept; bounded.
    accepted: dict[str, Decimal] = {}
    #: likewise the `Decimal`s accepted (a service builds its messages from them), by their
    #: text: it tells sign, digits and exponent apart (`Decimal("1.0") == Decimal("1.00000")`
    #: but only one fits 4 decimals), and the exponent is read from it (`_exponent`)
    accepted_decimals: set[str] = set()

    def validate(value: object) -> Decimal:
        text: str | None = None  # a Decimal's text, when it is one (not a subclass)
        if value.__class__ is str:
            known = accepted.get(value)
            if known is not None:
                return known
        elif value.__class__ is Decimal:
            text = str(value)
            if text in accepted_decimals:
                return value
        if isinstance(value, str):
            if not regex.fullmatch(value):
                raise ValueError(
                    f'{what} must be a decimal string like "12.50" '
                    f"(at most {max_scale} decimals, no exponent, no spaces)"
                )
            try:
                result = Decimal(value)
            except InvalidOperation as exc:  # pragma: no cover - the regex already guards
                raise ValueError(f"{what} is not a decimal: {value!r}") from exc
        elif isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"{what} must be finite, not {value}")
            exponent = _exponent(text) if text is not None else value.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > max_scale:
                raise ValueError(f"{what} has more than {max_scale} decimals: {value}")
            if value.adjusted() >= _MAX_INTEGER_DIGITS:
                raise ValueError(f"{what} is too large: {value}")
            result = value
        else:
            # bool is an int, int and float are JSON numbers: all refused on purpose
            raise ValueError(
                f"{what} must be a decimal string, not a JSON number or {type(value).__name__}"
            )
        if minimum is not None and result < minimum:
            raise ValueError(f"{what} must be >= {minimum}")
        if exclusive_minimum is not None and result <= exclusive_minimum:
            raise ValueError(f"{what} must be > {exclusive_minimum}")
        if maximum is not None and result > maximum:
            raise ValueError(f"{what} must be <= {maximum}")
        if text is not None:
            if len(accepted_decimals) >= _ACCEPTED_STRINGS:
                accepted_decimals.clear()
            accepted_decimals.add(text)
        elif value.__class__ is str:
            if len(accepted) >= _ACCEPTED_STRINGS:
                accepted.clear()
            accepted[value] = result
        return result

    return validate


def _schema(
    *, description: str, signed: bool, max_scale: int, examples: list[str]
) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "decimal",
        "pattern": _pattern(signed=signed, max_scale=max_scale),
        "description": description,
        "examples": examples,
    }


#: `decimal_to_str` as one C call (`format(value, "f")` is `value.__format__("f")`): pydantic
#: calls it for every money field it writes as JSON, and a Python function around it was as
#: much again.
_SERIALIZER = PlainSerializer(
    operator.methodcaller("__format__", "f"), return_type=str, when_used="json"
)

Money = Annotated[
    Decimal,
    PlainValidator(
        _make_validator(
            what="money", max_scale=MAX_MONEY_SCALE, minimum=None, exclusive_minimum=None
        )
    ),
    _SERIALIZER,
    WithJsonSchema(
        _schema(
            description="Money as a decimal string, may be negative; never a JSON number.",
            signed=True,
            max_scale=MAX_MONEY_SCALE,
            examples=["12.50", "-3.00"],
        )
    ),
]
"""Signed money (balances that may go negative, signed changes)."""

NonNegativeMoney = Annotated[
    Decimal,
    PlainValidator(
        _make_validator(
            what="money",
            max_scale=MAX_MONEY_SCALE,
            minimum=Decimal(0),
            exclusive_minimum=None,
        )
    ),
    _SERIALIZER,
    WithJsonSchema(
        _schema(
            description="Money >= 0 as a decimal string; never a JSON number.",
            signed=False,
            max_scale=MAX_MONEY_SCALE,
            examples=["12.50", "0.00"],
        )
    ),
]
"""Money >= 0: amounts, totals, debts, advances."""

PositiveMoney = Annotated[
    Decimal,
    PlainValidator(
        _make_validator(
            what="money",
            max_scale=MAX_MONEY_SCALE,
            minimum=None,
            exclusive_minimum=Decimal(0),
        )
    ),
    _SERIALIZER,
    WithJsonSchema(
        {
            **_schema(
                description="Money > 0 as a decimal string; never a JSON number.",
                signed=False,
                max_scale=MAX_MONEY_SCALE,
                examples=["12.50"],
            ),
            "not": {"pattern": r"^0+(\.0+)?$"},
        }
    ),
]
"""Money > 0: what is tendered or paid."""

Quantity = Annotated[
    Decimal,
    PlainValidator(
        _make_validator(
            what="quantity",
            max_scale=MAX_QUANTITY_SCALE,
            minimum=None,
            exclusive_minimum=Decimal(0),
        )
    ),
    _SERIALIZER,
    WithJsonSchema(
        {
            **_schema(
                description='Quantity > 0 as a decimal string ("1", "0.75" kg).',
                signed=False,
                max_scale=MAX_QUANTITY_SCALE,
                examples=["1", "0.75"],
            ),
            "not": {"pattern": r"^0+(\.0+)?$"},
        }
    ),
]
"""A quantity of goods, > 0, up to 6 decimals (weights, lengths)."""

Percent = Annotated[
    Decimal,
    PlainValidator(
        _make_validator(
            what="percent",
            max_scale=MAX_MONEY_SCALE,
            minimum=Decimal(0),
            exclusive_minimum=None,
            maximum=_HUNDRED,
        )
    ),
    _SERIALIZER,
    WithJsonSchema(
        _schema(
            description='A percentage from 0 to 100 as a decimal string ("10.00").',
            signed=False,
            max_scale=MAX_MONEY_SCALE,
            examples=["10.00"],
        )
    ),
]
"""A percentage 0..100, e.g. the bonus rate."""
