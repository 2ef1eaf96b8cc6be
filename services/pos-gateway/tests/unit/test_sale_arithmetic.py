"""The gateway's own arithmetic and static rules of a sale (pure domain, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.enums import PaymentMethod
from pos_gateway.domain.errors import GatewayError, ValidationFailed
from pos_gateway.domain.money import fits_minor_units, fmt_money, fmt_quantity, line_amount
from pos_gateway.domain.sales import (
    PaymentIn,
    check_occurred_at,
    check_sale_customer_rules,
    price_sale,
)
from pos_gateway.schemas import SaleLineIn

D = Decimal
CASH, CARD, BONUS, ON_ACCOUNT, ADVANCE = (
    PaymentMethod.CASH,
    PaymentMethod.CARD,
    PaymentMethod.BONUS,
    PaymentMethod.ON_ACCOUNT,
    PaymentMethod.ADVANCE,
)


def line(qty: str, price: str, discount: str = "0") -> SaleLineIn:
    """A line as the till's request body carries it."""
    return SaleLineIn.model_validate(
        {
            "sku": "sku",
            "barcode": "4820000000017",
            "name": "Dress",
            "quantity": qty,
            "unit_price": price,
            "discount": discount,
        }
    )


def test_line_amount_is_quantity_times_price_rounded_half_up_minus_discount() -> None:
    assert line_amount(D("0.333"), D("10.00"), D("0"), 2) == D("3.33")
    assert line_amount(D("0.125"), D("1.00"), D("0"), 2) == D("0.13")  # half-up, not even
    assert line_amount(D("2"), D("50.00"), D("10.00"), 2) == D("90.00")


def test_lines_are_numbered_in_request_order_and_summed() -> None:
    sale = price_sale(
        [line("1", "60.00"), line("1", "50.00", "10.00")],
        [PaymentIn(CASH, D("100.00"))],
        None,
        2,
    )
    assert [ln.line_no for ln in sale.lines] == [1, 2]
    assert sale.total == D("100.00")
    assert sale.change == D("0")


def test_cash_overpayment_is_change_and_part_of_it_may_be_kept_as_advance() -> None:
    sale = price_sale([line("1", "93.00")], [PaymentIn(CASH, D("100.00"))], D("7.00"), 2)
    assert sale.change == D("7.00")
    assert sale.change_to_advance == D("7.00")


def test_keeping_more_change_than_there_is_is_a_payment_mismatch() -> None:
    with pytest.raises(GatewayError) as err:
        price_sale([line("1", "95.00")], [PaymentIn(CASH, D("100.00"))], D("7.00"), 2)
    assert err.value.code == "payment_mismatch"


def test_payments_short_of_the_total_are_a_payment_mismatch() -> None:
    with pytest.raises(GatewayError) as err:
        price_sale([line("1", "60.00")], [PaymentIn(CARD, D("50.00"))], None, 2)
    assert err.value.code == "payment_mismatch"


def test_change_can_only_come_from_cash() -> None:
    with pytest.raises(GatewayError) as err:
        price_sale([line("1", "60.00")], [PaymentIn(CARD, D("70.00"))], None, 2)
    assert err.value.code == "payment_mismatch"


def test_a_discount_larger_than_the_line_is_a_validation_error_naming_the_line() -> None:
    with pytest.raises(ValidationFailed) as err:
        price_sale([line("1", "5.00", "6.00")], [], None, 2)
    assert err.value.errors[0]["field"] == "lines.0.discount"


def test_money_with_more_decimals_than_the_currency_is_refused_per_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        price_sale([line("1", "60.005")], [PaymentIn(CASH, D("60.01"))], None, 2)
    assert [e["field"] for e in err.value.errors] == ["lines.0.unit_price"]
    assert fits_minor_units(D("1.500"), 2)


@given(
    qty=st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3),
    price=st.decimals(min_value=D("0"), max_value=D("100000"), places=2),
    discount_share=st.decimals(min_value=D("0"), max_value=D("1"), places=2),
)
def test_line_amounts_always_have_exactly_the_minor_units(
    qty: Decimal, price: Decimal, discount_share: Decimal
) -> None:
    gross = line_amount(qty, price, D("0"), 2)
    discount = (gross * discount_share).quantize(D("0.01"))
    amount = line_amount(qty, price, discount, 2)
    assert amount == gross - discount
    assert amount >= 0
    assert -amount.as_tuple().exponent == 2  # type: ignore[operator]
    assert abs(gross - qty * price) <= D("0.005")


