"""Property tests: the ledger's invariants hold after any sequence of operations in any mode."""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from credit.domain.errors import Refusal
from credit.domain.model import (
    CHARGES,
    CREDITS,
    AllocationRequest,
    EntryKind,
    Ledger,
    Method,
    Mode,
    ReturnRequest,
)
from credit.testing import D, day, line, local, pay, sale, take_money, vip_sale

cents = st.integers(min_value=1, max_value=20000).map(lambda c: Decimal(c) / 100)
modes = st.sampled_from(list(Mode))

sale_op = st.tuples(
    st.just("sale"),
    st.lists(cents, min_size=1, max_size=3),
    st.integers(0, 100),  # percent on account
    st.booleans(),  # part paid with existing advance
)
take_op = st.tuples(st.just("take"), cents, st.integers(0, 5), st.integers(1, 3), st.booleans())
advance_op = st.tuples(st.just("advance"), cents)
refund_op = st.tuples(st.just("refund"), cents)
paydebt_op = st.tuples(st.just("pay_debt"))
return_op = st.tuples(st.just("return"), st.integers(0, 5), st.integers(1, 3), st.booleans())
revoke_op = st.tuples(st.just("revoke"), st.integers(0, 5))

any_op = st.one_of(sale_op, take_op, advance_op, refund_op, paydebt_op, return_op, revoke_op)
money_op = st.one_of(sale_op, take_op, advance_op, refund_op, paydebt_op, revoke_op)


def run(ledger: Ledger, op: tuple, n: int, mode: Mode) -> object:
    """Apply one generated operation on day ``n``; refusals leave the ledger as it was."""
    kind = op[0]
    sales = ledger.ordered_sales()
    if kind == "sale":
        _, amounts, on_account_pct, use_advance = op
        lines = [line(i + 1, str(a), discount="1.00") for i, a in enumerate(amounts)]
        total = sum(amounts, Decimal(0))
        on_account = (total * on_account_pct / 100).quantize(D("0.01"))
        payments = []
        rest = total - on_account
        if use_advance and ledger.advance > 0 and rest > 0:
            adv = min(ledger.advance, rest)
            payments.append(pay("advance", str(adv)))
            rest -= adv
        if rest > 0:
            payments.append(pay("cash", str(rest)))
        if on_account > 0:
            payments.append(pay("on_account", str(on_account)))
        s = sale(lines, payments, at=n, delay=3)
        return vip_sale(ledger, s)
    if kind == "take":
        _, amount, sale_idx, line_no, named = op
        allocations = []
        if named and sales:
            target = sales[sale_idx % len(sales)]
            allocations = [
                AllocationRequest(
                    target.sale_id, line_no if line_no <= len(target.lines) else None, amount
                )
            ]
        return take_money(ledger, amount, at=n, mode=mode, allocations=allocations)
    if kind == "advance":
        return ledger.record_advance(
            payment_id=uuid.uuid4(), amount=op[1], method=Method.CARD, at=day(n)
        )
    if kind == "refund":
        return ledger.refund(refund_id=uuid.uuid4(), amount=op[1], method=Method.CASH, at=day(n))
    if kind == "pay_debt":
        return ledger.pay_debt(payment_id=uuid.uuid4(), method=Method.CASH, at=day(n))
    if kind == "return":
        _, sale_idx, line_no, to_advance = op
        if not sales:
            raise Refusal("not_found", "no sale yet")
        target = sales[sale_idx % len(sales)]
        ln = target.lines[(line_no - 1) % len(target.lines)]
        return ledger.record_return(
            return_id=uuid.uuid4(),
            sale_id=target.sale_id,
            lines=[ReturnRequest(ln.line_no, ln.quantity)],
            refund=Method.ADVANCE if to_advance else Method.CASH,
            at=day(n),
            mode=mode,
        )
    if kind == "revoke":
        if not sales:
            raise Refusal("not_found", "no sale yet")
        target = sales[op[1] % len(sales)]
        return ledger.revoke_discount(sale_id=target.sale_id, at=day(n), today=local(n))
    raise AssertionError(kind)


