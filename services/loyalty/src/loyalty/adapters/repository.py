"""Loads a customer's bonus account under its row lock and writes back what the domain did.

Every function works in the caller's transaction (a consumer batch, or the expiry
job's transaction) and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import quantize_money
from loyalty.adapters.tables import (
    bonus_lots,
    bonus_movements,
    bonus_operations,
    chain_settings,
    customer_bonus,
    payment_accruals,
    payment_cancellations,
    payment_reversals,
)
from loyalty.domain.model import (
    ZERO,
    BonusAccount,
    Lot,
    Movement,
    MovementKind,
    PaymentAccrual,
    PaymentHistory,
    ReversalRecord,
    SaleHistory,
)
from servicekit.db import lock_row

DEFAULT_MINOR_UNITS = 2


@dataclass(frozen=True)
class ChainSettings:
    """What loyalty keeps of a chain's settings (mirrored from master data)."""

    chain_id: UUID
    bonus_expiry_days: int | None
    minor_units: int
    changed_at: datetime | None


@dataclass(frozen=True)
class StoredOperation:
    """The answer given to a credit operation, to give it again for a repeated operation."""

    operation_id: UUID
    chain_id: UUID
    customer_id: UUID
    outcome: str
    answer_type: str
    answer: dict[str, Any]


@dataclass(frozen=True)
class StoredCancellation:
    payment_id: UUID
    chain_id: UUID
    customer_id: UUID
    cancelled: Decimal
    cancelled_at: datetime


# --------------------------------------------------------------------------- chain settings


async def get_chain_settings(session: AsyncSession, chain_id: UUID) -> ChainSettings | None:
    row = (
        await session.execute(
            sa.select(chain_settings).where(chain_settings.c.chain_id == chain_id)
        )
    ).first()
    if row is None:
        return None
    return ChainSettings(row.chain_id, row.bonus_expiry_days, row.minor_units, row.changed_at)


async def save_chain_settings(
    session: AsyncSession,
    *,
    chain_id: UUID,
    bonus_expiry_days: int | None,
    bonus_rate_percent: Decimal,
    minor_units: int,
    timezone: str | None,
    changed_at: datetime | None,
) -> None:
    """Master data wins over a command's snapshot, and a newer change over an older one."""
    values = {
        "chain_id": chain_id,
        "bonus_expiry_days": bonus_expiry_days,
        "bonus_rate_percent": bonus_rate_percent,
        "minor_units": minor_units,
        "timezone": timezone,
        "changed_at": changed_at,
    }
    stmt = pg_insert(chain_settings).values(**values)
    if changed_at is None:
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["chain_id"]))
        return
    excluded = stmt.excluded
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["chain_id"],
            set_={k: excluded[k] for k in values if k != "chain_id"},
            where=sa.or_(
                chain_settings.c.changed_at.is_(None),
                chain_settings.c.changed_at <= excluded.changed_at,
            ),
        )
    )


# --------------------------------------------------------------------------- the account


async def lock_customer(
    session: AsyncSession, chain_id: UUID, customer_id: UUID, *, skip_locked: bool = False
) -> tuple[Decimal, Decimal] | None:
    """Lock the customer's bonus row (created on first use); returns (balance, deficit).

    Every change of a customer's bonuses holds this lock until its transaction ends, so two
    spends of the same last bonuses are serialised even across instances. With
    ``skip_locked`` returns None instead of waiting when someone else holds it.
    """
    row = await lock_row(
        session,
        sa.select(customer_bonus.c.balance, customer_bonus.c.deficit)
        .where(customer_bonus.c.chain_id == chain_id, customer_bonus.c.customer_id == customer_id)
        .with_for_update(skip_locked=skip_locked),
        pg_insert(customer_bonus)
        .values(chain_id=chain_id, customer_id=customer_id)
        .on_conflict_do_nothing(index_elements=["chain_id", "customer_id"]),
    )
    if row is None:
        return None
    return row.balance, row.deficit