@given(
    prices=st.lists(
        st.decimals(min_value=D("0.01"), max_value=D("999"), places=2), min_size=1, max_size=5
    ),
    overpay=st.decimals(min_value=D("0"), max_value=D("50"), places=2),
)
def test_cash_tendered_above_the_total_always_balances(
    prices: list[Decimal], overpay: Decimal
) -> None:
    total = sum(prices, D(0))
    sale = price_sale(
        [line("1", str(p)) for p in prices], [PaymentIn(CASH, total + overpay)], overpay, 2
    )
    assert sale.total + sale.change == total + overpay
    assert sale.change_to_advance == overpay


def _refusal(
    payments: list[PaymentIn],
    *,
    has_card: bool,
    customer_vip: bool | None,
    change_to_advance: Decimal = Decimal(0),
) -> GatewayError:
    """What `check_sale_customer_rules` refuses the sale with (it must refuse it)."""
    with pytest.raises(GatewayError) as err:
        check_sale_customer_rules(
            payments,
            has_card=has_card,
            customer_vip=customer_vip,
            change_to_advance=change_to_advance,
        )
    return err.value


def test_on_account_and_bonus_need_the_card() -> None:
    for method in (ON_ACCOUNT, BONUS, ADVANCE):
        refused = _refusal([PaymentIn(method, D("1"))], has_card=False, customer_vip=True)
        assert refused.code == "card_required"


def test_a_customer_named_without_card_may_pay_cash_or_card_but_never_spend_or_owe() -> None:
    # The gateway's part of "a customer id is enough for accrual": it lets such a sale through
    # with real money only. That the customer then accrues (10% of 45.00 = 4.50) is proven with
    # the real services: tests/e2e/test_bonus_accrual_rules.py
    # ::test_a_customer_named_without_a_card_accrues_on_cash; the command carrying the customer
    # for it: tests/integration/test_sales.py
    # ::test_a_cash_sale_naming_only_the_customer_sends_the_customer_for_accrual.
    for vip in (True, False):
        for method in (CASH, CARD):
            check_sale_customer_rules(
                [PaymentIn(method, D("10"))],
                has_card=False,
                customer_vip=vip,
                change_to_advance=D(0),
            )
        for method in (BONUS, ON_ACCOUNT, ADVANCE):
            refused = _refusal(
                [PaymentIn(CASH, D("5")), PaymentIn(method, D("5"))],
                has_card=False,
                customer_vip=vip,
            )
            assert refused.code == "card_required"


def test_keeping_change_as_advance_needs_the_card() -> None:
    refused = _refusal(
        [PaymentIn(CASH, D("10"))], has_card=False, customer_vip=None, change_to_advance=D("1")
    )
    assert refused.code == "card_required"


def test_only_vip_customers_buy_on_account() -> None:
    refused = _refusal([PaymentIn(ON_ACCOUNT, D("10"))], has_card=True, customer_vip=False)
    assert refused.code == "not_vip"
    assert refused.status == 422


def test_offline_operations_may_be_90_days_old_but_not_older_nor_in_the_future() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    skew = timedelta(minutes=5)
    assert check_occurred_at(None, now, max_days=90, skew=skew) == now
    ninety = now - timedelta(days=90)
    assert check_occurred_at(ninety, now, max_days=90, skew=skew) == ninety
    with pytest.raises(ValidationFailed) as err:
        check_occurred_at(ninety - timedelta(seconds=1), now, max_days=90, skew=skew)
    assert err.value.errors == [
        {"field": "occurred_at", "message": "may be at most 90 days in the past"}
    ]
    assert check_occurred_at(now + timedelta(minutes=4), now, max_days=90, skew=skew)
    with pytest.raises(ValidationFailed):
        check_occurred_at(now + timedelta(minutes=6), now, max_days=90, skew=skew)


def test_money_is_shown_with_exactly_the_currency_minor_units() -> None:
    assert fmt_money(D("12.5"), 2) == "12.50"
    assert fmt_money(D("12.345"), 2) == "12.35"
    assert fmt_money(D("7"), 0) == "7"
    assert fmt_money(D("1.2345"), 3) == "1.235"
    assert fmt_money(None, 2) is None


def test_quantities_are_shown_without_trailing_zeros_or_exponents() -> None:
    assert fmt_quantity(D("1.000000")) == "1"
    assert fmt_quantity(D("0.750000")) == "0.75"
    assert fmt_quantity(D("100")) == "100"
