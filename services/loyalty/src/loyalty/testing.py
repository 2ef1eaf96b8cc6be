"""Builders for tests of loyalty: the bonus side of credit's operations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from loyalty.domain.model import (
    AccrualBase,
    BonusAccount,
    BonusOperation,
    MovementKind,
    total_by_kind,
)

STORE = UUID("00000000-0000-0000-0000-0000000000aa")


def sale_of(
    *,
    at: datetime,
    bases: tuple[AccrualBase, ...] = (),
    spend: str | Decimal = Decimal(0),
    rate_percent: str | Decimal = "10.00",
    accrual_on: bool = True,
    operation_id: UUID | None = None,
    sale_id: UUID | None = None,
) -> BonusOperation:
    """A sale in STORE: spends `spend` of bonus and, when `accrual_on`, accrues
    `rate_percent` on the `bases` (the sale's and the operation's ids new unless given)."""
    return BonusOperation(
        operation_id=operation_id or uuid4(),
        kind="sale",
        store_id=STORE,
        sale_id=sale_id or uuid4(),
        at=at,
        accrual_on=accrual_on,
        rate_percent=Decimal(rate_percent),
        minor_units=2,
        spend=Decimal(spend),
        accrual_bases=bases,
    )


def return_of(
    sale_id: UUID | None,
    *,
    at: datetime,
    restore_up_to: str | Decimal = "0.00",
    reverse: tuple[AccrualBase, ...] = (),
) -> BonusOperation:
    """A return of goods of the sale, at a rate of 10%: restores spent bonus up to
    `restore_up_to`, reverses the accrual on the `reverse` bases."""
    return BonusOperation(
        operation_id=uuid4(),
        kind="return",
        store_id=STORE,
        sale_id=sale_id,
        at=at,
        accrual_on=True,
        rate_percent=Decimal("10.00"),
        minor_units=2,
        restore_up_to=Decimal(restore_up_to),
        reverse_bases=reverse,
    )


def signed_total(account: BonusAccount) -> Decimal:
    """What the balance must be: accrued - spent - cancelled - reversed + restored - expired."""
    totals = total_by_kind(account.movements)
    return (
        totals[MovementKind.ACCRUED]
        - totals[MovementKind.SPENT]
        - totals[MovementKind.CANCELLED]
        - totals[MovementKind.REVERSED]
        + totals[MovementKind.RESTORED]
        - totals[MovementKind.EXPIRED]
    )