async def load_account(
    session: AsyncSession,
    chain_id: UUID,
    customer_id: UUID,
    *,
    minor_units: int,
    skip_locked: bool = False,
) -> BonusAccount | None:
    """The customer's account with its open lots, under the customer's row lock."""
    locked = await lock_customer(session, chain_id, customer_id, skip_locked=skip_locked)
    if locked is None:
        return None
    _, deficit = locked
    rows = (
        await session.execute(
            sa.select(bonus_lots)
            .where(
                bonus_lots.c.chain_id == chain_id,
                bonus_lots.c.customer_id == customer_id,
                bonus_lots.c.remaining > 0,
            )
            .order_by(bonus_lots.c.at, bonus_lots.c.seq)
        )
    ).all()
    lots = [
        Lot(
            lot_id=r.lot_id,
            at=r.at,
            amount=quantize_money(r.amount, minor_units),
            remaining=quantize_money(r.remaining, minor_units),
            store_id=r.store_id,
            payment_id=r.payment_id,
            sale_id=r.sale_id,
        )
        for r in rows
    ]
    return BonusAccount(
        customer_id=customer_id, lots=lots, deficit=quantize_money(deficit, minor_units)
    )


async def save_account(session: AsyncSession, chain_id: UUID, account: BonusAccount) -> None:
    """Write the new movements and lots and the changed projections (save an account once)."""
    seqs: dict[tuple[UUID | None, str], int] = {}
    movement_rows = []
    for m in account.movements:
        key = (m.operation_id, m.kind.value)
        seq = seqs.get(key, 0)
        seqs[key] = seq + 1
        movement_rows.append(
            {
                "movement_id": m.movement_id,
                "chain_id": chain_id,
                "customer_id": account.customer_id,
                "kind": m.kind.value,
                "amount": m.amount,
                "at": m.at,
                "balance_after": m.balance_after,
                "operation_id": m.operation_id,
                "seq": seq,
                "payment_id": m.payment_id,
                "sale_id": m.sale_id,
                "store_id": m.store_id,
                "lot_id": m.lot_id,
            }
        )
    if movement_rows:
        await session.execute(sa.insert(bonus_movements), movement_rows)
    new_ids = {lot.lot_id for lot in account.new_lots}
    if account.new_lots:
        # one by one: the identity column then numbers them in spending order
        for lot in account.new_lots:
            await session.execute(
                sa.insert(bonus_lots).values(
                    lot_id=lot.lot_id,
                    chain_id=chain_id,
                    customer_id=account.customer_id,
                    at=lot.at,
                    amount=lot.amount,
                    remaining=lot.remaining,
                    store_id=lot.store_id,
                    payment_id=lot.payment_id,
                    sale_id=lot.sale_id,
                )
            )
    for lot in account.touched_lots.values():
        if lot.lot_id in new_ids:
            continue
        await session.execute(
            sa.update(bonus_lots)
            .where(bonus_lots.c.lot_id == lot.lot_id)
            .values(remaining=lot.remaining)
        )
    await session.execute(
        sa.update(customer_bonus)
        .where(
            customer_bonus.c.chain_id == chain_id,
            customer_bonus.c.customer_id == account.customer_id,
        )
        .values(balance=account.balance, deficit=account.deficit, updated_at=sa.func.now())
    )


# --------------------------------------------------------------------------- payments and sales


def _not_voided(chain_id: Any, operation_id: Any) -> Any:
    """The row's operation was not voided (a voided one counts in no history)."""
    o = bonus_operations.c
    return ~(
        sa.select(o.operation_id)
        .where(o.chain_id == chain_id, o.operation_id == operation_id, o.outcome == "voided")
        .exists()
    )


