"""Turns domain outcomes into the outcome events of ``contracts.credit.v1``.

The event is built when the operation is accepted (its bonus figures still zero) and stored
with the pending operation; loyalty's answer fills in the bonus figures when it confirms.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from contracts.credit.v1 import (
    Allocation,
    CustomerBalances,
    LineOwedChange,
)
from contracts.enums import CreditMode
from contracts.loyalty.v1 import BonusesApplied
from contracts.money import format_money, quantize_money
from credit.domain.model import Allocated, LineKey


class Money:
    """Quantizes to the chain currency's minor units (answers show exactly those digits)."""

    def __init__(self, minor_units: int) -> None:
        self.minor_units = minor_units

    def __call__(self, value: Decimal) -> Decimal:
        return quantize_money(value, self.minor_units)


def allocations(pieces: Sequence[Allocated], mode: CreditMode, m: Money) -> list[Allocation]:
    """Per line in per_item mode; per sale (line_no null) otherwise."""
    if mode is CreditMode.PER_ITEM:
        return [
            Allocation(sale_id=a.sale_id, line_no=a.line_no, amount=m(a.amount))
            for a in pieces
            if a.amount > 0
        ]
    merged: dict[uuid.UUID, Decimal] = {}
    for a in pieces:
        merged[a.sale_id] = merged.get(a.sale_id, Decimal(0)) + a.amount
    return [Allocation(sale_id=s, line_no=None, amount=m(v)) for s, v in merged.items() if v > 0]


def lines_changed(changed: dict[LineKey, Decimal], m: Money) -> list[LineOwedChange]:
    return [
        LineOwedChange(sale_id=sale_id, line_no=line_no, owed_after=m(owed))
        for (sale_id, line_no), owed in changed.items()
    ]


def balances(debt: Decimal, advance: Decimal, bonus: Decimal, m: Money) -> CustomerBalances:
    return CustomerBalances(debt=m(debt), advance=m(advance), bonus_balance=m(bonus))


def fill_bonus(
    outcome_type: str, payload: dict[str, Any], applied: BonusesApplied, minor_units: int
) -> dict[str, Any]:
    """Put loyalty's figures into a stored outcome payload (JSON form)."""

    def s(value: Decimal) -> str:
        return format_money(value, minor_units)

    out = dict(payload)
    if out.get("customer_balances") is not None:
        out["customer_balances"] = {
            **out["customer_balances"],
            "bonus_balance": s(applied.balance_after),
        }
    if outcome_type == "credit.SaleCompleted":
        by_payment = {str(p.payment_id): p.amount for p in applied.accrued_by_payment}
        out["payments"] = [
            {**p, "bonus_accrued": s(by_payment.get(p["payment_id"], Decimal(0)))}
            for p in out["payments"]
        ]
        out["bonus_accrued"] = s(applied.accrued)
        out["bonus_spent"] = s(applied.spent)
    elif outcome_type in ("credit.DebtPaymentRecorded", "credit.AdvanceRecorded"):
        out["bonus_accrued"] = s(applied.accrued)
    elif outcome_type == "credit.ReturnRecorded":
        out["bonus_reversed"] = s(applied.reversed)
    return out
