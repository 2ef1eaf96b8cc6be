"""Money is a decimal string on the wire; JSON numbers and floats never get in."""

from __future__ import annotations

import json
import random
from decimal import Decimal, localcontext

import pytest
from pydantic import BaseModel, ValidationError

from contracts.money import (
    _ACCEPTED_STRINGS,
    Money,
    NonNegativeMoney,
    Percent,
    PositiveMoney,
    Quantity,
    _exponent,
    fits_minor_units,
    format_money,
    format_quantity,
    quantize_money,
)


class Priced(BaseModel):
    price: Money


@pytest.mark.parametrize("raw", ['{"price": 12.5}', '{"price": 12}', '{"price": 1e2}'])
def test_a_json_number_is_refused_even_when_it_is_exact(raw: str) -> None:
    with pytest.raises(ValidationError, match="not a JSON number"):
        Priced.model_validate_json(raw)


@pytest.mark.parametrize("value", [12.5, 12, True, None])
def test_python_floats_ints_and_bools_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        Priced.model_validate({"price": value})


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-inf", "1e3", " 1.00", "1,00", "", "1.", ".5", "1.23456"]
)
def test_strings_that_are_not_plain_decimals_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        Priced.model_validate({"price": value})


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity")])
def test_non_finite_decimals_are_refused(value: Decimal) -> None:
    with pytest.raises(ValidationError, match="finite"):
        Priced(price=value)


@pytest.mark.parametrize("text", ["12.50", "0.00", "-3.10", "7", "1234567.8900"])
def test_money_serialises_as_a_string_with_the_digits_it_was_given(text: str) -> None:
    priced = Priced.model_validate_json(json.dumps({"price": text}))
    assert priced.price == Decimal(text)
    assert json.loads(priced.model_dump_json()) == {"price": text}
    assert priced.model_dump(mode="json") == {"price": text}
    assert priced.model_dump() == {"price": Decimal(text)}


def test_an_exponent_decimal_is_written_without_exponent() -> None:
    assert Priced(price=Decimal("1E+2")).model_dump_json() == '{"price":"100"}'


def test_signs_and_bounds_are_enforced_by_the_variants() -> None:
    class Bounded(BaseModel):
        non_negative: NonNegativeMoney
        positive: PositiveMoney
        quantity: Quantity
        percent: Percent

    ok = Bounded.model_validate(
        {"non_negative": "0.00", "positive": "0.01", "quantity": "0.75", "percent": "100"}
    )
    assert ok.quantity == Decimal("0.75")
    for field, bad in [
        ("non_negative", "-0.01"),
        ("positive", "0.00"),
        ("quantity", "0"),
        ("quantity", "-1"),
        ("percent", "100.01"),
    ]:
        data = {"non_negative": "1", "positive": "1", "quantity": "1", "percent": "1"}
        data[field] = bad
        with pytest.raises(ValidationError):
            Bounded.model_validate(data)


def test_json_schema_says_string_never_number() -> None:
    schema = Priced.model_json_schema()["properties"]["price"]
    assert schema["type"] == "string"
    assert '"number"' not in json.dumps(schema)


@pytest.mark.parametrize(
    ("value", "minor_units", "expected"),
    [
        ("2.345", 2, "2.35"),
        ("2.344", 2, "2.34"),
        ("-2.345", 2, "-2.35"),
        ("0.5", 0, "1"),
        ("3", 2, "3.00"),
        ("1.0005", 3, "1.001"),
    ],
)
def test_quantize_money_rounds_half_up_to_the_minor_unit(
    value: str, minor_units: int, expected: str
) -> None:
    result = quantize_money(Decimal(value), minor_units)
    assert str(result) == expected


def test_quantize_money_defaults_to_two_digits() -> None:
    assert str(quantize_money(Decimal("20.005"))) == "20.01"


#: "10" in Arabic-Indic, fullwidth, Devanagari and mathematical bold digits, and mixed with ASCII
TEN_IN_OTHER_SCRIPTS = [
    "\u0661\u0660",
    "\uff11\uff10",
    "\u0967\u0966",
    "\U0001d7cf\U0001d7ce",
    "1\u0660.00",
    "10.\u0660\u0660",
]