async def load_payment_histories(
    session: AsyncSession,
    chain_id: UUID,
    customer_id: UUID,
    payment_ids: Iterable[UUID],
    *,
    minor_units: int,
) -> dict[UUID, PaymentHistory]:
    """The accruals of these payments (of this customer only) and what was taken back."""
    ids = list(dict.fromkeys(payment_ids))
    if not ids:
        return {}
    q = payment_accruals.c
    accruals = (
        await session.execute(
            sa.select(payment_accruals).where(
                q.payment_id.in_(ids),
                q.chain_id == chain_id,
                q.customer_id == customer_id,
                _not_voided(q.chain_id, q.operation_id),
            )
        )
    ).all()
    if not accruals:
        return {}
    found = [r.payment_id for r in accruals]
    reversed_rows = (
        await session.execute(
            sa.select(
                payment_reversals.c.payment_id,
                sa.func.sum(payment_reversals.c.amount).label("amount"),
                sa.func.sum(payment_reversals.c.base).label("base"),
            )
            .where(
                payment_reversals.c.chain_id == chain_id,
                payment_reversals.c.payment_id.in_(found),
                _not_voided(payment_reversals.c.chain_id, payment_reversals.c.operation_id),
            )
            .group_by(payment_reversals.c.payment_id)
        )
    ).all()
    reversed_by = {r.payment_id: (r.amount, r.base) for r in reversed_rows}
    cancelled_rows = (
        await session.execute(
            sa.select(payment_cancellations.c.payment_id, payment_cancellations.c.cancelled).where(
                payment_cancellations.c.chain_id == chain_id,
                payment_cancellations.c.payment_id.in_(found),
            )
        )
    ).all()
    cancelled_by = {r.payment_id: r.cancelled for r in cancelled_rows}
    lot_ids = [r.lot_id for r in accruals if r.lot_id is not None]
    expired_by: dict[UUID, Decimal] = {}
    if lot_ids:
        # at most one expiry per lot (unique index), so no sum is needed
        expired_rows = (
            await session.execute(
                sa.select(bonus_movements.c.lot_id, bonus_movements.c.amount).where(
                    bonus_movements.c.lot_id.in_(lot_ids),
                    bonus_movements.c.kind == "expired",
                )
            )
        ).all()
        expired_by = {r.lot_id: r.amount for r in expired_rows}

    def m(value: Decimal) -> Decimal:
        return quantize_money(value, minor_units)

    result = {}
    for r in accruals:
        rev_amount, rev_base = reversed_by.get(r.payment_id, (ZERO, ZERO))
        accrual = PaymentAccrual(
            payment_id=r.payment_id,
            operation_id=r.operation_id,
            sale_id=r.sale_id,
            store_id=r.store_id,
            method=r.method,
            base=m(r.base),
            rate_percent=r.rate_percent,
            accrued=m(r.accrued),
            at=r.at,
            lot_id=r.lot_id,
        )
        result[r.payment_id] = PaymentHistory(
            accrual=accrual,
            cancelled=m(cancelled_by.get(r.payment_id, ZERO)),
            reversed=m(rev_amount),
            reversed_base=m(rev_base),
            expired=m(expired_by.get(r.lot_id, ZERO)) if r.lot_id is not None else m(ZERO),
        )
    return result


async def existing_accrual_payments(
    session: AsyncSession, chain_id: UUID, payment_ids: Sequence[UUID]
) -> list[UUID]:
    """Payments of the chain that already accrued (in any operation): a payment accrues once."""
    if not payment_ids:
        return []
    rows = await session.execute(
        sa.select(payment_accruals.c.payment_id).where(
            payment_accruals.c.chain_id == chain_id,
            payment_accruals.c.payment_id.in_(list(payment_ids)),
        )
    )
    return list(rows.scalars())


async def load_sale_history(
    session: AsyncSession, chain_id: UUID, customer_id: UUID, sale_id: UUID, *, minor_units: int
) -> SaleHistory:
    c = bonus_movements.c
    rows = (
        await session.execute(
            sa.select(c.kind, sa.func.sum(c.amount).label("amount"))
            .where(
                c.sale_id == sale_id,
                c.chain_id == chain_id,
                c.customer_id == customer_id,
                c.kind.in_(("spent", "restored")),
                _not_voided(c.chain_id, c.operation_id),
            )
            .group_by(c.kind)
        )
    ).all()
    sums = {r.kind: r.amount for r in rows}
    return SaleHistory(
        spent=quantize_money(sums.get("spent", ZERO), minor_units),
        restored=quantize_money(sums.get("restored", ZERO), minor_units),
    )


async def save_accruals(
    session: AsyncSession,
    chain_id: UUID,
    customer_id: UUID,
    accruals: Sequence[PaymentAccrual],
) -> None:
    if not accruals:
        return
    await session.execute(
        sa.insert(payment_accruals),
        [
            {
                "payment_id": a.payment_id,
                "chain_id": chain_id,
                "customer_id": customer_id,
                "operation_id": a.operation_id,
                "sale_id": a.sale_id,
                "store_id": a.store_id,
                "method": a.method,
                "base": a.base,
                "rate_percent": a.rate_percent,
                "accrued": a.accrued,
                "at": a.at,
                "lot_id": a.lot_id,
            }
            for a in accruals
        ],
    )


