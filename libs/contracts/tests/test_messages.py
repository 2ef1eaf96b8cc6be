"""The structural rules the models enforce beyond field types."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.credit.v1 import BonusBase
from contracts.enums import BonusMovementKind, PaymentMethod
from contracts.gateway.v1 import CustomerSnapshot, RecordDebtPayment, RecordSale
from contracts.loyalty.v1 import BonusMovementRecorded

from .conftest import CHAIN

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def _sale(sale: RecordSale, **update: Any) -> RecordSale:
    return RecordSale.model_validate({**sale.model_dump(), **update})


def test_models_refuse_unknown_fields(sale: RecordSale) -> None:
    with pytest.raises(ValidationError, match="extra"):
        _sale(sale, tip="1.00")


def test_times_without_a_time_zone_are_refused(sale: RecordSale) -> None:
    with pytest.raises(ValidationError, match="timezone"):
        _sale(sale, sold_at=datetime(2025, 3, 1, 10, 0))


def test_line_numbers_must_be_unique(sale: RecordSale) -> None:
    lines = [line.model_dump() for line in sale.lines]
    lines[1]["line_no"] = 1
    with pytest.raises(ValidationError, match="duplicate line_no"):
        _sale(sale, lines=lines)


def test_change_kept_as_advance_may_not_exceed_the_change(sale: RecordSale) -> None:
    with pytest.raises(ValidationError, match="change_to_advance"):
        _sale(sale, change_to_advance=Decimal("1.00"))


def test_an_anonymous_sale_cannot_go_on_account(sale: RecordSale) -> None:
    with pytest.raises(ValidationError, match="need a customer"):
        _sale(sale, customer=None)


def test_take_money_needs_an_amount_and_pay_debt_takes_none(
    sale: RecordSale, customer: CustomerSnapshot
) -> None:
    base: dict[str, Any] = {
        "payment_id": uuid4(),
        "chain_id": CHAIN,
        "store_id": uuid4(),
        "terminal_id": uuid4(),
        "customer": customer,
        "settings": sale.settings,
        "card_number": "VIP-0001",
        "method": "cash",
        "allocations": [],
        "occurred_at": NOW,
    }
    RecordDebtPayment.model_validate({**base, "kind": "take_money", "amount": "70.00"})
    RecordDebtPayment.model_validate({**base, "kind": "pay_debt", "amount": None})
    with pytest.raises(ValidationError, match="needs an amount"):
        RecordDebtPayment.model_validate({**base, "kind": "take_money", "amount": None})
    with pytest.raises(ValidationError, match="takes no amount"):
        RecordDebtPayment.model_validate({**base, "kind": "pay_debt", "amount": "1.00"})
    too_much = [{"sale_id": sale.sale_id, "line_no": None, "amount": "80.00"}]
    with pytest.raises(ValidationError, match="exceed"):
        RecordDebtPayment.model_validate(
            {**base, "kind": "take_money", "amount": "70.00", "allocations": too_much}
        )


def test_only_real_money_is_an_accrual_base() -> None:
    BonusBase(payment_id=uuid4(), method=PaymentMethod.ADVANCE, base_amount=Decimal("5.00"))
    for method in (PaymentMethod.BONUS, PaymentMethod.ON_ACCOUNT):
        with pytest.raises(ValidationError, match="accrue"):
            BonusBase(payment_id=uuid4(), method=method, base_amount=Decimal("5.00"))


@pytest.mark.parametrize(
    ("kind", "sign"),
    [
        (BonusMovementKind.ACCRUED, 1),
        (BonusMovementKind.RESTORED, 1),
        (BonusMovementKind.SPENT, -1),
        (BonusMovementKind.CANCELLED, -1),
        (BonusMovementKind.REVERSED, -1),
        (BonusMovementKind.EXPIRED, -1),
    ],
)
def test_a_bonus_movement_knows_its_effect_on_the_balance(
    kind: BonusMovementKind, sign: int
) -> None:
    movement = BonusMovementRecorded(
        movement_id=uuid4(),
        chain_id=CHAIN,
        customer_id=uuid4(),
        kind=kind,
        amount=Decimal("3.00"),
        store_id=None,
        payment_id=None,
        sale_id=None,
        operation_id=None,
        at=NOW,
        balance_after=Decimal("-3.00"),
    )
    assert movement.signed_amount == sign * Decimal("3.00")
