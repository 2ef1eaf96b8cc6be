"""The bonus ledger of one customer: lots, movements, and the rules that move bonuses.

Pure Python (no I/O). The ledger is a list of immutable movements (accrued, spent, cancelled,
reversed, restored, expired), each tied to the payment, sale or lot that caused it; the balance
is what they add up to. To know *which* bonuses a spend or an expiry takes, the account keeps
**lots**: every accrual and every restoration is a lot with what is left of it. Spending takes
the oldest lots first, so what expires is always the youngest bonus left.

Taking back bonus that was already spent (cancelling or reversing an accrual) can leave the
balance negative: that missing amount is the **deficit**. Nothing is dropped silently: every new
lot fills the deficit first, and nothing can be spent while the balance is not positive.
What expired of an accrual already left the balance and is never taken back a second time.
Invariant: while the deficit is positive no lot has anything left, so
``balance = sum(lot.remaining) - deficit``.

An operation that credit gave up after loyalty applied it is **voided**: what is left of the
lots it created is taken out, and the rest of its net effect is given back (what it spent or
reversed, as a new lot) or taken back, so the balance is what it would be without it. The two
compensating movements (``void_taken``, ``void_given``) stay in loyalty's own ledger; they are
never published (reporting drops the voided operation's movements instead).

A balance may not reach 10^13 (``AMOUNT_LIMIT``): an operation that would take it there is
refused as ``amount_out_of_range`` and changes nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import UUID, uuid4

from contracts.money import quantize_money
from loyalty.domain.errors import InvalidOperation

__all__ = [
    "AMOUNT_LIMIT",
    "REAL_MONEY_METHODS",
    "AccrualBase",
    "Applied",
    "BonusAccount",
    "BonusOperation",
    "Cancellation",
    "Lot",
    "Movement",
    "MovementKind",
    "PaymentAccrual",
    "PaymentHistory",
    "Refused",
    "ReversalRecord",
    "SaleHistory",
    "accrual_for",
]

ZERO = Decimal(0)
_HUNDRED = Decimal(100)
#: The contract's bound on a balance (`amount_out_of_range`); below it every value fits the
#: NUMERIC(18,4) columns.
AMOUNT_LIMIT = Decimal(10) ** 13

#: Money that accrues bonus when it pays for goods; bonus and on-account parts never do.
REAL_MONEY_METHODS = frozenset({"cash", "card", "advance"})


class MovementKind(StrEnum):
    """One line of the bonus ledger; accrued and restored add, the others subtract."""

    ACCRUED = "accrued"
    SPENT = "spent"
    CANCELLED = "cancelled"
    REVERSED = "reversed"
    RESTORED = "restored"
    EXPIRED = "expired"
    VOID_TAKEN = "void_taken"
    """A voided operation's gain taken back (what is left of its lots, or more)."""
    VOID_GIVEN = "void_given"
    """A voided operation's loss given back (what it spent or reversed), as a new lot."""


_ADDING = frozenset({MovementKind.ACCRUED, MovementKind.RESTORED, MovementKind.VOID_GIVEN})
#: movements of the public bonus ledger (BonusMovementRecorded); the void ones stay inside
PUBLISHED_KINDS = frozenset(MovementKind) - {MovementKind.VOID_TAKEN, MovementKind.VOID_GIVEN}


@dataclass(frozen=True)
class Movement:
    """An immutable ledger entry; ``amount`` is the gross magnitude (never negative)."""

    movement_id: UUID
    kind: MovementKind
    amount: Decimal
    at: datetime
    """Business time: the operation's, the cancellation's, or when the accrual expired."""
    balance_after: Decimal
    operation_id: UUID | None = None
    """The credit operation, the cancelled payment; None for an expiry."""
    payment_id: UUID | None = None
    sale_id: UUID | None = None
    store_id: UUID | None = None
    lot_id: UUID | None = None
    """The lot it created (accrued, restored) or emptied (expired, cancelled, reversed)."""

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.kind in _ADDING else -self.amount


