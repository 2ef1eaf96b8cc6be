"""Loyalty card numbers must never be payment card numbers.

A number that a payment network would accept (13 to 19 digits, a card-brand prefix, a valid
Luhn check digit) is refused when a customer is created or a card is issued, so no payment
card data (PAN) is ever stored, shown in a list or written to a log by this system.
"""

from __future__ import annotations

#: Issuer prefixes of the major brands: Visa 4, Mastercard 51-55 and 2221-2720, American
#: Express 34 and 37, Discover 6011 and 65.
_PREFIX_RANGES: tuple[tuple[int, int, int], ...] = (
    (1, 4, 4),
    (2, 51, 55),
    (4, 2221, 2720),
    (2, 34, 34),
    (2, 37, 37),
    (4, 6011, 6011),
    (2, 65, 65),
)


def luhn_valid(digits: str) -> bool:
    """True when the last digit is the Luhn check digit of the others."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def has_brand_prefix(digits: str) -> bool:
    return any(
        len(digits) >= width and low <= int(digits[:width]) <= high
        for width, low, high in _PREFIX_RANGES
    )


def looks_like_payment_card(number: str) -> bool:
    """True for a payment card number, also written in groups ("4111-1111-1111-1111")."""
    digits = number.replace("-", "").replace(" ", "")
    return (
        digits.isdigit()
        and 13 <= len(digits) <= 19
        and has_brand_prefix(digits)
        and luhn_valid(digits)
    )
