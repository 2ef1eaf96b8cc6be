"""A loyalty card number that looks like a payment card number is refused before storage."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pos_gateway import schemas as s
from pos_gateway.domain.cards import looks_like_payment_card, luhn_valid

PAYMENT_CARDS = [
    "4111111111111111",  # Visa, 16 digits
    "4222222222222",  # Visa, 13 digits
    "5555555555554444",  # Mastercard 51-55
    "2223003122003222",  # Mastercard 2221-2720
    "378282246310005",  # American Express 37
    "341111111111111",  # American Express 34
    "6011111111111117",  # Discover 6011
    "6500000000000002",  # Discover 65
    "4111-1111-1111-1111",  # written in groups
]


@pytest.mark.parametrize("number", PAYMENT_CARDS)
def test_a_luhn_valid_number_with_a_brand_prefix_looks_like_a_payment_card(number: str) -> None:
    assert looks_like_payment_card(number)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",  # Luhn check digit wrong
        "1234567812345670",  # Luhn-valid but no brand prefix
        "411111111111",  # 12 digits: too short for a PAN
        "41111111111111111111",  # 20 digits: too long
        "VIP000000001",  # a loyalty number
        "2721000000000004",  # just past the Mastercard 2-series range
    ],
)
def test_other_numbers_are_loyalty_card_numbers(number: str) -> None:
    assert not looks_like_payment_card(number)


def test_the_luhn_check_digit_is_computed_from_the_right() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_a_new_customer_with_a_payment_card_number_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        s.CustomerCreate.model_validate(
            {"name": "Ana", "phone": "+40700000000", "card_number": "4111111111111111"}
        )
    assert caught.value.errors()[0]["loc"] == ("card_number",)


def test_issuing_a_payment_card_number_as_a_card_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        s.CardIssue.model_validate({"card_number": "5555-5555-5555-4444"})
    assert s.CardIssue.model_validate({"card_number": "VIP-0001"}).card_number == "VIP-0001"


def test_a_sale_naming_such_a_number_is_only_looked_up_never_stored() -> None:
    # a sale's card is looked up (and not found): refusing it here would change api.md's codes
    sale = s.SaleCreate.model_validate(
        {
            "card_number": "4111111111111111",
            "lines": [{"name": "Dress", "quantity": "1", "unit_price": "60.00"}],
            "payments": [{"method": "cash", "amount": "60.00"}],
        }
    )
    assert sale.card_number == "4111111111111111"
