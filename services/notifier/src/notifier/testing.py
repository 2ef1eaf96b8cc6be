"""Builders for tests of the notifier: a chain, a VIP customer and an overdue sale told as the
gateway and credit tell them, with readable defaults (like `credit.testing`)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from contracts.credit.v1 import OverdueLine, SaleOverdue
from contracts.enums import CreditMode, OverdueDiscountPolicy
from contracts.gateway.v1 import ChainSettingsSnapshot, CustomerRegistered, CustomerSnapshot

#: when the stories happen: sales on T0, due a month later, overdue the day after
T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
DUE = date(2026, 1, 31)


def chain_settings(
    policy: OverdueDiscountPolicy = OverdueDiscountPolicy.KEEP,
    *,
    reminder_email: str | None = None,
) -> ChainSettingsSnapshot:
    """A per-sale chain in Bucharest (EUR), 30 days to pay, reminders every 7 days."""
    return ChainSettingsSnapshot(
        credit_mode=CreditMode.PER_SALE,
        max_payment_delay_days=30,
        overdue_discount=policy,
        block_credit_when_overdue=False,
        reminder_repeat_days=7,
        bonus_rate_percent=Decimal("10.00"),
        bonus_expiry_days=None,
        timezone="Europe/Bucharest",
        currency="EUR",
        minor_units=2,
        reminder_email=reminder_email,
    )


def vip_customer(
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    name: str = "Ana Pop",
    phone: str | None = "+40700000000",
    card_number: str | None = "C1",
) -> CustomerRegistered:
    return CustomerRegistered(
        chain_id=chain_id,
        registered_at=T0,
        customer=CustomerSnapshot(
            customer_id=customer_id,
            name=name,
            phone=phone,
            vip=True,
            bonus_accrual=True,
            credit_limit=None,
            max_payment_delay_days=None,
            card_number=card_number,
        ),
    )


def sale_overdue(
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    sale_id: uuid.UUID,
    owed: str,
    *,
    due: date = DUE,
    discount: str = "0.00",
    dress_line: bool = True,
) -> SaleOverdue:
    """Credit's word that the sale is one day overdue, owing `owed` (on one dress line, or
    with no lines)."""
    lines = [
        OverdueLine(
            line_no=1,
            barcode="4820000000017",
            name="Dress",
            quantity=Decimal("1"),
            amount_owed=Decimal(owed),
        )
    ]
    return SaleOverdue(
        sale_id=sale_id,
        chain_id=chain_id,
        customer_id=customer_id,
        credit_mode=CreditMode.PER_SALE,
        sold_at=T0,
        due_date=due,
        amount_owed=Decimal(owed),
        days_overdue=1,
        discount=Decimal(discount),
        discount_revoked=False,
        lines=lines if dress_line else [],
        detected_at=T0 + timedelta(days=31),
    )