@dataclass
class Lot:
    """What is left of one accrual or restoration; oldest lots are spent first."""

    lot_id: UUID
    at: datetime
    amount: Decimal
    remaining: Decimal
    store_id: UUID | None = None
    payment_id: UUID | None = None
    sale_id: UUID | None = None

    def expires_at(self, expiry_days: int) -> datetime:
        # exactly N x 24 hours after the accrual: needs no time zone and cannot be ambiguous
        return self.at + timedelta(days=expiry_days)


@dataclass(frozen=True)
class AccrualBase:
    """Real money of one payment that paid for goods (or, for returns, whose accrual goes)."""

    payment_id: UUID
    method: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentAccrual:
    """What one payment accrued, recorded once when it was applied (0.00 when it accrued none)."""

    payment_id: UUID
    operation_id: UUID
    sale_id: UUID | None
    store_id: UUID
    method: str
    base: Decimal
    rate_percent: Decimal
    accrued: Decimal
    at: datetime
    lot_id: UUID | None
    """The lot the accrual made; None when it accrued nothing."""


@dataclass(frozen=True)
class PaymentHistory:
    """A payment's accrual and what was taken back from it since."""

    accrual: PaymentAccrual
    cancelled: Decimal = ZERO
    reversed: Decimal = ZERO
    reversed_base: Decimal = ZERO
    """Sum of the real money of returned goods already reversed (for proportional reversal)."""
    expired: Decimal = ZERO
    """What expired of the accrual's own lot (as recorded when the history was read)."""

    @property
    def outstanding(self) -> Decimal:
        """The part of the accrual that may still be taken back.

        Expired bonus already left the balance: taking it back again would charge the
        customer twice for one accrual.
        """
        return self.accrual.accrued - self.cancelled - self.reversed - self.expired


@dataclass(frozen=True)
class SaleHistory:
    """Bonus spent on a sale and bonus already given back by earlier returns of it."""

    spent: Decimal = ZERO
    restored: Decimal = ZERO


@dataclass(frozen=True)
class BonusOperation:
    """The bonus side of one credit operation (a sale, debt payment, advance or return)."""

    operation_id: UUID
    kind: str
    store_id: UUID
    sale_id: UUID | None
    at: datetime
    accrual_on: bool
    rate_percent: Decimal
    minor_units: int
    spend: Decimal = ZERO
    accrual_bases: tuple[AccrualBase, ...] = ()
    restore_up_to: Decimal = ZERO
    reverse_bases: tuple[AccrualBase, ...] = ()

    def validate(self) -> None:
        for what, bases in (
            ("accrual_bases", self.accrual_bases),
            ("reverse_bases", self.reverse_bases),
        ):
            ids = [b.payment_id for b in bases]
            if len(ids) != len(set(ids)):
                raise InvalidOperation(f"{what} names a payment twice")
            if any(b.amount < 0 for b in bases):
                raise InvalidOperation(f"{what} has a negative amount")
        if self.spend < 0 or self.restore_up_to < 0:
            raise InvalidOperation("spend and restore_up_to may not be negative")
        if not 0 <= self.minor_units <= 4:
            raise InvalidOperation("minor_units must be 0..4")
        if not ZERO <= self.rate_percent <= _HUNDRED:
            raise InvalidOperation("bonus rate must be 0..100 percent")

    def accrual(self, base: AccrualBase) -> Decimal:
        """What one of its payments accrues, at this operation's rate and rounding."""
        return accrual_for(
            base,
            rate_percent=self.rate_percent,
            minor_units=self.minor_units,
            accrual_on=self.accrual_on,
        )


