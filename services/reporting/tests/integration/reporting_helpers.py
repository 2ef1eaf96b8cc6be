"""What several of reporting's integration tests use: credit's and loyalty's events as they feed
them (a sale, all on account by default; one coat of a sale brought back for cash; a bonus
movement), read-model rows as the projection writes them (a chain, customers, movements) for the
tests that load the tables directly, and reading a paged report to its end."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.credit import v1 as credit
from contracts.enums import (
    BonusMovementKind,
    CreditMode,
    DebtPaymentKind,
    MoneyMethod,
    PaymentMethod,
    RefundMethod,
)
from contracts.loyalty import v1 as loyalty
from reporting.adapters import tables as t

D = Decimal
ZERO = D("0.00")


def coat(amount: str, *, owed: str | None = None, quantity: str = "1") -> credit.SaleLineOutcome:
    """Line 1: `quantity` coats for `amount` in all, `owed` of it still owed (all of it by
    default)."""
    return credit.SaleLineOutcome(
        line_no=1,
        sku=None,
        barcode="1",
        name="Coat",
        quantity=D(quantity),
        unit_price=D(amount) / D(quantity),
        discount=ZERO,
        amount=D(amount),
        owed=D(amount if owed is None else owed),
    )


def sale_completed(
    *,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    sale_id: uuid.UUID,
    when: datetime,
    lines: list[credit.SaleLineOutcome],
    store_id: uuid.UUID,
    terminal_id: uuid.UUID,
    balances: credit.CustomerBalances | None = None,
    payments: list[tuple[PaymentMethod, str]] | None = None,
    on_account: str | None = None,
    advance_applied: str = "0.00",
    change: str = "0.00",
    change_to_advance: str = "0.00",
    advance_added: str = "0.00",
    due: bool = True,
    mode: CreditMode = CreditMode.PER_ITEM,
    card_number: str | None = "C",
) -> credit.SaleCompleted:
    """A sale of `lines` tendered with `payments` (no bonus), `on_account` of it owed (by
    default: no payments, all of it on account), due 30 days later unless not `due`; the
    customer's balances after it (by default: a debt of this sale's total and nothing else)."""
    total = sum((ln.amount for ln in lines), D(0))
    tendered = payments or []
    return credit.SaleCompleted(
        sale_id=sale_id,
        chain_id=chain_id,
        store_id=store_id,
        terminal_id=terminal_id,
        customer_id=customer_id,
        card_number=card_number,
        credit_mode=mode,
        sold_at=when,
        total=total,
        paid=sum((D(a) for _, a in tendered), D(0)) - D(change),
        on_account=total if on_account is None else D(on_account),
        advance_applied=D(advance_applied),
        change=D(change),
        change_to_advance=D(change_to_advance),
        change_allocated=[],
        advance_added=D(advance_added),
        due_date=(when + timedelta(days=30)).date() if due else None,
        bonus_accrued=ZERO,
        bonus_spent=ZERO,
        payments=[
            credit.SalePaymentOutcome(
                payment_id=uuid.uuid4(), method=m, amount=D(a), bonus_accrued=ZERO
            )
            for m, a in tendered
        ],
        lines=lines,
        customer_balances=balances
        or credit.CustomerBalances(debt=total, advance=ZERO, bonus_balance=ZERO),
        lines_changed=[
            credit.LineOwedChange(sale_id=sale_id, line_no=ln.line_no, owed_after=ln.owed)
            for ln in lines
        ],
    )


def coat_returned(
    *,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    sale_id: uuid.UUID,
    value: str,
    at: datetime,
    owed_after: str,
    balances: credit.CustomerBalances,
    store_id: uuid.UUID,
    terminal_id: uuid.UUID,
) -> credit.ReturnRecorded:
    """The coat (line 1) brought back: its `value` all cancels debt, nothing is refunded."""
    return credit.ReturnRecorded(
        return_id=uuid.uuid4(),
        sale_id=sale_id,
        chain_id=chain_id,
        customer_id=customer_id,
        store_id=store_id,
        terminal_id=terminal_id,
        refund=RefundMethod.CASH,
        lines=[
            credit.ReturnedLine(
                line_no=1,
                sku=None,
                barcode="1",
                name="Coat",
                quantity=D("1"),
                value=D(value),
                debt_cancelled=D(value),
            )
        ],
        value=D(value),
        debt_cancelled=D(value),
        bonus_restored=ZERO,
        refunded=ZERO,
        applied_to_debt=ZERO,
        allocated=[],
        advance_added=ZERO,
        bonus_reversed=ZERO,
        occurred_at=at,
        customer_balances=balances,
        lines_changed=[credit.LineOwedChange(sale_id=sale_id, line_no=1, owed_after=D(owed_after))],
    )


def debt_payment(
    chain_id: uuid.UUID,
    store_id: uuid.UUID,
    terminal_id: uuid.UUID,
    customer_id: uuid.UUID,
    when: datetime,
    amount: str,
    kind: DebtPaymentKind,
    allocated: list[tuple[uuid.UUID, int | None, str]],
    changes: list[tuple[uuid.UUID, int, str]],
    balances: credit.CustomerBalances,
) -> credit.DebtPaymentRecorded:
    """`amount` of debt paid in cash at the till: `allocated` to (sale, line or None, amount),
    leaving the lines `changes` name owing (sale, line, owed after); a tenth accrues as bonus."""
    return credit.DebtPaymentRecorded(
        payment_id=uuid.uuid4(),
        chain_id=chain_id,
        customer_id=customer_id,
        store_id=store_id,
        terminal_id=terminal_id,
        kind=kind,
        method=MoneyMethod.CASH,
        amount=D(amount),
        allocated=[credit.Allocation(sale_id=s, line_no=n, amount=D(a)) for s, n, a in allocated],
        advance_added=ZERO,
        bonus_accrued=D(amount) / 10,
        occurred_at=when,
        customer_balances=balances,
        lines_changed=[
            credit.LineOwedChange(sale_id=s, line_no=n, owed_after=D(o)) for s, n, o in changes
        ],
    )


def bonus_movement(
    chain_id: uuid.UUID,
    store_id: uuid.UUID,
    customer_id: uuid.UUID,
    kind: BonusMovementKind,
    amount: str,
    at: datetime,
    balance_after: str,
    *,
    sale_id: uuid.UUID | None = None,
    operation_id: uuid.UUID | None = None,
) -> loyalty.BonusMovementRecorded:
    """Loyalty's movement of `amount` bonus at the chain's store (not a payment's), the
    customer's bonus balance `balance_after` it."""
    return loyalty.BonusMovementRecorded(
        movement_id=uuid.uuid4(),
        chain_id=chain_id,
        customer_id=customer_id,
        kind=kind,
        amount=D(amount),
        store_id=store_id,
        payment_id=None,
        sale_id=sale_id,
        operation_id=operation_id,
        at=at,
        balance_after=D(balance_after),
    )


async def all_pages(
    fetch: Callable[[str | None], Awaitable[Any]], *, most: int = 500
) -> tuple[list[Any], list[Any]]:
    """Every row of a paged report, and its pages: `fetch(cursor)` answers one page (`rows`,
    `next`), from the first (cursor None) until one has no `next`."""
    rows: list[Any] = []
    pages: list[Any] = []
    cursor = None
    for _ in range(most):
        page = await fetch(cursor)
        rows += page.rows
        pages.append(page)
        cursor = page.next
        if cursor is None:
            return rows, pages
    raise AssertionError("the pages never ended")


async def insert_chains(
    session: AsyncSession,
    *chain_ids: uuid.UUID,
    name: str = "Chain",
    currency: str = "EUR",
    minor_units: int = 2,
    credit_mode: str = "per_item",
) -> None:
    """Rows of `rm_chains` (in Bucharest time), as the projection keeps them."""
    await session.execute(
        sa.insert(t.chains),
        [
            {
                "chain_id": chain_id,
                "name": name,
                "timezone": "Europe/Bucharest",
                "currency": currency,
                "minor_units": minor_units,
                "credit_mode": credit_mode,
            }
            for chain_id in chain_ids
        ],
    )


async def insert_customers(
    session: AsyncSession,
    chain_id: uuid.UUID,
    customers: Iterable[tuple[uuid.UUID, str, bool]],
) -> None:
    """Rows of `rm_customers`, one per (customer id, name, vip), each `name_key` the name
    casefolded as the projection keys it."""
    await session.execute(
        sa.insert(t.customers),
        [
            {"customer_id": c, "chain_id": chain_id, "name": n, "vip": v, "name_key": n.casefold()}
            for c, n, v in customers
        ],
    )


def movement_row(**values: Any) -> dict[str, Any]:
    """A row of `rm_movements` as the projection writes it: `values`, its own message, seq 0."""
    return {"message_id": uuid.uuid4(), "seq": 0, **values}


async def rows_read(conn: AsyncConnection, table: str) -> int:
    """Rows of `table` the connection's transaction has read so far (index and sequential
    scans): what a statement's triggers read is the difference around it."""
    read = await conn.scalar(
        sa.text(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
            " FROM pg_stat_xact_user_tables WHERE relname = :table"
        ),
        {"table": table},
    )
    return int(read or 0)
