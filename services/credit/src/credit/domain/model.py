"""One credit ledger per customer, for all three credit modes.

Debt is always recorded per receipt line: every line of every sale is a *charge* (its amount
after discount; a revoked discount is another charge on the line), and everything that pays
for it is a *credit* on the line (the sale's own payments, the customer's advance, later debt
payments, debt cancelled by a return). What is still owed on a line is charges - credits. The
customer's advance is deposits - uses - refunds. Entries are immutable; every balance is
derived from them, so switching the chain's credit mode never changes a debt: the mode only
chooses where the next payment goes.

The operations (``record_sale``, ``take_money``, ...) work in memory and touch no database:
each either raises ``Refusal`` (a business refusal) or ``InvalidOperation`` (a command that
cannot be right), and the caller drops this ledger, or applies its entries to this ledger and
returns them in an outcome, with the balances after, for the caller to store.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from contracts.money import quantize_money
from credit.domain.errors import InvalidOperation, Refusal

ZERO = Decimal(0)

#: A balance (debt, advance) or an amount of one operation may not reach this: the contract's
#: `amount_out_of_range`. Every value below it fits the NUMERIC(18,4) columns (10^14) with
#: room for the sums the reports keep per row.
AMOUNT_LIMIT = Decimal(10) ** 13

#: Pseudo-payment ids (the customer's advance covering on-account goods has no payment id of
#: its own, yet its bonus accrual needs one that is the same every time it is computed).
_ADVANCE_APPLIED_NS = uuid.UUID("0c6f1a4e-2b7d-4f0e-9d55-3a8e1f6b2c10")


def advance_applied_payment_id(sale_id: uuid.UUID) -> uuid.UUID:
    """The payment id under which a sale's automatically applied advance accrues bonus."""
    return uuid.uuid5(_ADVANCE_APPLIED_NS, str(sale_id))


class Mode(StrEnum):
    BALANCE = "balance"
    PER_SALE = "per_sale"
    PER_ITEM = "per_item"


class Method(StrEnum):
    CASH = "cash"
    CARD = "card"
    BONUS = "bonus"
    ADVANCE = "advance"
    ON_ACCOUNT = "on_account"


REAL_MONEY = frozenset({Method.CASH, Method.CARD, Method.ADVANCE})


class EntryKind(StrEnum):
    GOODS = "goods"
    """Charge: a receipt line's amount after its discount."""
    REVOKED_DISCOUNT = "revoked_discount"
    """Charge: a line's discount added back to what is owed."""
    PAYMENT = "payment"
    """Credit: money (cash, card, bonus) paying a line, at the till or later."""
    ADVANCE_APPLIED = "advance_applied"
    """Credit: the customer's advance paying a line (also lowers the advance)."""
    RETURN_CANCELLED = "return_cancelled"
    """Credit: debt cancelled because goods came back."""
    ADVANCE_IN = "advance_in"
    """The advance grows (advance paid, change kept, returned value kept)."""
    ADVANCE_OUT = "advance_out"
    """The advance is paid back to the customer."""
    RETURNED_GOODS = "returned_goods"
    """Record of a line brought back: quantity and value (changes no balance by itself)."""
    BONUS_RESTORED = "bonus_restored"
    """Record of bonus spent on a sale given back by a return."""


CHARGES = frozenset({EntryKind.GOODS, EntryKind.REVOKED_DISCOUNT})
CREDITS = frozenset({EntryKind.PAYMENT, EntryKind.ADVANCE_APPLIED, EntryKind.RETURN_CANCELLED})

LineKey = tuple[uuid.UUID, int]


@dataclass(frozen=True)
class Entry:
    """One immutable ledger entry; ``amount`` is always >= 0, its kind gives the sign."""

    operation_id: uuid.UUID
    kind: EntryKind
    amount: Decimal
    at: datetime
    sale_id: uuid.UUID | None = None
    line_no: int | None = None
    payment_id: uuid.UUID | None = None
    method: Method | None = None
    quantity: Decimal | None = None

    @property
    def line(self) -> LineKey | None:
        if self.sale_id is None or self.line_no is None:
            return None
        return (self.sale_id, self.line_no)


@dataclass(frozen=True)
class Line:
    """A receipt line as sold."""

    line_no: int
    name: str
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    amount: Decimal
    sku: str | None = None
    barcode: str | None = None


@dataclass(frozen=True)
class Payment:
    """A payment of a sale as tendered."""

    payment_id: uuid.UUID
    method: Method
    amount: Decimal


@dataclass(frozen=True)
class Sale:
    """A sale as recorded: its lines, payments and due date (chain-local)."""

    sale_id: uuid.UUID
    store_id: uuid.UUID
    sold_at: datetime
    local_date: date
    due_date: date
    lines: tuple[Line, ...]
    payments: tuple[Payment, ...] = ()
    terminal_id: uuid.UUID | None = None
    seq: int = 0
    """Tie-break between sales made at the same moment (the order they were recorded)."""

    @property
    def discount(self) -> Decimal:
        return sum((line.discount for line in self.lines), ZERO)

    @property
    def bonus_spent(self) -> Decimal:
        return sum((p.amount for p in self.payments if p.method is Method.BONUS), ZERO)

    def line(self, line_no: int) -> Line | None:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        return None


@dataclass(frozen=True)
class Allocated:
    """Money applied to one receipt line."""

    sale_id: uuid.UUID
    line_no: int
    amount: Decimal