@dataclass(frozen=True)
class ReversalRecord:
    """One payment's reversal within a return (kept even when it came to 0.00)."""

    operation_id: UUID
    payment_id: UUID
    base: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Applied:
    """The whole bonus side of an operation, applied at once."""

    operation_id: UUID
    spent: Decimal
    accruals: tuple[PaymentAccrual, ...]
    restored: Decimal
    reversals: tuple[ReversalRecord, ...]
    balance_after: Decimal
    movements: tuple[Movement, ...]

    @property
    def accrued(self) -> Decimal:
        return sum((a.accrued for a in self.accruals), ZERO)

    @property
    def reversed(self) -> Decimal:
        return sum((r.amount for r in self.reversals), ZERO)


@dataclass(frozen=True)
class Refused:
    """The operation was refused as a whole; the account did not change."""

    operation_id: UUID
    code: str
    detail: str
    balance: Decimal


@dataclass(frozen=True)
class Cancellation:
    """The accrual of one payment was cancelled ("no bonuses")."""

    payment_id: UUID
    amount: Decimal
    balance_after: Decimal
    at: datetime
    movement: Movement | None


def accrual_for(
    base: AccrualBase, *, rate_percent: Decimal, minor_units: int, accrual_on: bool
) -> Decimal:
    """Bonus accrued on one payment: rate x real money, half-up per payment; else 0."""
    zero = quantize_money(ZERO, minor_units)
    if not accrual_on or base.method not in REAL_MONEY_METHODS or base.amount <= 0:
        return zero
    return quantize_money(base.amount * rate_percent / _HUNDRED, minor_units)


