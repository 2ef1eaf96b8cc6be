"""Sample messages shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from contracts.enums import CreditMode, OverdueDiscountPolicy, PaymentMethod
from contracts.gateway.v1 import (
    ChainSettingsSnapshot,
    CustomerSnapshot,
    RecordSale,
    SaleLine,
    SalePayment,
)

CHAIN = UUID("11111111-1111-4111-8111-111111111111")
CUSTOMER = UUID("22222222-2222-4222-8222-222222222222")


@pytest.fixture
def settings() -> ChainSettingsSnapshot:
    return ChainSettingsSnapshot(
        credit_mode=CreditMode.PER_ITEM,
        max_payment_delay_days=30,
        overdue_discount=OverdueDiscountPolicy.REVOKE,
        block_credit_when_overdue=False,
        reminder_repeat_days=7,
        bonus_rate_percent=Decimal("10.00"),
        bonus_expiry_days=None,
        timezone="Europe/Bucharest",
        currency="EUR",
        minor_units=2,
    )


@pytest.fixture
def customer() -> CustomerSnapshot:
    return CustomerSnapshot(
        customer_id=CUSTOMER,
        name="Ana Pop",
        phone="+40700000000",
        vip=True,
        bonus_accrual=True,
        credit_limit=Decimal("500.00"),
        max_payment_delay_days=None,
        card_number="VIP-0001",
    )


@pytest.fixture
def sale(settings: ChainSettingsSnapshot, customer: CustomerSnapshot) -> RecordSale:
    """Worked example A: dress 60.00 + shoes 50.00 less 10.00, all on account."""
    return RecordSale(
        sale_id=uuid4(),
        chain_id=CHAIN,
        store_id=uuid4(),
        terminal_id=uuid4(),
        customer=customer,
        settings=settings,
        card_number="VIP-0001",
        sold_at=datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        lines=[
            SaleLine(
                line_no=1,
                sku="D-1",
                barcode="4820000000017",
                name="Dress",
                quantity=Decimal("1"),
                unit_price=Decimal("60.00"),
                discount=Decimal("0.00"),
                amount=Decimal("60.00"),
            ),
            SaleLine(
                line_no=2,
                sku="S-1",
                barcode="4820000000024",
                name="Shoes",
                quantity=Decimal("1"),
                unit_price=Decimal("50.00"),
                discount=Decimal("10.00"),
                amount=Decimal("40.00"),
            ),
        ],
        payments=[
            SalePayment(
                payment_id=uuid4(), method=PaymentMethod.ON_ACCOUNT, amount=Decimal("100.00")
            )
        ],
        total=Decimal("100.00"),
        change=Decimal("0.00"),
        change_to_advance=Decimal("0.00"),
    )
