"""Builders for tests of loyalty: the bonus side of credit's operations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from loyalty.domain.model import AccrualBase, BonusOperation

STORE = UUID("00000000-0000-0000-0000-0000000000aa")


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