@dataclass
class BonusAccount:
    """One customer's bonuses: open lots (oldest first) and the deficit.

    Methods change the account and return what happened; ``movements`` collects every
    movement recorded since the account was loaded, and ``touched_lots`` / ``new_lots`` what a
    repository must write back.
    """

    customer_id: UUID
    lots: list[Lot] = field(default_factory=list)
    deficit: Decimal = ZERO
    new_id: Callable[[], UUID] = uuid4
    movements: list[Movement] = field(default_factory=list)
    new_lots: list[Lot] = field(default_factory=list)
    touched_lots: dict[UUID, Lot] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # stable: lots of the same moment keep the order they were loaded in
        self.lots.sort(key=lambda lot: lot.at)
        if self.deficit < 0:
            raise InvalidOperation("deficit may not be negative")
        if self.deficit > 0 and any(lot.remaining > 0 for lot in self.lots):
            raise InvalidOperation("a deficit with bonus left in lots: the ledger is corrupt")

    # ------------------------------------------------------------------ reading

    @property
    def balance(self) -> Decimal:
        return sum((lot.remaining for lot in self.lots), ZERO) - self.deficit

    # ------------------------------------------------------------------ expiry

    def expire_due(self, now: datetime, expiry_days: int | None) -> list[Movement]:
        """Record the expiry of every lot whose time has come (dated when it expired)."""
        if expiry_days is None:
            return []
        due = [lot for lot in self.lots if lot.remaining > 0 and lot.expires_at(expiry_days) <= now]
        due.sort(key=lambda lot: lot.expires_at(expiry_days))
        recorded = []
        for lot in due:
            amount = lot.remaining
            self._set_remaining(lot, ZERO)
            recorded.append(
                self._record(
                    MovementKind.EXPIRED,
                    amount,
                    at=lot.expires_at(expiry_days),
                    payment_id=lot.payment_id,
                    sale_id=lot.sale_id,
                    store_id=lot.store_id,
                    lot_id=lot.lot_id,
                )
            )
        return recorded

    # ------------------------------------------------------------------ operations

    def apply(
        self,
        op: BonusOperation,
        *,
        payments: Mapping[UUID, PaymentHistory],
        sale: SaleHistory | None = None,
    ) -> Applied | Refused:
        """Spend, accrue, restore and reverse for one operation, or refuse it unchanged.

        ``payments`` holds the history of every payment named in ``op.reverse_bases`` that
        this customer accrued on; ``sale`` what was spent on and restored to ``op.sale_id``.
        """
        op.validate()
        minor = op.minor_units
        spent = quantize_money(op.spend, minor)
        refused = self._refusal(op, spent, sale)
        if refused is not None:
            return refused
        first = len(self.movements)
        if spent > 0:
            self._take_oldest_first(spent)
            self._record(
                MovementKind.SPENT,
                spent,
                at=op.at,
                operation_id=op.operation_id,
                sale_id=op.sale_id,
                store_id=op.store_id,
            )
        accruals = self._accrue(op)
        # returns, in the domain's order: spent bonus comes back before accruals are reversed
        restored = self._restore(op, sale)
        reversals = self._reverse(op, payments)
        return Applied(
            operation_id=op.operation_id,
            spent=spent,
            accruals=tuple(accruals),
            restored=restored,
            reversals=tuple(reversals),
            balance_after=self.balance,
            movements=tuple(self.movements[first:]),
        )

    @staticmethod
    def _restorable(op: BonusOperation, sale: SaleHistory | None) -> Decimal:
        """What a return may give back of the bonus spent on its sale."""
        if op.restore_up_to <= 0 or op.sale_id is None:
            return ZERO
        history = sale or SaleHistory()
        return max(ZERO, min(op.restore_up_to, history.spent - history.restored))

    def _refusal(
        self, op: BonusOperation, spent: Decimal, sale: SaleHistory | None
    ) -> Refused | None:
        """Why the operation cannot be applied, if it cannot (nothing is changed then)."""
        if spent > 0 and (self.balance <= 0 or self.balance < spent):
            return Refused(
                operation_id=op.operation_id,
                code="insufficient_bonus",
                detail=f"bonus balance {self.balance} does not cover {spent}",
                balance=self.balance,
            )
        # the most the balance can grow by: every accrual and the restoration
        gains = sum((op.accrual(b) for b in op.accrual_bases), ZERO) + self._restorable(op, sale)
        if self.balance - spent + gains >= AMOUNT_LIMIT:
            return Refused(
                operation_id=op.operation_id,
                code="amount_out_of_range",
                detail=f"the bonus balance would be {self.balance - spent + gains}, beyond what "
                "can be recorded",
                balance=self.balance,
            )
        return None

    def _accrue(self, op: BonusOperation) -> list[PaymentAccrual]:
        accruals = []
        for base in op.accrual_bases:
            amount = op.accrual(base)
            lot_id = None
            if amount > 0:
                lot = self._add_lot(
                    amount,
                    at=op.at,
                    store_id=op.store_id,
                    payment_id=base.payment_id,
                    sale_id=op.sale_id,
                )
                lot_id = lot.lot_id
                self._record(
                    MovementKind.ACCRUED,
                    amount,
                    at=op.at,
                    operation_id=op.operation_id,
                    payment_id=base.payment_id,
                    sale_id=op.sale_id,
                    store_id=op.store_id,
                    lot_id=lot_id,
                )
            accruals.append(
                PaymentAccrual(
                    payment_id=base.payment_id,
                    operation_id=op.operation_id,
                    sale_id=op.sale_id,
                    store_id=op.store_id,
                    method=base.method,
                    base=base.amount,
                    rate_percent=op.rate_percent if op.accrual_on else ZERO,
                    accrued=amount,
                    at=op.at,
                    lot_id=lot_id,
                )
            )
        return accruals

    def _restore(self, op: BonusOperation, sale: SaleHistory | None) -> Decimal:
        restored = quantize_money(self._restorable(op, sale), op.minor_units)
        if restored > 0:
            lot = self._add_lot(restored, at=op.at, store_id=op.store_id, sale_id=op.sale_id)
            self._record(
                MovementKind.RESTORED,
                restored,
                at=op.at,
                operation_id=op.operation_id,
                sale_id=op.sale_id,
                store_id=op.store_id,
                lot_id=lot.lot_id,
            )
        return restored

    def _reverse(
        self, op: BonusOperation, payments: Mapping[UUID, PaymentHistory]
    ) -> list[ReversalRecord]:
        reversals = []
        for base in op.reverse_bases:
            payment = payments.get(base.payment_id)
            amount = self._reversal_amount(payment, base.amount, op.minor_units)
            if payment is not None and amount > 0:
                self._take_back(amount, preferred=payment.accrual.lot_id)
                self._record(
                    MovementKind.REVERSED,
                    amount,
                    at=op.at,
                    operation_id=op.operation_id,
                    payment_id=base.payment_id,
                    sale_id=payment.accrual.sale_id or op.sale_id,
                    store_id=op.store_id,
                    lot_id=payment.accrual.lot_id,
                )
            reversals.append(ReversalRecord(op.operation_id, base.payment_id, base.amount, amount))
        return reversals

    def cancel_accrual(self, payment: PaymentHistory, *, at: datetime) -> Cancellation:
        """Take back what one payment accrued and is not yet reversed (the caller makes it once).

        Bonus already spent is not lost: the balance goes negative (the deficit) and later
        accruals fill it first.
        """
        if payment.cancelled > 0:
            raise InvalidOperation("this payment's accrual is already cancelled")
        amount = self._outstanding(payment)
        accrual = payment.accrual
        movement = None
        if amount > 0:
            self._take_back(amount, preferred=accrual.lot_id)
            movement = self._record(
                MovementKind.CANCELLED,
                amount,
                at=at,
                operation_id=accrual.payment_id,
                payment_id=accrual.payment_id,
                sale_id=accrual.sale_id,
                store_id=accrual.store_id,
                lot_id=accrual.lot_id,
            )
        return Cancellation(
            payment_id=accrual.payment_id,
            amount=amount,
            balance_after=self.balance,
            at=at,
            movement=movement,
        )

    def void(
        self,
        *,
        operation_id: UUID,
        own_lots: Iterable[UUID],
        net: Decimal,
        at: datetime,
        store_id: UUID | None = None,
    ) -> list[Movement]:
        """Undo an applied operation: its lots emptied, the rest of its net effect reversed.

        ``own_lots``: the lots the operation created (accruals, restoration); ``net``: the sum
        of the signed amounts of every movement being voided (the operation's own, and the
        expiry of its lots). The balance changes by exactly ``-net``; what the operation spent
        or reversed comes back as a new lot dated ``at`` (the operation's business time).
        """
        first = len(self.movements)
        mine = set(own_lots)
        taken = ZERO
        for lot in self.lots:
            if lot.lot_id in mine and lot.remaining > 0:
                taken += lot.remaining
                self._set_remaining(lot, ZERO)
        if taken > 0:
            self._record(
                MovementKind.VOID_TAKEN, taken, at=at, operation_id=operation_id, store_id=store_id
            )
        rest = taken - net  # the balance must move by -net; emptying the lots moved it -taken
        if rest > 0:
            lot = self._add_lot(rest, at=at, store_id=store_id)
            self._record(
                MovementKind.VOID_GIVEN,
                rest,
                at=at,
                operation_id=operation_id,
                store_id=store_id,
                lot_id=lot.lot_id,
            )
        elif rest < 0:
            self._take_back(-rest, preferred=None)
            self._record(
                MovementKind.VOID_TAKEN, -rest, at=at, operation_id=operation_id, store_id=store_id
            )
        return self.movements[first:]

    # ------------------------------------------------------------------ internals

    def _outstanding(self, payment: PaymentHistory) -> Decimal:
        """What may still be taken back of a payment's accrual, counting the expiries of its
        lot recorded since the history was read (an operation records due expiries first)."""
        lot_id = payment.accrual.lot_id
        expired_since = sum(
            (
                m.amount
                for m in self.movements
                if lot_id is not None and m.kind is MovementKind.EXPIRED and m.lot_id == lot_id
            ),
            ZERO,
        )
        return max(ZERO, payment.outstanding - expired_since)

    def _reversal_amount(
        self, payment: PaymentHistory | None, returned_base: Decimal, minor: int
    ) -> Decimal:
        zero = quantize_money(ZERO, minor)
        if payment is None or payment.accrual.accrued <= 0 or payment.accrual.base <= 0:
            return zero
        accrual = payment.accrual
        # proportional on the running total, so that returning all of the goods in several
        # returns reverses exactly the accrual, never a cent more or less
        returned = min(accrual.base, payment.reversed_base + returned_base)
        target = quantize_money(accrual.accrued * returned / accrual.base, minor)
        left = self._outstanding(payment)
        return quantize_money(max(ZERO, min(target - payment.reversed, left)), minor)

    def _add_lot(
        self,
        amount: Decimal,
        *,
        at: datetime,
        store_id: UUID | None,
        payment_id: UUID | None = None,
        sale_id: UUID | None = None,
    ) -> Lot:
        fill = min(self.deficit, amount)
        self.deficit -= fill
        lot = Lot(
            lot_id=self.new_id(),
            at=at,
            amount=amount,
            remaining=amount - fill,
            store_id=store_id,
            payment_id=payment_id,
            sale_id=sale_id,
        )
        # after every lot of the same moment or older: spending order is oldest first
        index = bisect.bisect_right([x.at for x in self.lots], at)
        self.lots.insert(index, lot)
        self.new_lots.append(lot)
        return lot

    def _set_remaining(self, lot: Lot, remaining: Decimal) -> None:
        lot.remaining = remaining
        self.touched_lots[lot.lot_id] = lot

    def _take_oldest_first(self, amount: Decimal, skip: UUID | None = None) -> Decimal:
        """Take up to ``amount`` from the lots, oldest first; returns what could not be taken."""
        need = amount
        for lot in self.lots:
            if need <= 0:
                break
            if lot.lot_id == skip or lot.remaining <= 0:
                continue
            take = min(lot.remaining, need)
            self._set_remaining(lot, lot.remaining - take)
            need -= take
        return need

    def _take_back(self, amount: Decimal, *, preferred: UUID | None) -> None:
        """Take bonus back: from the accrual's own lot, then the oldest, the rest as deficit."""
        need = amount
        for lot in self.lots:
            if lot.lot_id == preferred and lot.remaining > 0:
                take = min(lot.remaining, need)
                self._set_remaining(lot, lot.remaining - take)
                need -= take
        need = self._take_oldest_first(need, skip=preferred)
        if need > 0:
            self.deficit += need

    def _record(
        self,
        kind: MovementKind,
        amount: Decimal,
        *,
        at: datetime,
        operation_id: UUID | None = None,
        payment_id: UUID | None = None,
        sale_id: UUID | None = None,
        store_id: UUID | None = None,
        lot_id: UUID | None = None,
    ) -> Movement:
        movement = Movement(
            movement_id=lot_id if kind in _ADDING and lot_id is not None else self.new_id(),
            kind=kind,
            amount=amount,
            at=at,
            balance_after=self.balance,
            operation_id=operation_id,
            payment_id=payment_id,
            sale_id=sale_id,
            store_id=store_id,
            lot_id=lot_id,
        )
        self.movements.append(movement)
        return movement


def load_lots(rows: Iterable[Lot]) -> list[Lot]:
    """Lots in spending order (oldest first; same moment: as given)."""
    return sorted(rows, key=lambda lot: lot.at)


def total_by_kind(movements: Sequence[Movement]) -> dict[MovementKind, Decimal]:
    """Gross amount of each kind of movement (statistics and the balance identity)."""
    totals = dict.fromkeys(MovementKind, ZERO)
    for movement in movements:
        totals[movement.kind] += movement.amount
    return totals