async def save_reversals(
    session: AsyncSession,
    chain_id: UUID,
    customer_id: UUID,
    reversals: Sequence[ReversalRecord],
    at: datetime,
) -> None:
    if not reversals:
        return
    await session.execute(
        sa.insert(payment_reversals),
        [
            {
                "operation_id": r.operation_id,
                "payment_id": r.payment_id,
                "chain_id": chain_id,
                "customer_id": customer_id,
                "base": r.base,
                "amount": r.amount,
                "at": at,
            }
            for r in reversals
        ],
    )


async def find_cancellation(
    session: AsyncSession, chain_id: UUID, payment_id: UUID
) -> StoredCancellation | None:
    row = (
        await session.execute(
            sa.select(payment_cancellations).where(
                payment_cancellations.c.chain_id == chain_id,
                payment_cancellations.c.payment_id == payment_id,
            )
        )
    ).first()
    if row is None:
        return None
    return StoredCancellation(
        row.payment_id, row.chain_id, row.customer_id, row.cancelled, row.cancelled_at
    )


async def save_cancellation(
    session: AsyncSession,
    *,
    payment_id: UUID,
    chain_id: UUID,
    customer_id: UUID,
    cancelled: Decimal,
    cancelled_at: datetime,
) -> None:
    await session.execute(
        sa.insert(payment_cancellations).values(
            payment_id=payment_id,
            chain_id=chain_id,
            customer_id=customer_id,
            cancelled=cancelled,
            cancelled_at=cancelled_at,
        )
    )


# --------------------------------------------------------------------------- operations


async def find_operation(
    session: AsyncSession, chain_id: UUID, operation_id: UUID
) -> StoredOperation | None:
    row = (
        await session.execute(
            sa.select(bonus_operations).where(
                bonus_operations.c.chain_id == chain_id,
                bonus_operations.c.operation_id == operation_id,
            )
        )
    ).first()
    if row is None:
        return None
    return StoredOperation(
        row.operation_id,
        row.chain_id,
        row.customer_id,
        row.outcome,
        row.answer_type,
        dict(row.answer),
    )


async def save_operation(
    session: AsyncSession,
    *,
    operation_id: UUID,
    chain_id: UUID,
    customer_id: UUID,
    operation_kind: str,
    outcome: str,
    answer_type: str,
    answer: dict[str, Any],
) -> None:
    await session.execute(
        sa.insert(bonus_operations).values(
            operation_id=operation_id,
            chain_id=chain_id,
            customer_id=customer_id,
            operation_kind=operation_kind,
            outcome=outcome,
            answer_type=answer_type,
            answer=answer,
        )
    )


async def void_operation(
    session: AsyncSession,
    *,
    operation_id: UUID,
    chain_id: UUID,
    customer_id: UUID,
    operation_kind: str,
    answer_type: str,
    answer: dict[str, Any],
) -> None:
    """Mark the operation voided (inserted when loyalty never saw it): a later copy of its
    command gets `answer`, and its rows count in no history."""
    stmt = pg_insert(bonus_operations).values(
        operation_id=operation_id,
        chain_id=chain_id,
        customer_id=customer_id,
        operation_kind=operation_kind,
        outcome="voided",
        answer_type=answer_type,
        answer=answer,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["chain_id", "operation_id"],
            set_={"outcome": "voided", "answer_type": answer_type, "answer": answer},
        )
    )


@dataclass(frozen=True)
class VoidedMovement:
    movement_id: UUID
    kind: MovementKind
    amount: Decimal
    lot_id: UUID | None
    at: datetime

    @property
    def signed_amount(self) -> Decimal:
        adding = self.kind in (MovementKind.ACCRUED, MovementKind.RESTORED)
        return self.amount if adding else -self.amount