@dataclass(frozen=True)
class BonusBase:
    """Real money that paid for goods in an operation: the base of one accrual or reversal."""

    payment_id: uuid.UUID
    method: Method
    amount: Decimal


@dataclass
class Outcome:
    """What an accepted operation changes: its entries plus the figures of its answer."""

    operation_id: uuid.UUID
    entries: list[Entry] = field(default_factory=list)
    lines_changed: dict[LineKey, Decimal] = field(default_factory=dict)
    debt_after: Decimal = ZERO
    advance_after: Decimal = ZERO
    bonus_spend: Decimal = ZERO
    accrual_bases: list[BonusBase] = field(default_factory=list)
    restore_up_to: Decimal = ZERO
    reverse_bases: list[BonusBase] = field(default_factory=list)


@dataclass
class SaleOutcome(Outcome):
    sale: Sale | None = None
    total: Decimal = ZERO
    paid: Decimal = ZERO
    on_account: Decimal = ZERO
    advance_applied: Decimal = ZERO
    change: Decimal = ZERO
    change_to_advance: Decimal = ZERO
    change_allocated: list[Allocated] = field(default_factory=list)
    advance_added: Decimal = ZERO
    due_date: date | None = None
    line_owed: dict[int, Decimal] = field(default_factory=dict)


@dataclass
class PaysDebtFirst(Outcome):
    """An operation whose money pays debt first (`allocated`) and becomes advance after."""

    allocated: list[Allocated] = field(default_factory=list)
    advance_added: Decimal = ZERO

    @property
    def applied_to_debt(self) -> Decimal:
        return sum((a.amount for a in self.allocated), ZERO)


@dataclass
class MoneyInOutcome(PaysDebtFirst):
    """Take money, pay debt, advance: money that pays debt first and becomes advance after."""

    amount: Decimal = ZERO


@dataclass
class RefundOutcome(Outcome):
    amount: Decimal = ZERO


@dataclass(frozen=True)
class ReturnedLineOutcome:
    line_no: int
    quantity: Decimal
    value: Decimal
    debt_cancelled: Decimal


@dataclass
class ReturnOutcome(PaysDebtFirst):
    """A return: its value cancels the sale's own debt first, then restores the bonus spent on
    the sale; what is left is `refunded`, or, refunded to the advance, pays other debt first
    (`allocated`) and becomes advance (`advance_added`)."""

    sale_id: uuid.UUID | None = None
    lines: list[ReturnedLineOutcome] = field(default_factory=list)
    value: Decimal = ZERO
    debt_cancelled: Decimal = ZERO
    bonus_restored: Decimal = ZERO
    refunded: Decimal = ZERO


@dataclass
class RevokeOutcome(Outcome):
    sale_id: uuid.UUID | None = None
    amount: Decimal = ZERO
    lines: list[tuple[int, Decimal]] = field(default_factory=list)
    advance_applied: Decimal = ZERO


@dataclass(frozen=True)
class OverdueSale:
    """A sale with money owed after its due date, as the overdue scan sees it."""

    sale: Sale
    amount_owed: Decimal
    days_overdue: int
    lines_owed: tuple[tuple[Line, Decimal], ...]


@dataclass(frozen=True)
class AllocationRequest:
    sale_id: uuid.UUID
    line_no: int | None
    amount: Decimal


@dataclass(frozen=True)
class ReturnRequest:
    line_no: int
    quantity: Decimal


