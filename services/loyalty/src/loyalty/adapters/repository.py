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
from sqlalchemy.dialects.postgresql import JSONB
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
from servicekit.db import column_arrays, lock_row

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


async def _open_lots(session: AsyncSession, chain_id: UUID, customer_id: UUID) -> list[Any]:
    """The customer's lots with something left, oldest first (the order they are spent in)."""
    stmt = (
        sa.select(bonus_lots)
        .where(
            bonus_lots.c.chain_id == chain_id,
            bonus_lots.c.customer_id == customer_id,
            bonus_lots.c.remaining > 0,
        )
        .order_by(bonus_lots.c.at, bonus_lots.c.seq)
    )
    return list((await session.execute(stmt)).all())


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
    rows = await _open_lots(session, chain_id, customer_id)
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


@dataclass(frozen=True)
class OperationWrites:
    """What an applied (or refused) credit operation writes besides the account: its payments'
    accruals and reversals and the operation's row with the answer it got."""

    operation_id: UUID
    operation_kind: str
    outcome: str
    answer_type: str
    answer: dict[str, Any]
    accruals: Sequence[PaymentAccrual] = ()
    reversals: Sequence[ReversalRecord] = ()
    reversals_at: datetime | None = None


async def save_account(
    session: AsyncSession,
    chain_id: UUID,
    account: BonusAccount,
    operation: OperationWrites | None = None,
) -> None:
    """Write the new movements and lots, the changed lots and the balance (save an account
    once) and, for a credit operation, what `operation` names: one statement."""
    params = {
        "chain_id": chain_id,
        "customer_id": account.customer_id,
        "balance": account.balance,
        "deficit": account.deficit,
        **_movement_params(account.movements),
        **_lot_params(account),
        **_operation_params(operation),
    }
    await session.execute(_SAVE, params)


def _movement_params(movements: Sequence[Movement]) -> dict[str, list[Any]]:
    """An operation's movements of one kind are numbered from 0 (`seq`: written once)."""
    seqs: dict[tuple[UUID | None, str], int] = {}
    numbered = []
    for m in movements:
        key = (m.operation_id, m.kind.value)
        numbered.append(seqs.get(key, 0))
        seqs[key] = numbered[-1] + 1
    return {
        **column_arrays(
            movements,
            m_ids="movement_id",
            m_kinds=lambda m: m.kind.value,
            m_amounts="amount",
            m_ats="at",
            m_balances="balance_after",
            m_operation_ids="operation_id",
            m_payment_ids="payment_id",
            m_sale_ids="sale_id",
            m_store_ids="store_id",
            m_lot_ids="lot_id",
        ),
        "m_seqs": numbered,
    }


def _lot_params(account: BonusAccount) -> dict[str, list[Any]]:
    """New lots in spending order (the identity numbers them so), then the lots spent from."""
    new = account.new_lots
    new_ids = {lot.lot_id for lot in new}
    touched = [lot for lot in account.touched_lots.values() if lot.lot_id not in new_ids]
    return {
        **column_arrays(
            account.new_lots,
            l_ids="lot_id",
            l_ats="at",
            l_amounts="amount",
            l_remaining="remaining",
            l_store_ids="store_id",
            l_payment_ids="payment_id",
            l_sale_ids="sale_id",
        ),
        **column_arrays(touched, t_ids="lot_id", t_remaining="remaining"),
    }


_OPERATION_FIELDS = ("operation_id", "operation_kind", "outcome", "answer_type", "answer")


def _operation_params(op: OperationWrites | None) -> dict[str, Any]:
    return {
        **{name: getattr(op, name, None) for name in _OPERATION_FIELDS},
        **column_arrays(
            op.accruals if op is not None else (),
            a_payment_ids="payment_id",
            a_operation_ids="operation_id",
            a_sale_ids="sale_id",
            a_store_ids="store_id",
            a_methods="method",
            a_bases="base",
            a_rates="rate_percent",
            a_accrued="accrued",
            a_ats="at",
            a_lot_ids="lot_id",
        ),
        **column_arrays(
            op.reversals if op is not None else (),
            r_operation_ids="operation_id",
            r_payment_ids="payment_id",
            r_bases="base",
            r_amounts="amount",
        ),
        "r_at": op.reversals_at if op is not None else None,
    }


def _unnest(columns: str, arrays: str) -> str:
    """`unnest(...) WITH ORDINALITY AS x(columns, n)`: `arrays` as `name type` pairs."""
    casts = ", ".join(
        f"CAST(:{name} AS {type_}[])"
        for name, type_ in (pair.split() for pair in arrays.split(","))
    )
    return f" FROM unnest({casts}) WITH ORDINALITY AS x({columns}, n)"