@pytest.mark.parametrize("value", TEN_IN_OTHER_SCRIPTS)
def test_digits_of_other_scripts_are_refused_though_decimal_reads_them_as_ten(value: str) -> None:
    assert Decimal(value) == 10  # Decimal() itself takes them: the pattern must not
    for model in (Money, NonNegativeMoney, PositiveMoney, Quantity, Percent):

        class Holder(BaseModel):
            value: model  # type: ignore[valid-type]

        with pytest.raises(ValidationError):
            Holder.model_validate({"value": value})


@pytest.mark.parametrize(
    ("value", "minor_units", "expected"),
    [
        ("2.345", 2, "2.35"),
        ("-2.345", 2, "-2.35"),
        ("7", 3, "7.000"),
        ("1E+2", 2, "100.00"),
        ("-0.001", 2, "-0.00"),
        ("0.5", 0, "1"),
    ],
)
def test_format_money_shows_exactly_the_minor_unit_digits_rounded_half_up(
    value: str, minor_units: int, expected: str
) -> None:
    assert format_money(Decimal(value), minor_units) == expected


@pytest.mark.parametrize(
    ("value", "minor_units", "fits"),
    [("1.005", 2, False), ("1.000", 2, True), ("1.5", 0, False), ("12.3400", 2, True)],
)
def test_fits_minor_units_is_false_only_for_digits_below_the_minor_unit(
    value: str, minor_units: int, fits: bool
) -> None:
    assert fits_minor_units(Decimal(value), minor_units) is fits


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "1"), ("1.000", "1"), ("100.00", "100"), ("1E+3", "1000"), ("0.750000", "0.75")],
)
def test_format_quantity_drops_trailing_zeros_and_never_uses_an_exponent(
    value: str, expected: str
) -> None:
    assert format_quantity(Decimal(value)) == expected


def test_a_string_read_again_gives_the_same_value_and_a_refused_one_stays_refused() -> None:
    # the validators remember the strings they accepted (a look-up instead of the pattern)
    for _ in range(2):
        assert str(Priced.model_validate({"price": "12.50"}).price) == "12.50"
        assert str(Priced.model_validate({"price": "12.5"}).price) == "12.5"
        with pytest.raises(ValidationError):
            Priced.model_validate({"price": "12.50000"})

    class Paid(BaseModel):
        amount: PositiveMoney

    Priced.model_validate({"price": "0.00"})  # accepted as Money...
    with pytest.raises(ValidationError, match="> 0"):
        Paid.model_validate({"amount": "0.00"})  # ...not as PositiveMoney: a memory each


def test_a_decimal_read_again_gets_the_same_answer_whatever_its_equal_neighbours() -> None:
    # Decimals are remembered by their text: 1.0 == 1.00000, but only one has <= 4 decimals
    for _ in range(2):
        assert str(Priced.model_validate({"price": Decimal("1.0")}).price) == "1.0"
        with pytest.raises(ValidationError, match="more than 4 decimals"):
            Priced.model_validate({"price": Decimal("1.00000")})
        assert str(Priced.model_validate({"price": Decimal("1E+2")}).price) == "1E+2"
        with pytest.raises(ValidationError, match="too large"):
            Priced.model_validate({"price": Decimal("1E+15")})


def test_the_strings_remembered_are_bounded_and_still_right() -> None:
    for n in range(_ACCEPTED_STRINGS + 10):
        text = f"{n}.{n % 100:02d}"
        assert format(Priced.model_validate({"price": text}).price, "f") == text
        assert Priced.model_validate({"price": Decimal(text)}).price == Decimal(text)


def test_the_exponent_read_from_a_decimals_text_is_as_tuples() -> None:
    rng = random.Random(7)
    values = [Decimal(t) for t in ("0", "-0", "0E-8", "0E+3", "1E+2", "-1.5E-7", "12.50", "100")]
    for _ in range(20000):
        digits = str(rng.randrange(10 ** rng.randrange(1, 30)))
        values.append(Decimal(f"{rng.choice('-+')}{digits}E{rng.randrange(-40, 40)}"))
    for value in values:
        assert _exponent(str(value)) == value.as_tuple().exponent, value
    with localcontext() as ctx:
        ctx.capitals = 0
        assert _exponent(str(Decimal("1.5E-7"))) == -8