class Ledger:
    """The credit ledger of one customer (or of one anonymous sale).

    It may hold only part of the customer's history: every sale that owes something, with all
    its entries, and any other sale with all its entries, is enough for every operation (a sale
    that owes nothing takes no payment and counts for no debt, overdue or allocation; a return
    or a revocation names its sale, a payment the sales it allocates to). The advance is the
    customer's, not the sales', so such a ledger is given it (`advance`): it replaces what the
    entries given add up to, and the operations go on from it."""

    def __init__(
        self,
        sales: Iterable[Sale] = (),
        entries: Iterable[Entry] = (),
        *,
        minor_units: int = 2,
        advance: Decimal | None = None,
    ) -> None:
        self.minor_units = minor_units
        self.sales: dict[uuid.UUID, Sale] = {}
        self.entries: list[Entry] = []
        self._owed: dict[LineKey, Decimal] = defaultdict(lambda: ZERO)
        self._advance = ZERO
        self._returned_qty: dict[LineKey, Decimal] = defaultdict(lambda: ZERO)
        self._returned_value: dict[LineKey, Decimal] = defaultdict(lambda: ZERO)
        self._restored: dict[uuid.UUID, Decimal] = defaultdict(lambda: ZERO)
        self._revoked: set[uuid.UUID] = set()
        self._revoked_amount: dict[LineKey, Decimal] = defaultdict(lambda: ZERO)
        for sale in sales:
            self.add_sale(sale)
        self.apply(entries)
        if advance is not None:
            self._advance = advance

    # ------------------------------------------------------------------ state

    def add_sale(self, sale: Sale) -> None:
        if sale.seq == 0:
            sale = _replace_seq(sale, max((x.seq for x in self.sales.values()), default=0) + 1)
        self.sales[sale.sale_id] = sale

    def apply(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.entries.append(entry)
            line = entry.line
            if entry.kind in CHARGES:
                assert line is not None
                self._owed[line] += entry.amount
                if entry.kind is EntryKind.REVOKED_DISCOUNT and entry.sale_id is not None:
                    self._revoked.add(entry.sale_id)
                    self._revoked_amount[line] += entry.amount
            elif entry.kind in CREDITS:
                assert line is not None
                self._owed[line] -= entry.amount
                if entry.kind is EntryKind.ADVANCE_APPLIED:
                    self._advance -= entry.amount
            elif entry.kind is EntryKind.ADVANCE_IN:
                self._advance += entry.amount
            elif entry.kind is EntryKind.ADVANCE_OUT:
                self._advance -= entry.amount
            elif entry.kind is EntryKind.RETURNED_GOODS:
                assert line is not None and entry.quantity is not None
                self._returned_qty[line] += entry.quantity
                self._returned_value[line] += entry.amount
            elif entry.kind is EntryKind.BONUS_RESTORED:
                assert entry.sale_id is not None
                self._restored[entry.sale_id] += entry.amount

    @property
    def debt(self) -> Decimal:
        return sum(self._owed.values(), ZERO)

    @property
    def advance(self) -> Decimal:
        return self._advance

    def owed(self, sale_id: uuid.UUID, line_no: int) -> Decimal:
        return self._owed.get((sale_id, line_no), ZERO)

    def sale_owed(self, sale_id: uuid.UUID) -> Decimal:
        sale = self.sales[sale_id]
        return sum((self.owed(sale_id, line.line_no) for line in sale.lines), ZERO)

    def is_revoked(self, sale_id: uuid.UUID) -> bool:
        return sale_id in self._revoked

    def returned_quantity(self, sale_id: uuid.UUID, line_no: int) -> Decimal:
        return self._returned_qty.get((sale_id, line_no), ZERO)

    def ordered_sales(self) -> list[Sale]:
        """Oldest first: by the time of sale, then the order they were recorded."""
        return sorted(self.sales.values(), key=lambda s: (s.sold_at, s.seq))

    def fifo_lines(self) -> list[LineKey]:
        """Every line, oldest sale first and receipt order within a sale."""
        return [
            (sale.sale_id, line.line_no)
            for sale in self.ordered_sales()
            for line in sorted(sale.lines, key=lambda ln: ln.line_no)
        ]

    def sale_lines(self, sale_id: uuid.UUID) -> list[LineKey]:
        sale = self.sales[sale_id]
        return [(sale_id, line.line_no) for line in sorted(sale.lines, key=lambda ln: ln.line_no)]

    def open_sales(self) -> list[tuple[Sale, Decimal]]:
        result = []
        for sale in self.ordered_sales():
            owed = self.sale_owed(sale.sale_id)
            if owed > 0:
                result.append((sale, owed))
        return result

    def overdue_sales(self, today: date) -> list[OverdueSale]:
        """Sales with money owed whose due date is before ``today`` (chain-local).

        The same rule serves every mode: in balance mode payments go first in, first out, so
        the sales still owing are exactly the oldest unpaid goods.
        """
        result = []
        for sale, owed in self.open_sales():
            if today > sale.due_date:
                lines = tuple(
                    (line, self.owed(sale.sale_id, line.line_no))
                    for line in sorted(sale.lines, key=lambda ln: ln.line_no)
                    if self.owed(sale.sale_id, line.line_no) > 0
                )
                result.append(OverdueSale(sale, owed, (today - sale.due_date).days, lines))
        return result

    def overdue_amount(self, today: date) -> Decimal:
        return sum((o.amount_owed for o in self.overdue_sales(today)), ZERO)

    # ------------------------------------------------------------------ helpers

    def _q(self, value: Decimal) -> Decimal:
        return quantize_money(value, self.minor_units)

    def _allocate(
        self, amount: Decimal, targets: Sequence[LineKey], owed: dict[LineKey, Decimal]
    ) -> tuple[list[tuple[LineKey, Decimal]], Decimal]:
        """Spread ``amount`` over ``targets`` in order, never more than owed on each.

        ``owed`` is a working copy updated in place; returns the pieces and what is left.
        """
        pieces = []
        left = amount
        for key in targets:
            if left <= 0:
                break
            open_ = owed.get(key, ZERO)
            if open_ <= 0:
                continue
            take = min(open_, left)
            pieces.append((key, take))
            owed[key] = open_ - take
            left -= take
        return pieces, left

    def _working_owed(self) -> dict[LineKey, Decimal]:
        return dict(self._owed)

    def _check_range(self, entries: Sequence[Entry]) -> None:
        """Refuse (`amount_out_of_range`) what would take the debt or the advance to the limit,
        before anything of it is applied. (A balance already beyond it, from before the limit
        existed, may still go down: paying such a debt is never refused.)"""
        debt, advance = self.debt, self.advance
        for entry in entries:
            if entry.kind in CHARGES:
                debt += entry.amount
            elif entry.kind in CREDITS:
                debt -= entry.amount
                if entry.kind is EntryKind.ADVANCE_APPLIED:
                    advance -= entry.amount
            elif entry.kind is EntryKind.ADVANCE_IN:
                advance += entry.amount
            elif entry.kind is EntryKind.ADVANCE_OUT:
                advance -= entry.amount
        for name, value, before in (("debt", debt, self.debt), ("advance", advance, self.advance)):
            if value >= AMOUNT_LIMIT and value > before:
                raise Refusal(
                    "amount_out_of_range",
                    f"the {name} would be {value}, beyond what can be recorded "
                    f"(below {AMOUNT_LIMIT:,.0f})",
                )

    def _finish(self, outcome: Outcome) -> None:
        """Apply the outcome's entries and fill in the balances and lines it touched (refused
        as a whole first when a balance would leave the range)."""
        self._check_range(outcome.entries)
        self.apply(outcome.entries)
        for entry in outcome.entries:
            key = entry.line
            if key is not None and entry.kind in CHARGES | CREDITS:
                outcome.lines_changed[key] = self._owed.get(key, ZERO)
        outcome.debt_after = self.debt
        outcome.advance_after = self.advance

    def _not_before_sales(self, at: datetime, sale_ids: Iterable[uuid.UUID]) -> None:
        """Money (or goods) dated `at` may not reach a sale made after `at`: the statement would
        list the payment before the sale it pays, with running balances that never were."""
        later = sorted(
            (s for s in {self.sales[i] for i in sale_ids} if s.sold_at > at),
            key=lambda s: s.sold_at,
        )
        if later:
            raise Refusal(
                "validation_error",
                f"occurred_at {at.isoformat()} is before sale {later[-1].sale_id} "
                f"({later[-1].sold_at.isoformat()}) that it would pay",
                field="occurred_at",
            )

    def _money_in(
        self,
        outcome: Outcome,
        amount: Decimal,
        at: datetime,
        *,
        payment_id: uuid.UUID | None,
        method: Method | None,
        first: Sequence[LineKey] = (),
        owed: dict[LineKey, Decimal] | None = None,
    ) -> tuple[list[Allocated], Decimal]:
        """Money arriving: pays open debt (``first`` lines, then oldest), the rest is advance."""
        owed = owed if owed is not None else self._working_owed()
        head = set(first)
        targets = list(first) + [k for k in self.fifo_lines() if k not in head]
        pieces, left = self._allocate(amount, targets, owed)
        allocated = _book_payment(outcome, pieces, at, payment_id=payment_id, method=method)
        if left > 0:
            outcome.entries.append(
                Entry(
                    outcome.operation_id,
                    EntryKind.ADVANCE_IN,
                    left,
                    at,
                    payment_id=payment_id,
                    method=method,
                )
            )
        return allocated, left

    # ------------------------------------------------------------------ operations

    def record_sale(
        self,
        *,
        sale: Sale,
        customer_known: bool,
        vip: bool,
        credit_limit: Decimal | None,
        block_credit_when_overdue: bool,
        change: Decimal,
        change_to_advance: Decimal,
        today: date,
    ) -> SaleOutcome:
        """A sale: its payments pay its lines in receipt order; what is left is on account."""
        tender = self._check_sale(
            sale,
            customer_known=customer_known,
            vip=vip,
            credit_limit=credit_limit,
            block_credit_when_overdue=block_credit_when_overdue,
            change=change,
            change_to_advance=change_to_advance,
            today=today,
        )
        outcome = SaleOutcome(operation_id=sale.sale_id, sale=sale)
        self.add_sale(sale)
        sale = self.sales[sale.sale_id]
        outcome.sale = sale
        own_lines = self.sale_lines(sale.sale_id)
        for line in sale.lines:
            outcome.entries.append(
                Entry(
                    sale.sale_id,
                    EntryKind.GOODS,
                    line.amount,
                    sale.sold_at,
                    sale_id=sale.sale_id,
                    line_no=line.line_no,
                )
            )
        owed = {key: line.amount for key, line in zip(own_lines, _sorted_lines(sale), strict=True)}
        goods_part = _goods_parts(sale, change)
        self._pay_sale_lines(outcome, sale, goods_part, own_lines, owed, tender.covered)
        change_alloc, advance_added = self._keep_change(outcome, sale, owed, change_to_advance)
        self._finish(outcome)

        outcome.accrual_bases = _sale_bases(sale, goods_part, change_alloc, tender.covered)
        outcome.bonus_spend = sale.bonus_spent
        outcome.total = tender.total
        outcome.on_account = tender.on_account
        outcome.paid = tender.tendered - change
        outcome.advance_applied = tender.covered
        outcome.change = change
        outcome.change_to_advance = change_to_advance
        outcome.change_allocated = change_alloc
        outcome.advance_added = advance_added
        outcome.line_owed = {ln: self.owed(sale.sale_id, ln) for _, ln in own_lines}
        outcome.due_date = sale.due_date if self.sale_owed(sale.sale_id) > 0 else None
        return outcome

    def _check_sale(
        self,
        sale: Sale,
        *,
        customer_known: bool,
        vip: bool,
        credit_limit: Decimal | None,
        block_credit_when_overdue: bool,
        change: Decimal,
        change_to_advance: Decimal,
        today: date,
    ) -> _Tender:
        """The sale's sums, or the reason it cannot be recorded (nothing changes on refusal)."""
        if sale.sale_id in self.sales:
            raise InvalidOperation(f"sale {sale.sale_id} is already recorded")

        def paid_by(*methods: Method) -> Decimal:
            return sum((p.amount for p in sale.payments if p.method in methods), ZERO)

        total = sum((line.amount for line in sale.lines), ZERO)
        on_account = paid_by(Method.ON_ACCOUNT)
        explicit_advance = paid_by(Method.ADVANCE)
        tendered = sum((p.amount for p in sale.payments if p.method is not Method.ON_ACCOUNT), ZERO)
        if tendered + on_account != total + change:
            raise InvalidOperation("payments do not add up to total + change")
        if max([total, tendered, *(p.amount for p in sale.payments)]) >= AMOUNT_LIMIT:
            raise Refusal(
                "amount_out_of_range",
                f"a sale of {total} (tendered {tendered}) is beyond what can be recorded",
            )
        if change_to_advance > change:
            raise InvalidOperation("change_to_advance exceeds the change")
        if change > paid_by(Method.CASH):
            raise InvalidOperation("change can only come from cash")
        if not customer_known and (on_account or explicit_advance or change_to_advance):
            raise InvalidOperation("on_account, advance and kept change need a customer")
        if on_account and not vip:
            raise InvalidOperation("on_account for a customer who is not VIP")
        if explicit_advance > self.advance:
            raise Refusal(
                "insufficient_advance",
                f"advance payment {explicit_advance} exceeds the advance {self.advance}",
            )
        covered = min(self.advance - explicit_advance, on_account)
        if on_account > 0:
            if block_credit_when_overdue and self.overdue_sales(today):
                raise Refusal(
                    "credit_blocked_overdue",
                    "the customer has overdue debt; no new goods on account until it is paid",
                )
            debt_after = self.debt + on_account - covered
            if credit_limit is not None and debt_after > credit_limit:
                raise Refusal(
                    "credit_limit_exceeded",
                    f"debt would be {debt_after}, above the credit limit {credit_limit}",
                )
        return _Tender(total=total, on_account=on_account, tendered=tendered, covered=covered)

    def _pay_sale_lines(
        self,
        outcome: Outcome,
        sale: Sale,
        goods_part: dict[uuid.UUID, Decimal],
        own_lines: list[LineKey],
        owed: dict[LineKey, Decimal],
        covered: Decimal,
    ) -> None:
        """The sale's own payments pay its lines, then the existing advance covers the
        on-account part (`covered`)."""
        at = sale.sold_at
        for p in sale.payments:
            if p.method is Method.ON_ACCOUNT or goods_part[p.payment_id] <= 0:
                continue
            pieces, left = self._allocate(goods_part[p.payment_id], own_lines, owed)
            assert left == 0, "payments exceed the sale total"
            kind = EntryKind.ADVANCE_APPLIED if p.method is Method.ADVANCE else EntryKind.PAYMENT
            _book(outcome, pieces, at, kind, payment_id=p.payment_id, method=p.method)
        if covered > 0:
            pieces, left = self._allocate(covered, own_lines, owed)
            assert left == 0
            _book(
                outcome,
                pieces,
                at,
                EntryKind.ADVANCE_APPLIED,
                payment_id=advance_applied_payment_id(sale.sale_id),
                method=Method.ADVANCE,
            )

    def _keep_change(
        self,
        outcome: Outcome,
        sale: Sale,
        owed: dict[LineKey, Decimal],
        change_to_advance: Decimal,
    ) -> tuple[list[Allocated], Decimal]:
        """Kept change is money arriving: it pays open debt (oldest first), then is advance."""
        if change_to_advance <= 0:
            return [], ZERO
        working = self._working_owed()
        for key, value in owed.items():
            working[key] = value
        last_cash = _last_cash(sale)
        assert last_cash is not None
        return self._money_in(
            outcome,
            change_to_advance,
            sale.sold_at,
            payment_id=last_cash.payment_id,
            method=Method.CASH,
            owed=working,
        )

    def take_money(
        self,
        *,
        payment_id: uuid.UUID,
        amount: Decimal,
        method: Method,
        at: datetime,
        mode: Mode,
        allocations: Sequence[AllocationRequest] = (),
        dated: bool = False,
    ) -> MoneyInOutcome:
        """Part of the debt paid: named allocations first (as the mode allows), then oldest.

        `dated`: the POS named `at`; money never pays a sale made after it."""
        outcome = MoneyInOutcome(operation_id=payment_id, amount=amount)
        owed = self._working_owed()
        allocated: list[Allocated] = []
        left = amount
        if mode is not Mode.BALANCE:
            for req in allocations:
                sale = self.sales.get(req.sale_id)
                if sale is None:
                    raise Refusal("not_found", f"sale {req.sale_id} is not this customer's")
                if mode is Mode.PER_ITEM and req.line_no is not None:
                    if sale.line(req.line_no) is None:
                        raise Refusal("not_found", f"sale {req.sale_id} has no line {req.line_no}")
                    targets = [(req.sale_id, req.line_no)]
                else:
                    targets = self.sale_lines(req.sale_id)
                pieces, rest = self._allocate(min(req.amount, left), targets, owed)
                left -= min(req.amount, left) - rest
                allocated += _book_payment(
                    outcome, pieces, at, payment_id=payment_id, method=method
                )
        more, advance_added = self._money_in(
            outcome, left, at, payment_id=payment_id, method=method, owed=owed
        )
        outcome.allocated = _merge(allocated + more)
        if dated:
            self._not_before_sales(at, (a.sale_id for a in outcome.allocated))
        outcome.advance_added = advance_added
        self._finish(outcome)
        outcome.accrual_bases = [BonusBase(payment_id, method, outcome.applied_to_debt)]
        return outcome

    def pay_debt(
        self, *, payment_id: uuid.UUID, method: Method, at: datetime, dated: bool = False
    ) -> MoneyInOutcome:
        """The whole debt paid; the amount is computed here."""
        debt = self.debt
        if debt <= 0:
            raise Refusal("no_debt", "the customer has no debt to pay")
        return self.take_money(
            payment_id=payment_id,
            amount=debt,
            method=method,
            at=at,
            mode=Mode.BALANCE,
            dated=dated,
        )

    def record_advance(
        self,
        *,
        payment_id: uuid.UUID,
        amount: Decimal,
        method: Method,
        at: datetime,
        dated: bool = False,
    ) -> MoneyInOutcome:
        """Money paid in advance: while debt is open it pays that first (oldest first)."""
        outcome = MoneyInOutcome(operation_id=payment_id, amount=amount)
        allocated, advance_added = self._money_in(
            outcome, amount, at, payment_id=payment_id, method=method
        )
        if dated:
            self._not_before_sales(at, (a.sale_id for a in allocated))
        outcome.allocated = _merge(allocated)
        outcome.advance_added = advance_added
        self._finish(outcome)
        outcome.accrual_bases = [BonusBase(payment_id, method, outcome.applied_to_debt)]
        return outcome

    def refund(
        self, *, refund_id: uuid.UUID, amount: Decimal, method: Method, at: datetime
    ) -> RefundOutcome:
        """Advance paid back to the customer ("Return money")."""
        if amount > self.advance:
            raise Refusal(
                "insufficient_advance", f"refund {amount} exceeds the advance {self.advance}"
            )
        outcome = RefundOutcome(operation_id=refund_id, amount=amount)
        outcome.entries.append(
            Entry(refund_id, EntryKind.ADVANCE_OUT, amount, at, payment_id=refund_id, method=method)
        )
        self._finish(outcome)
        return outcome

    def record_return(
        self,
        *,
        return_id: uuid.UUID,
        sale_id: uuid.UUID,
        lines: Sequence[ReturnRequest],
        refund: Method,
        at: datetime,
        mode: Mode,
        dated: bool = False,
    ) -> ReturnOutcome:
        """Goods back: cancel debt on them, give back spent bonus, then refund or keep money.

        `dated`: the POS named `at`; goods never come back before their sale, and the value
        kept as advance never pays a sale made after `at`."""
        sale = self.sales.get(sale_id)
        if sale is None:
            raise Refusal("not_found", f"sale {sale_id} is not known")
        if dated and at < sale.sold_at:
            raise Refusal(
                "validation_error",
                f"occurred_at {at.isoformat()} is before the sale ({sale.sold_at.isoformat()})",
                field="occurred_at",
            )
        outcome = ReturnOutcome(operation_id=return_id, sale_id=sale_id)
        values = self._returned_values(sale, lines)
        owed = self._working_owed()
        cancelled_by_line, debt_cancelled, value_left = self._cancel_debt(
            outcome, sale_id, values, owed, at=at, mode=mode, dated=dated
        )
        restorable = sale.bonus_spent - self._restored[sale_id]
        restored = min(value_left, max(restorable, ZERO))
        if restored > 0:
            outcome.entries.append(
                Entry(return_id, EntryKind.BONUS_RESTORED, restored, at, sale_id=sale_id)
            )
        real = value_left - restored
        if real > 0:
            if refund is Method.ADVANCE:
                allocated, advance_added = self._money_in(
                    outcome, real, at, payment_id=return_id, method=Method.ADVANCE, owed=owed
                )
                if dated:
                    self._not_before_sales(at, (a.sale_id for a in allocated))
                outcome.allocated = _merge(allocated)
                outcome.advance_added = advance_added
            else:
                outcome.refunded = real
        outcome.reverse_bases = self._reverse_bases(sale, [v[0].line_no for v in values], real)
        self._finish(outcome)
        outcome.lines = [
            ReturnedLineOutcome(line.line_no, quantity, value, cancelled_by_line[line.line_no])
            for line, quantity, value in values
        ]
        outcome.value = sum((v[2] for v in values), ZERO)
        outcome.debt_cancelled = debt_cancelled
        outcome.bonus_restored = restored
        outcome.restore_up_to = restored
        return outcome

    def _returned_values(
        self, sale: Sale, lines: Sequence[ReturnRequest]
    ) -> list[tuple[Line, Decimal, Decimal]]:
        """Each returned line with its quantity and the value it goes back at."""
        values: list[tuple[Line, Decimal, Decimal]] = []
        for req in lines:
            line = sale.line(req.line_no)
            if line is None:
                raise Refusal("not_found", f"sale {sale.sale_id} has no line {req.line_no}")
            key = (sale.sale_id, line.line_no)
            already = self.returned_quantity(sale.sale_id, line.line_no)
            if already + req.quantity > line.quantity:
                raise Refusal(
                    "return_exceeds_sold",
                    f"line {line.line_no}: {already + req.quantity} returned of "
                    f"{line.quantity} sold",
                )
            # A revoked discount is part of the price of the pieces kept when it was revoked,
            # so they go back at that price: what is left of the line's value (amount plus
            # revoked discount, less what earlier returns took) is shared by the pieces left.
            left = line.amount + self._revoked_amount[key] - self._returned_value[key]
            if already + req.quantity == line.quantity:
                # the last pieces take what is left, so rounding never loses a cent
                value = left
            elif self._revoked_amount[key] > 0:
                value = self._q(left * req.quantity / (line.quantity - already))
            else:
                value = self._q(line.amount * req.quantity / line.quantity)
            values.append((line, req.quantity, value))
        return values

    def _cancel_debt(
        self,
        outcome: ReturnOutcome,
        sale_id: uuid.UUID,
        values: list[tuple[Line, Decimal, Decimal]],
        owed: dict[LineKey, Decimal],
        *,
        at: datetime,
        mode: Mode,
        dated: bool,
    ) -> tuple[dict[int, Decimal], Decimal, Decimal]:
        """The returned goods' value cancels debt: the returned lines' own first, then what
        the mode allows. Returns what was cancelled on each returned line, in all, and the
        value left."""
        return_id = outcome.operation_id
        value_left = ZERO
        cancelled_by_line: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for line, quantity, value in values:
            key = (sale_id, line.line_no)
            outcome.entries.append(
                Entry(
                    return_id,
                    EntryKind.RETURNED_GOODS,
                    value,
                    at,
                    sale_id=sale_id,
                    line_no=line.line_no,
                    quantity=quantity,
                )
            )
            pieces, rest = self._allocate(value, [key], owed)
            for _, part in pieces:
                cancelled_by_line[line.line_no] += part
            value_left += rest
        # what the returned lines did not owe cancels other debt: the sale's (per_sale) or
        # the customer's oldest (balance); per_item binds debt to the line alone
        if mode is Mode.PER_SALE:
            extra_targets = self.sale_lines(sale_id)
        elif mode is Mode.BALANCE:
            extra_targets = self.fifo_lines()
        else:
            extra_targets = []
        extra, value_left = self._allocate(value_left, extra_targets, owed)
        if dated:
            self._not_before_sales(at, (s_id for (s_id, _), _ in extra))
        cancel_entries: dict[LineKey, Decimal] = defaultdict(lambda: ZERO)
        for line, _, _ in values:
            if cancelled_by_line[line.line_no] > 0:
                cancel_entries[(sale_id, line.line_no)] += cancelled_by_line[line.line_no]
        for key, part in extra:
            cancel_entries[key] += part
        for (s_id, ln), part in cancel_entries.items():
            outcome.entries.append(
                Entry(return_id, EntryKind.RETURN_CANCELLED, part, at, sale_id=s_id, line_no=ln)
            )
        return cancelled_by_line, sum(cancel_entries.values(), ZERO), value_left

    def _reverse_bases(
        self, sale: Sale, returned_lines: Sequence[int], real: Decimal
    ) -> list[BonusBase]:
        """The real money of the returned goods, traced back to the payments that paid them.

        The returned lines' own payments first (newest first), then the rest of the sale's.
        """
        if real <= 0:
            return []
        paid: list[tuple[int, Entry]] = [
            (i, e)
            for i, e in enumerate(self.entries)
            if e.sale_id == sale.sale_id
            and e.kind in (EntryKind.PAYMENT, EntryKind.ADVANCE_APPLIED)
            and e.method in REAL_MONEY
            and e.payment_id is not None
        ]
        paid.sort(key=lambda ie: (ie[1].line_no not in returned_lines, -ie[0]))
        bases: dict[tuple[uuid.UUID, Method], Decimal] = defaultdict(lambda: ZERO)
        left = real
        for _, e in paid:
            if left <= 0:
                break
            take = min(e.amount, left)
            assert e.payment_id is not None and e.method is not None
            bases[(e.payment_id, e.method)] += take
            left -= take
        return [BonusBase(pid, method, amount) for (pid, method), amount in bases.items()]

    def revoke_discount(
        self,
        *,
        sale_id: uuid.UUID,
        at: datetime,
        today: date,
        operation_id: uuid.UUID | None = None,
    ) -> RevokeOutcome:
        """An overdue sale's discount is added to what is owed on its discounted lines, once.

        `operation_id`: the operation's own (a requested revocation's attempt,
        `revoke_attempt_id`); by default the sale's one revocation (`revoke_operation_id`)."""
        sale = self._overdue_unrevoked(sale_id, today)
        if operation_id is None:
            operation_id = _revoke_operation_id(sale_id)
        outcome = RevokeOutcome(operation_id=operation_id, sale_id=sale_id)
        self._revoke_lines(outcome, sale, at)
        if not outcome.lines:
            raise Refusal("not_found", f"sale {sale_id} has no discount to revoke")
        outcome.amount = sum((a for _, a in outcome.lines), ZERO)
        self._cover_revoked(outcome, sale_id, at)
        self._finish(outcome)
        return outcome

    def _overdue_unrevoked(self, sale_id: uuid.UUID, today: date) -> Sale:
        """The sale whose discount may be revoked: known, not revoked yet, and overdue."""
        sale = self.sales.get(sale_id)
        if sale is None:
            raise Refusal("not_found", f"sale {sale_id} is not known")
        if self.is_revoked(sale_id):
            raise Refusal("already_revoked", f"the discount of sale {sale_id} was revoked already")
        if not (today > sale.due_date and self.sale_owed(sale_id) > 0):
            raise Refusal("not_overdue", f"sale {sale_id} is not overdue")
        return sale

    def _revoke_lines(self, outcome: RevokeOutcome, sale: Sale, at: datetime) -> None:
        """Each discounted line owes its discount again, for the pieces kept (not returned)."""
        sale_id = sale.sale_id
        for line in _sorted_lines(sale):
            if line.discount <= 0:
                continue
            kept = line.quantity - self.returned_quantity(sale_id, line.line_no)
            amount = self._q(line.discount * kept / line.quantity)
            if amount <= 0:
                continue
            outcome.lines.append((line.line_no, amount))
            outcome.entries.append(
                Entry(
                    outcome.operation_id,
                    EntryKind.REVOKED_DISCOUNT,
                    amount,
                    at,
                    sale_id=sale_id,
                    line_no=line.line_no,
                )
            )

    def _cover_revoked(self, outcome: RevokeOutcome, sale_id: uuid.UUID, at: datetime) -> None:
        """The "never debt and advance together" rule: an advance covers new debt at once."""
        cover = min(self.advance, outcome.amount)
        if cover <= 0:
            return
        owed = self._working_owed()
        for ln, amount in outcome.lines:
            owed[(sale_id, ln)] = owed.get((sale_id, ln), ZERO) + amount
        pieces, _ = self._allocate(cover, [(sale_id, ln) for ln, _ in outcome.lines], owed)
        _book(
            outcome, pieces, at, EntryKind.ADVANCE_APPLIED, payment_id=None, method=Method.ADVANCE
        )
        outcome.advance_applied = cover


_REVOKE_NS = uuid.UUID("7d1e9a52-4c3b-4a8e-b0f1-2e6c5d4a3b21")


def _revoke_operation_id(sale_id: uuid.UUID) -> uuid.UUID:
    """The automatic revocation of a sale's discount (the overdue scan), at most one: its
    operation id follows from the sale."""
    return uuid.uuid5(_REVOKE_NS, str(sale_id))


revoke_operation_id = _revoke_operation_id


def revoke_attempt_id(sale_id: uuid.UUID, request_id: uuid.UUID) -> uuid.UUID:
    """A requested revocation's operation id: one per request (`request_id`, the command's
    message id), so that an attempt that failed for good (voided here and in loyalty) leaves
    the next request of the sale free. The discount is still revoked at most once: the
    ledger refuses a sale revoked by a live operation (`already_revoked`)."""
    return uuid.uuid5(_REVOKE_NS, f"{sale_id}/{request_id}")


def due_date_for(local_date: date, delay_days: int) -> date:
    """The sale's chain-local date plus the customer's (or the chain's) payment delay."""
    return local_date + timedelta(days=delay_days)


@dataclass(frozen=True)
class _Tender:
    total: Decimal
    on_account: Decimal
    tendered: Decimal  # every payment but on account, change included
    covered: Decimal  # of the on-account part, what the existing advance pays


def _last_cash(sale: Sale) -> Payment | None:
    return next((p for p in reversed(sale.payments) if p.method is Method.CASH), None)


def _goods_parts(sale: Sale, change: Decimal) -> dict[uuid.UUID, Decimal]:
    """What of each payment pays goods: change is handed back from the cash tendered, last
    cash payment first."""
    goods_part = {p.payment_id: p.amount for p in sale.payments}
    change_left = change
    for p in reversed(sale.payments):
        if change_left <= 0:
            break
        if p.method is Method.CASH:
            take = min(change_left, goods_part[p.payment_id])
            goods_part[p.payment_id] -= take
            change_left -= take
    return goods_part


def _sale_bases(
    sale: Sale,
    goods_part: dict[uuid.UUID, Decimal],
    change_alloc: list[Allocated],
    covered: Decimal,
) -> list[BonusBase]:
    """Bonus bases: real money that paid goods (kept change that paid debt counts for the
    last cash payment), and the advance that covered the on-account part."""
    last_cash = _last_cash(sale)
    bases: list[BonusBase] = []
    for p in sale.payments:
        if p.method in REAL_MONEY:
            base = goods_part[p.payment_id]
            if last_cash is not None and p.payment_id == last_cash.payment_id:
                base += sum((a.amount for a in change_alloc), ZERO)
            bases.append(BonusBase(p.payment_id, p.method, base))
    if covered > 0:
        bases.append(BonusBase(advance_applied_payment_id(sale.sale_id), Method.ADVANCE, covered))
    return bases


def _sorted_lines(sale: Sale) -> list[Line]:
    return sorted(sale.lines, key=lambda ln: ln.line_no)


def _replace_seq(sale: Sale, seq: int) -> Sale:
    from dataclasses import replace

    return replace(sale, seq=seq)


def _book(
    outcome: Outcome,
    pieces: Sequence[tuple[LineKey, Decimal]],
    at: datetime,
    kind: EntryKind,
    *,
    payment_id: uuid.UUID | None,
    method: Method | None,
) -> None:
    """A credit entry of ``kind`` in ``outcome`` for each piece of one payment's money paid on
    a line (a sale's own payments, the advance covering it, money paying debt later)."""
    for (sale_id, line_no), part in pieces:
        outcome.entries.append(
            Entry(
                outcome.operation_id,
                kind,
                part,
                at,
                sale_id=sale_id,
                line_no=line_no,
                payment_id=payment_id,
                method=method,
            )
        )


def _book_payment(
    outcome: Outcome,
    pieces: Sequence[tuple[LineKey, Decimal]],
    at: datetime,
    *,
    payment_id: uuid.UUID | None,
    method: Method | None,
) -> list[Allocated]:
    """A payment entry of ``outcome`` for each piece of money paid on a line; the pieces as
    `Allocated`, in the same order."""
    _book(outcome, pieces, at, EntryKind.PAYMENT, payment_id=payment_id, method=method)
    return [Allocated(sale_id, line_no, part) for (sale_id, line_no), part in pieces]


def _merge(pieces: Iterable[Allocated]) -> list[Allocated]:
    """One allocation per line, in the order the lines were first paid."""
    merged: dict[LineKey, Decimal] = {}
    for p in pieces:
        key = (p.sale_id, p.line_no)
        merged[key] = merged.get(key, ZERO) + p.amount
    return [Allocated(s, ln, amount) for (s, ln), amount in merged.items()]


def allocations_by_mode(allocated: Sequence[Allocated], mode: Mode) -> list[Allocated]:
    """How allocations are shown: per line in per_item, per sale otherwise."""
    if mode is Mode.PER_ITEM:
        return list(allocated)
    merged: dict[uuid.UUID, Decimal] = {}
    for a in allocated:
        merged[a.sale_id] = merged.get(a.sale_id, ZERO) + a.amount
    return [Allocated(s, 0, amount) for s, amount in merged.items()]