def check_invariants(ledger: Ledger) -> None:
    owed: dict[tuple[uuid.UUID, int], Decimal] = defaultdict(Decimal)
    advance = Decimal(0)
    for e in ledger.entries:
        assert e.amount >= 0
        if e.kind in CHARGES:
            owed[(e.sale_id, e.line_no)] += e.amount  # type: ignore[index]
        elif e.kind in CREDITS:
            owed[(e.sale_id, e.line_no)] -= e.amount  # type: ignore[index]
        if e.kind is EntryKind.ADVANCE_IN:
            advance += e.amount
        elif e.kind in (EntryKind.ADVANCE_OUT, EntryKind.ADVANCE_APPLIED):
            advance -= e.amount
    # open amounts never negative: no allocation ever exceeded what was owed
    assert all(v >= 0 for v in owed.values())
    # the debt is the sum of the open amounts, the advance the sum of its movements
    assert ledger.debt == sum(owed.values(), Decimal(0))
    assert ledger.advance == advance >= 0
    # never debt and advance at once
    assert not (ledger.debt > 0 and ledger.advance > 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(any_op, modes), max_size=25))
def test_invariants_hold_after_any_sequence_in_any_mode(ops):
    ledger = Ledger()
    for n, (op, mode) in enumerate(ops):
        before = list(ledger.entries)
        try:
            run(ledger, op, n, mode)
        except Refusal:
            assert ledger.entries == before  # a refusal records nothing
        check_invariants(ledger)


@settings(max_examples=200, deadline=None)
@given(st.lists(money_op, max_size=25))
def test_every_payment_is_allocated_exactly_once(ops):
    ledger = Ledger()
    for n, op in enumerate(ops):
        try:
            outcome = run(ledger, op, n, Mode.PER_ITEM)
        except Refusal:
            continue
        if op[0] in ("take", "advance", "pay_debt"):
            pid = outcome.operation_id  # type: ignore[attr-defined]
            placed = sum(
                (
                    e.amount
                    for e in ledger.entries
                    if e.payment_id == pid and e.kind in (EntryKind.PAYMENT, EntryKind.ADVANCE_IN)
                ),
                Decimal(0),
            )
            assert placed == outcome.amount  # type: ignore[attr-defined]
        if op[0] == "sale":
            s = outcome.sale  # type: ignore[attr-defined]
            for p in s.payments:
                if p.method is Method.ON_ACCOUNT:
                    continue
                placed = sum(
                    (e.amount for e in ledger.entries if e.payment_id == p.payment_id), Decimal(0)
                )
                assert placed == p.amount


@settings(max_examples=150, deadline=None)
@given(st.lists(money_op, max_size=20))
def test_totals_do_not_depend_on_the_credit_mode(ops):
    results = []
    for mode in Mode:
        ledger = Ledger()
        refused = []
        for n, op in enumerate(ops):
            try:
                run(ledger, op, n, mode)
                refused.append(False)
            except Refusal:
                refused.append(True)
        results.append((ledger.debt, ledger.advance))
    # revocations may differ (which sale is overdue depends on allocation); the rest may not
    if not any(op[0] == "revoke" for op in ops):
        assert len(set(results)) == 1


two_different_modes = st.permutations(list(Mode)).map(lambda order: (order[0], order[1]))


@settings(max_examples=100, deadline=None)
@given(st.lists(any_op, max_size=20), two_different_modes)
def test_switching_mode_midway_keeps_the_open_debt_of_every_line(ops, switch):
    first, second = switch
    ledger = Ledger()
    half = len(ops) // 2
    for n, op in enumerate(ops[:half]):
        with contextlib.suppress(Refusal):
            run(ledger, op, n, first)
    owed_before = {key: ledger.owed(*key) for key in ledger.fifo_lines()}
    debt, advance = ledger.debt, ledger.advance
    # The switch: credit reads the customer's ledger again from what it stored (sales and
    # entries, no mode among them) and from now on works in the second mode.
    ledger = Ledger(ledger.sales.values(), ledger.entries, minor_units=ledger.minor_units)
    assert {key: ledger.owed(*key) for key in ledger.fifo_lines()} == owed_before
    assert (ledger.debt, ledger.advance) == (debt, advance)
    for n, op in enumerate(ops[half:], start=half):
        with contextlib.suppress(Refusal):
            run(ledger, op, n, second)
        check_invariants(ledger)
    # Debt and advance do not depend on the mode (returns and revocations aside, whose
    # effect does): the switched ledger ends where one that never switched ends.
    if not any(op[0] in ("return", "revoke") for op in ops):
        unswitched = Ledger()
        for n, op in enumerate(ops):
            with contextlib.suppress(Refusal):
                run(unswitched, op, n, first)
        assert (ledger.debt, ledger.advance) == (unswitched.debt, unswitched.advance)