# Every part runs whatever the others do, as the separate statements did; rows of a table in
# their list order (the identities number movements and lots in it); the operation's row only
# when one is named.
_SAVE = sa.text(
    "WITH movement AS ("
    " INSERT INTO bonus_movements (movement_id, chain_id, customer_id, kind, amount, at,"
    " balance_after, operation_id, seq, payment_id, sale_id, store_id, lot_id)"
    " SELECT x.id, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid), x.kind, x.amount, x.at,"
    " x.balance, x.operation_id, x.seq, x.payment_id, x.sale_id, x.store_id, x.lot_id"
    + _unnest(
        "id, kind, amount, at, balance, operation_id, seq, payment_id, sale_id, store_id, lot_id",
        "m_ids uuid, m_kinds text, m_amounts numeric, m_ats timestamptz, m_balances numeric,"
        "m_operation_ids uuid, m_seqs smallint, m_payment_ids uuid, m_sale_ids uuid,"
        "m_store_ids uuid, m_lot_ids uuid",
    )
    + " ORDER BY x.n),"
    " new_lot AS ("
    " INSERT INTO bonus_lots (lot_id, chain_id, customer_id, at, amount, remaining, store_id,"
    " payment_id, sale_id)"
    " SELECT x.id, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid), x.at, x.amount,"
    " x.remaining, x.store_id, x.payment_id, x.sale_id"
    + _unnest(
        "id, at, amount, remaining, store_id, payment_id, sale_id",
        "l_ids uuid, l_ats timestamptz, l_amounts numeric, l_remaining numeric,"
        "l_store_ids uuid, l_payment_ids uuid, l_sale_ids uuid",
    )
    + " ORDER BY x.n),"
    " spent_lot AS ("
    " UPDATE bonus_lots AS l SET remaining = x.remaining"
    + _unnest("id, remaining", "t_ids uuid, t_remaining numeric")
    + " WHERE l.lot_id = x.id),"
    " accrual AS ("
    " INSERT INTO payment_accruals (payment_id, chain_id, customer_id, operation_id, sale_id,"
    " store_id, method, base, rate_percent, accrued, at, lot_id)"
    " SELECT x.payment_id, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " x.operation_id, x.sale_id, x.store_id, x.method, x.base, x.rate, x.accrued, x.at, x.lot_id"
    + _unnest(
        "payment_id, operation_id, sale_id, store_id, method, base, rate, accrued, at, lot_id",
        "a_payment_ids uuid, a_operation_ids uuid, a_sale_ids uuid, a_store_ids uuid,"
        "a_methods text, a_bases numeric, a_rates numeric, a_accrued numeric,"
        "a_ats timestamptz, a_lot_ids uuid",
    )
    + " ORDER BY x.n),"
    " reversal AS ("
    " INSERT INTO payment_reversals (operation_id, payment_id, chain_id, customer_id, base,"
    " amount, at)"
    " SELECT x.operation_id, x.payment_id, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " x.base, x.amount, CAST(:r_at AS timestamptz)"
    + _unnest(
        "operation_id, payment_id, base, amount",
        "r_operation_ids uuid, r_payment_ids uuid, r_bases numeric, r_amounts numeric",
    )
    + " ORDER BY x.n),"
    " operation AS ("
    " INSERT INTO bonus_operations (operation_id, chain_id, customer_id, operation_kind,"
    " outcome, answer_type, answer)"
    " SELECT CAST(:operation_id AS uuid), CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " CAST(:operation_kind AS text), CAST(:outcome AS text), CAST(:answer_type AS text), :answer"
    " WHERE CAST(:operation_id AS uuid) IS NOT NULL)"
    " UPDATE customer_bonus SET balance = CAST(:balance AS numeric),"
    " deficit = CAST(:deficit AS numeric), updated_at = now()"
    " WHERE chain_id = CAST(:chain_id AS uuid) AND customer_id = CAST(:customer_id AS uuid)"
).bindparams(sa.bindparam("answer", type_=JSONB))


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


_FIND_WITH_ACCRUED = sa.text(
    "SELECT o.operation_id, o.chain_id, o.customer_id, o.outcome, o.answer_type, o.answer,"
    " ARRAY(SELECT a.payment_id FROM payment_accruals AS a"
    " WHERE a.chain_id = CAST(:chain_id AS uuid)"
    " AND a.payment_id = ANY(CAST(:payment_ids AS uuid[]))) AS accrued"
    " FROM (SELECT 1) AS one LEFT JOIN bonus_operations AS o"
    " ON o.chain_id = CAST(:chain_id AS uuid) AND o.operation_id = CAST(:operation_id AS uuid)"
).columns(
    *(bonus_operations.c[n] for n in ("operation_id", "chain_id", "customer_id", "outcome")),
    bonus_operations.c.answer_type,
    bonus_operations.c.answer,
    sa.column("accrued"),
)


async def find_operation_and_accrued(
    session: AsyncSession, chain_id: UUID, operation_id: UUID, payment_ids: Sequence[UUID]
) -> tuple[StoredOperation | None, list[UUID]]:
    """`find_operation`, and which of `payment_ids` of the chain already accrued (in any
    operation: a payment accrues once): one statement."""
    row = (
        await session.execute(
            _FIND_WITH_ACCRUED,
            {"chain_id": chain_id, "operation_id": operation_id, "payment_ids": list(payment_ids)},
        )
    ).one()
    return _stored_operation(row), list(row.accrued)


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
    return _stored_operation(row)


def _stored_operation(row: Any) -> StoredOperation | None:
    if row is None or row.operation_id is None:
        return None
    return StoredOperation(
        row.operation_id,
        row.chain_id,
        row.customer_id,
        row.outcome,
        row.answer_type,
        dict(row.answer),
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
    lots = await _open_lots(session, chain_id, customer_id)
    if row is None:
        return ZERO, ZERO, list(movements), lots
    return row.balance, row.deficit, list(movements), lots


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
