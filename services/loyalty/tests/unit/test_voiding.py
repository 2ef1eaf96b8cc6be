"""Voiding an applied operation (`BonusAccount.void`): the balance moves by exactly minus the
net of the voided movements, the deficit rules hold, and the operation's lots are emptied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

from loyalty.domain.model import (
    AccrualBase,
    Applied,
    BonusAccount,
    BonusOperation,
    Lot,
    MovementKind,
)
from loyalty.testing import sale_of

D = Decimal
ZERO = Decimal(0)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def operation(*, cash: str = "0.00", spend: str = "0.00") -> BonusOperation:
    bases = (AccrualBase(uuid4(), "cash", D(cash)),) if cash != "0.00" else ()
    return sale_of(at=T0, bases=bases, spend=spend)


def undo(account: BonusAccount, applied: Applied, *, extra_net: Decimal = ZERO) -> None:
    net = sum((m.signed_amount for m in applied.movements), extra_net)
    own = [
        m.lot_id
        for m in applied.movements
        if m.lot_id is not None and m.kind in (MovementKind.ACCRUED, MovementKind.RESTORED)
    ]
    account.void(operation_id=applied.operation_id, own_lots=own, net=net, at=T0)


def test_voiding_a_spend_with_an_accrual_gives_the_spend_back_and_empties_the_accrual():
    account = BonusAccount(uuid4(), lots=[Lot(uuid4(), T0 - timedelta(days=3), D(20), D(20))])
    applied = account.apply(operation(cash="50.00", spend="8.00"), payments={})
    assert isinstance(applied, Applied) and account.balance == D("17.00")
    undo(account, applied)
    assert account.balance == D("20.00") and account.deficit == 0
    assert sorted(lot.remaining for lot in account.lots) == [D(0), D(8), D(12)]
    kinds = [m.kind for m in account.movements[-2:]]
    assert kinds == [MovementKind.VOID_TAKEN, MovementKind.VOID_GIVEN]


def test_voiding_an_accrual_that_filled_a_deficit_brings_the_deficit_back():
    account = BonusAccount(uuid4(), deficit=D("3.00"))
    applied = account.apply(operation(cash="100.00"), payments={})
    assert isinstance(applied, Applied) and account.balance == D("7.00")
    undo(account, applied)
    assert (account.balance, account.deficit) == (D("-3.00"), D("3.00"))
    assert all(lot.remaining == 0 for lot in account.lots)


def test_what_expired_of_a_voided_accrual_is_not_taken_back_twice():
    """The accrual's lot expired before the void arrived: the expiry is voided with it (it is
    one of the movements reporting drops), so the customer ends where they started."""
    account = BonusAccount(uuid4(), lots=[Lot(uuid4(), T0, D(5), D(5))])
    applied = account.apply(operation(cash="40.00"), payments={})
    assert isinstance(applied, Applied)
    [expired] = [
        m
        for m in account.expire_due(T0 + timedelta(days=31), 30)
        if m.lot_id == applied.accruals[0].lot_id
    ]
    undo(account, applied, extra_net=expired.signed_amount)
    assert account.balance == D("0.00") and account.deficit == 0  # the old 5.00 expired too