async def movements_to_void(
    session: AsyncSession, chain_id: UUID, customer_id: UUID, operation_id: UUID
) -> list[VoidedMovement]:
    """The published movements an operation caused: its own, and what happened since to what
    it accrued (the expiry of its lots, the cancellation of its payments' accruals)."""
    c = bonus_movements.c
    own = (
        await session.execute(
            sa.select(c.movement_id, c.kind, c.amount, c.lot_id, c.at)
            .where(
                c.chain_id == chain_id,
                c.customer_id == customer_id,
                c.operation_id == operation_id,
                c.kind.notin_((MovementKind.VOID_TAKEN.value, MovementKind.VOID_GIVEN.value)),
            )
            .order_by(c.id)
        )
    ).all()
    lots = [
        r.lot_id
        for r in own
        if r.lot_id is not None
        and r.kind in (MovementKind.ACCRUED.value, MovementKind.RESTORED.value)
    ]
    later = []
    if lots:
        mine = {r.movement_id for r in own}
        later = [
            r
            for r in (
                await session.execute(
                    sa.select(c.movement_id, c.kind, c.amount, c.lot_id, c.at)
                    .where(
                        c.chain_id == chain_id,
                        c.customer_id == customer_id,
                        c.lot_id.in_(lots),
                        c.kind.in_((MovementKind.EXPIRED.value, MovementKind.CANCELLED.value)),
                    )
                    .order_by(c.id)
                )
            ).all()
            if r.movement_id not in mine
        ]
    return [
        VoidedMovement(r.movement_id, MovementKind(r.kind), r.amount, r.lot_id, r.at)
        for r in [*own, *later]
    ]


# --------------------------------------------------------------------------- reads


async def customers_with_expired_lots(
    session: AsyncSession, now: datetime, limit: int
) -> list[tuple[UUID, UUID, int]]:
    """(chain, customer, expiry days) of customers holding a lot older than their chain allows."""
    lots, settings = bonus_lots.c, chain_settings.c
    stmt = (
        sa.select(lots.chain_id, lots.customer_id, settings.bonus_expiry_days)
        .join(chain_settings, settings.chain_id == lots.chain_id)
        .where(
            lots.remaining > 0,
            settings.bonus_expiry_days.is_not(None),
            # whole 24-hour days, exactly as the domain counts them (no time zone involved)
            lots.at + sa.func.make_interval(0, 0, 0, 0, settings.bonus_expiry_days * 24) <= now,
        )
        .group_by(lots.chain_id, lots.customer_id, settings.bonus_expiry_days)
        .limit(limit)
    )
    return [(r.chain_id, r.customer_id, r.bonus_expiry_days) for r in await session.execute(stmt)]


async def read_bonus(
    session: AsyncSession, chain_id: UUID, customer_id: UUID
) -> tuple[Decimal, Decimal, list[Any], list[Any]]:
    """Balance, deficit, every movement and the open lots of one customer (no lock)."""
    row = (
        await session.execute(
            sa.select(customer_bonus.c.balance, customer_bonus.c.deficit).where(
                customer_bonus.c.chain_id == chain_id,
                customer_bonus.c.customer_id == customer_id,
            )
        )
    ).first()
    movements = (
        await session.execute(
            sa.select(bonus_movements)
            .where(
                bonus_movements.c.chain_id == chain_id, bonus_movements.c.customer_id == customer_id
            )
            .order_by(bonus_movements.c.id)
        )
    ).all()
    lots = (
        await session.execute(
            sa.select(bonus_lots)
            .where(
                bonus_lots.c.chain_id == chain_id,
                bonus_lots.c.customer_id == customer_id,
                bonus_lots.c.remaining > 0,
            )
            .order_by(bonus_lots.c.at, bonus_lots.c.seq)
        )
    ).all()
    if row is None:
        return ZERO, ZERO, list(movements), list(lots)
    return row.balance, row.deficit, list(movements), list(lots)


def movement_from_row(row: Any, minor_units: int) -> Movement:
    return Movement(
        movement_id=row.movement_id,
        kind=MovementKind(row.kind),
        amount=quantize_money(row.amount, minor_units),
        at=row.at,
        balance_after=quantize_money(row.balance_after, minor_units),
        operation_id=row.operation_id,
        payment_id=row.payment_id,
        sale_id=row.sale_id,
        store_id=row.store_id,
        lot_id=row.lot_id,
    )


async def bonus_liability(session: AsyncSession) -> tuple[set[UUID], dict[UUID, Decimal]]:
    """Every chain loyalty knows, and the bonus its customers hold per chain (chains whose
    customers hold none are absent from the sums)."""
    chains = set((await session.execute(sa.select(chain_settings.c.chain_id))).scalars())
    rows = (
        await session.execute(
            sa.select(customer_bonus.c.chain_id, sa.func.sum(customer_bonus.c.balance)).group_by(
                customer_bonus.c.chain_id
            )
        )
    ).all()
    return chains, {r[0]: r[1] for r in rows}
