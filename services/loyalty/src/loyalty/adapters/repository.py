"""Loads a customer's bonus account under its row lock and writes back what the domain did.

Every function works in the caller's transaction (a consumer batch, or the expiry
job's transaction) and never commits.

The statements of the commands (``ApplyBonuses``, its refusal or void, a payment's
cancellation) and of the expiry job's customers are plain SQL sent through asyncpg on the
session's connection (`servicekit.sql`: no SQLAlchemy statement building per call): rows are
`asyncpg.Record`s, ``jsonb`` goes in as JSON text and comes back decoded, errors are asyncpg's
own. What only the expiry job's search and the internal HTTP API read stays SQLAlchemy Core.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.money import quantize_money
from loyalty.adapters.tables import bonus_lots, bonus_movements, chain_settings, customer_bonus
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
from servicekit import sql
from servicekit.db import column_arrays
from servicekit.outbox import carrying_buffered
from servicekit.sql import Db

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

_CHAIN_SETTINGS = (
    "SELECT chain_id, bonus_expiry_days, minor_units, changed_at FROM chain_settings"
    " WHERE chain_id = $1"
)
_INSERT_CHAIN_SETTINGS = (
    "INSERT INTO chain_settings (chain_id, bonus_expiry_days, bonus_rate_percent, minor_units,"
    " timezone, changed_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain_id)"
)
#: a command's snapshot never overrides what is known
_SAVE_SNAPSHOT = _INSERT_CHAIN_SETTINGS + " DO NOTHING"
#: master data: a newer change wins over an older one and over a snapshot (changed_at null)
_SAVE_CHANGE = (
    _INSERT_CHAIN_SETTINGS + " DO UPDATE SET bonus_expiry_days = excluded.bonus_expiry_days,"
    " bonus_rate_percent = excluded.bonus_rate_percent, minor_units = excluded.minor_units,"
    " timezone = excluded.timezone, changed_at = excluded.changed_at"
    " WHERE chain_settings.changed_at IS NULL OR chain_settings.changed_at <= excluded.changed_at"
)


async def get_chain_settings(db: Db, chain_id: UUID) -> ChainSettings | None:
    row = await sql.fetchrow(db, _CHAIN_SETTINGS, chain_id)
    if row is None:
        return None
    return ChainSettings(
        row["chain_id"], row["bonus_expiry_days"], row["minor_units"], row["changed_at"]
    )


async def save_chain_settings(
    db: Db,
    *,
    chain_id: UUID,
    bonus_expiry_days: int | None,
    bonus_rate_percent: Decimal,
    minor_units: int,
    timezone: str | None,
    changed_at: datetime | None,
) -> None:
    """Master data wins over a command's snapshot, and a newer change over an older one."""
    await sql.execute(
        db,
        _SAVE_SNAPSHOT if changed_at is None else _SAVE_CHANGE,
        chain_id,
        bonus_expiry_days,
        bonus_rate_percent,
        minor_units,
        timezone,
        changed_at,
    )


# --------------------------------------------------------------------------- the account

_LOCK_CUSTOMER = (
    "SELECT balance, deficit FROM customer_bonus WHERE chain_id = $1 AND customer_id = $2"
    " FOR UPDATE"
)
_LOCK_CUSTOMER_SKIP_LOCKED = _LOCK_CUSTOMER + " SKIP LOCKED"
_CREATE_CUSTOMER = (
    "INSERT INTO customer_bonus (chain_id, customer_id) VALUES ($1, $2)"
    " ON CONFLICT (chain_id, customer_id) DO NOTHING"
)


async def lock_customer(
    db: Db, chain_id: UUID, customer_id: UUID, *, skip_locked: bool = False
) -> tuple[Decimal, Decimal] | None:
    """Lock the customer's bonus row (created on first use); returns (balance, deficit).

    Every change of a customer's bonuses holds this lock until its transaction ends, so two
    spends of the same last bonuses are serialised even across instances. With
    ``skip_locked`` returns None instead of waiting when someone else holds it.

    One statement when the row exists (a customer's every operation after the first); three
    on first sight: two first sights at once both insert, one waits for the other's row and
    inserts nothing, then both lock it in turn.
    """
    lock = _LOCK_CUSTOMER_SKIP_LOCKED if skip_locked else _LOCK_CUSTOMER
    key = (chain_id, customer_id)
    row = await sql.lock_row(db, lock, key, _CREATE_CUSTOMER, key)
    if row is None:
        return None
    return row["balance"], row["deficit"]


_OPEN_LOTS = (
    "SELECT lot_id, at, amount, remaining, store_id, payment_id, sale_id FROM bonus_lots"
    " WHERE chain_id = $1 AND customer_id = $2 AND remaining > 0 ORDER BY at, seq"
)


async def _open_lots(db: Db, chain_id: UUID, customer_id: UUID) -> list[asyncpg.Record]:
    """The customer's lots with something left, oldest first (the order they are spent in)."""
    return await sql.fetch(db, _OPEN_LOTS, chain_id, customer_id)


def _lots(rows: Iterable[Sequence[Any]], minor_units: int) -> list[Lot]:
    """The lots of rows of `_OPEN_LOTS`' columns, in its order (rows, or records of an
    array)."""
    return [
        Lot(
            lot_id=lot_id,
            at=at,
            amount=quantize_money(amount, minor_units),
            remaining=quantize_money(remaining, minor_units),
            store_id=store_id,
            payment_id=payment_id,
            sale_id=sale_id,
        )
        for lot_id, at, amount, remaining, store_id, payment_id, sale_id in rows
    ]


def _account(
    customer_id: UUID, deficit: Decimal, lots: Iterable[Sequence[Any]], minor_units: int
) -> BonusAccount:
    return BonusAccount(
        customer_id=customer_id,
        lots=_lots(lots, minor_units),
        deficit=quantize_money(deficit, minor_units),
    )


async def load_account(
    db: Db,
    chain_id: UUID,
    customer_id: UUID,
    *,
    minor_units: int,
    skip_locked: bool = False,
) -> BonusAccount | None:
    """The customer's account with its open lots, under the customer's row lock."""
    locked = await lock_customer(db, chain_id, customer_id, skip_locked=skip_locked)
    if locked is None:
        return None
    _, deficit = locked
    rows = await _open_lots(db, chain_id, customer_id)
    return _account(customer_id, deficit, rows, minor_units)


#: `_LOCK_CUSTOMER` with what the chain's settings say of expiry, in one statement (no row on
#: the customer's first sight). The settings are read as of the statement's start, as a read
#: of their own before the lock would; they need no lock.
_LOCK_CUSTOMER_WITH_EXPIRY = (
    "SELECT c.deficit, s.chain_id IS NOT NULL AS chain_known, s.bonus_expiry_days"
    " FROM customer_bonus AS c LEFT JOIN chain_settings AS s ON s.chain_id = c.chain_id"
    " WHERE c.chain_id = $1 AND c.customer_id = $2 FOR UPDATE OF c"
)

#: Read under the customer's lock, in one statement: the operation if it was answered before,
#: which of its payments ($4) accrued already (in any operation: a payment accrues once) and
#: the customer's open lots as `_OPEN_LOTS` reads them (records of an array, oldest first).
_OPERATION_AND_LOTS = (
    "SELECT o.operation_id, o.chain_id, o.customer_id, o.outcome, o.answer_type, o.answer,"
    " ARRAY(SELECT a.payment_id FROM payment_accruals AS a"
    " WHERE a.chain_id = $1::uuid AND a.payment_id = ANY($4::uuid[])) AS accrued,"
    " ARRAY(SELECT ROW(l.lot_id, l.at, l.amount, l.remaining, l.store_id, l.payment_id,"
    " l.sale_id) FROM bonus_lots AS l WHERE l.chain_id = $1::uuid AND l.customer_id = $2::uuid"
    " AND l.remaining > 0 ORDER BY l.at, l.seq) AS lots"
    " FROM (SELECT 1) AS one LEFT JOIN bonus_operations AS o"
    " ON o.chain_id = $1::uuid AND o.operation_id = $3::uuid"
)


@dataclass(frozen=True)
class ApplyState:
    """What `ApplyBonuses` decides from, read under the customer's lock."""

    #: the chain's expiry as loyalty knows it; `chain_known` false: no settings stored yet
    chain_known: bool
    bonus_expiry_days: int | None
    account: BonusAccount
    #: the operation as answered before (None: new)
    stored: StoredOperation | None
    #: which of the operation's payments accrued already, in any operation
    already_accrued: list[UUID]


async def load_for_apply(
    db: Db,
    chain_id: UUID,
    customer_id: UUID,
    operation_id: UUID,
    payment_ids: Sequence[UUID],
    *,
    minor_units: int,
) -> ApplyState:
    """The customer locked, then read: two statements for a customer seen before (the lock
    with the chain's settings; the operation, its payments' accruals and the open lots). On
    first sight the lock finds no row: `lock_customer` creates and locks it (three more) and
    the settings are read apart (one more).

    The lots are read by the statement after the lock, never by the locking one: a statement
    reads other tables as of its start, before the lock it may have waited for, so it would
    miss what the transaction holding the lock wrote."""
    row = await sql.fetchrow(db, _LOCK_CUSTOMER_WITH_EXPIRY, chain_id, customer_id)
    if row is not None:
        deficit, known, expiry = row["deficit"], row["chain_known"], row["bonus_expiry_days"]
    else:
        locked = await lock_customer(db, chain_id, customer_id)
        assert locked is not None  # created and locked: it waits, never skips
        deficit = locked[1]
        chain = await get_chain_settings(db, chain_id)
        known, expiry = chain is not None, chain.bonus_expiry_days if chain else None
    found = await sql.fetchrow(
        db, _OPERATION_AND_LOTS, chain_id, customer_id, operation_id, list(payment_ids)
    )
    assert found is not None  # the left join of one row: always one row
    return ApplyState(
        chain_known=known,
        bonus_expiry_days=expiry,
        account=_account(customer_id, deficit, found["lots"], minor_units),
        stored=_stored_operation(found),
        already_accrued=list(found["accrued"]),
    )


@dataclass(frozen=True)
class OperationWrites:
    """What an applied (or refused) credit operation writes besides the account: its payments'
    accruals and reversals and the operation's row with the answer it got."""

    operation_id: UUID
    operation_kind: str
    outcome: str
    answer_type: str
    #: the answer as JSON text (`model_dump_json`: serialised once, straight to the jsonb)
    answer: str
    accruals: Sequence[PaymentAccrual] = ()
    reversals: Sequence[ReversalRecord] = ()
    reversals_at: datetime | None = None


async def save_account(
    db: Db,
    chain_id: UUID,
    account: BonusAccount,
    operation: OperationWrites | None = None,
) -> None:
    """Write the new movements and lots, the changed lots and the balance (save an account
    once) and, for a credit operation, what `operation` names: one statement, which also
    writes the events emitted before it (`outbox.carrying_buffered`)."""
    params = {
        "chain_id": chain_id,
        "customer_id": account.customer_id,
        "balance": account.balance,
        "deficit": account.deficit,
        **_movement_params(account.movements),
        **_lot_params(account),
        **_operation_params(operation),
    }
    statement, args = carrying_buffered(db, _SAVE, [params[name] for name in _SAVE_PARAMS])
    await sql.execute(db, statement, *args)


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


_OPERATION_FIELDS = ("operation_id", "operation_kind", "outcome", "answer_type")


def _operation_params(op: OperationWrites | None) -> dict[str, Any]:
    return {
        **{name: getattr(op, name, None) for name in _OPERATION_FIELDS},
        "answer": op.answer if op is not None else None,
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


def _json(value: dict[str, Any]) -> str:
    """A ``jsonb`` parameter: JSON text, as SQLAlchemy's JSONB type wrote it (`json.dumps`; the
    answers are JSON-ready, `model_dump(mode="json")`)."""
    return json.dumps(value)


def _numbered(text: str) -> tuple[str, tuple[str, ...]]:
    """`text` with each `:name` replaced by `$n` (one number per name, in order of first
    use), and the names in their numbers' order: the statement's parameters by name."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match[1], len(numbers) + 1)}"

    return re.sub(r"(?<![:\w]):([a-z_]+)", number, text), tuple(numbers)


def _unnest(columns: str, arrays: str) -> str:
    """`unnest(...) WITH ORDINALITY AS x(columns, n)`: `arrays` as `name type` pairs."""
    casts = ", ".join(
        f"CAST(:{name} AS {type_}[])"
        for name, type_ in (pair.split() for pair in arrays.split(","))
    )
    return f" FROM unnest({casts}) WITH ORDINALITY AS x({columns}, n)"


# Every part runs whatever the others do, as the separate statements did; rows of a table in
# their list order (the identities number movements and lots in it); the operation's row only
# when one is named. Written with `:name` parameters, sent with `$n` ones (`_numbered`).
_SAVE, _SAVE_PARAMS = _numbered(
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
    " CAST(:operation_kind AS text), CAST(:outcome AS text), CAST(:answer_type AS text),"
    " CAST(:answer AS jsonb)"
    " WHERE CAST(:operation_id AS uuid) IS NOT NULL)"
    " UPDATE customer_bonus SET balance = CAST(:balance AS numeric),"
    " deficit = CAST(:deficit AS numeric), updated_at = now()"
    " WHERE chain_id = CAST(:chain_id AS uuid) AND customer_id = CAST(:customer_id AS uuid)"
)


# --------------------------------------------------------------------------- payments and sales


def _not_voided(alias: str) -> str:
    """The row's operation was not voided (a voided one counts in no history)."""
    return (
        " AND NOT EXISTS (SELECT 1 FROM bonus_operations AS o"
        f" WHERE o.chain_id = {alias}.chain_id AND o.operation_id = {alias}.operation_id"
        " AND o.outcome = 'voided')"
    )


_ACCRUALS = (
    "SELECT a.payment_id, a.operation_id, a.sale_id, a.store_id, a.method, a.base,"
    " a.rate_percent, a.accrued, a.at, a.lot_id FROM payment_accruals AS a"
    " WHERE a.payment_id = ANY($1::uuid[]) AND a.chain_id = $2 AND a.customer_id = $3"
    + _not_voided("a")
)
_REVERSED = (
    "SELECT r.payment_id, sum(r.amount) AS amount, sum(r.base) AS base"
    " FROM payment_reversals AS r WHERE r.chain_id = $1 AND r.payment_id = ANY($2::uuid[])"
    + _not_voided("r")
    + " GROUP BY r.payment_id"
)
_CANCELLED = (
    "SELECT payment_id, cancelled FROM payment_cancellations"
    " WHERE chain_id = $1 AND payment_id = ANY($2::uuid[])"
)
# at most one expiry per lot (unique index), so no sum is needed
_EXPIRED = (
    "SELECT lot_id, amount FROM bonus_movements WHERE lot_id = ANY($1::uuid[]) AND kind = 'expired'"
)


async def load_payment_histories(
    db: Db,
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
    accruals = await sql.fetch(db, _ACCRUALS, ids, chain_id, customer_id)
    if not accruals:
        return {}
    found = [r["payment_id"] for r in accruals]
    reversed_by = {
        r["payment_id"]: (r["amount"], r["base"])
        for r in await sql.fetch(db, _REVERSED, chain_id, found)
    }
    cancelled_by = {
        r["payment_id"]: r["cancelled"] for r in await sql.fetch(db, _CANCELLED, chain_id, found)
    }
    lot_ids = [r["lot_id"] for r in accruals if r["lot_id"] is not None]
    expired_by: dict[UUID, Decimal] = {}
    if lot_ids:
        expired_by = {r["lot_id"]: r["amount"] for r in await sql.fetch(db, _EXPIRED, lot_ids)}
    return {
        r["payment_id"]: _payment_history(
            r,
            reversed=reversed_by.get(r["payment_id"], (ZERO, ZERO)),
            cancelled=cancelled_by.get(r["payment_id"], ZERO),
            expired=expired_by.get(r["lot_id"], ZERO) if r["lot_id"] is not None else ZERO,
            minor_units=minor_units,
        )
        for r in accruals
    }


def _payment_history(
    r: asyncpg.Record,
    *,
    reversed: tuple[Decimal, Decimal],
    cancelled: Decimal,
    expired: Decimal,
    minor_units: int,
) -> PaymentHistory:
    """One payment's history: its accrual row and the sums taken back from it."""

    def m(value: Decimal) -> Decimal:
        return quantize_money(value, minor_units)

    rev_amount, rev_base = reversed
    accrual = PaymentAccrual(
        payment_id=r["payment_id"],
        operation_id=r["operation_id"],
        sale_id=r["sale_id"],
        store_id=r["store_id"],
        method=r["method"],
        base=m(r["base"]),
        rate_percent=r["rate_percent"],
        accrued=m(r["accrued"]),
        at=r["at"],
        lot_id=r["lot_id"],
    )
    return PaymentHistory(
        accrual=accrual,
        cancelled=m(cancelled),
        reversed=m(rev_amount),
        reversed_base=m(rev_base),
        expired=m(expired),
    )


_SALE_SUMS = (
    "SELECT m.kind, sum(m.amount) AS amount FROM bonus_movements AS m"
    " WHERE m.sale_id = $1 AND m.chain_id = $2 AND m.customer_id = $3"
    " AND m.kind IN ('spent', 'restored')" + _not_voided("m") + " GROUP BY m.kind"
)


async def load_sale_history(
    db: Db, chain_id: UUID, customer_id: UUID, sale_id: UUID, *, minor_units: int
) -> SaleHistory:
    rows = await sql.fetch(db, _SALE_SUMS, sale_id, chain_id, customer_id)
    sums = {r["kind"]: r["amount"] for r in rows}
    return SaleHistory(
        spent=quantize_money(sums.get("spent", ZERO), minor_units),
        restored=quantize_money(sums.get("restored", ZERO), minor_units),
    )


_CANCELLATION = (
    "SELECT payment_id, chain_id, customer_id, cancelled, cancelled_at FROM payment_cancellations"
    " WHERE chain_id = $1 AND payment_id = $2"
)
_SAVE_CANCELLATION = (
    "INSERT INTO payment_cancellations (payment_id, chain_id, customer_id, cancelled,"
    " cancelled_at) VALUES ($1, $2, $3, $4, $5)"
)


async def find_cancellation(db: Db, chain_id: UUID, payment_id: UUID) -> StoredCancellation | None:
    row = await sql.fetchrow(db, _CANCELLATION, chain_id, payment_id)
    if row is None:
        return None
    return StoredCancellation(
        row["payment_id"],
        row["chain_id"],
        row["customer_id"],
        row["cancelled"],
        row["cancelled_at"],
    )


async def save_cancellation(
    db: Db,
    *,
    payment_id: UUID,
    chain_id: UUID,
    customer_id: UUID,
    cancelled: Decimal,
    cancelled_at: datetime,
) -> None:
    await sql.execute(
        db, _SAVE_CANCELLATION, payment_id, chain_id, customer_id, cancelled, cancelled_at
    )


# --------------------------------------------------------------------------- operations


_FIND_OPERATION = (
    "SELECT operation_id, chain_id, customer_id, outcome, answer_type, answer"
    " FROM bonus_operations WHERE chain_id = $1 AND operation_id = $2"
)
#: inserted voided, or marked so: the answer a later copy of the command gets
_VOID_OPERATION = (
    "INSERT INTO bonus_operations (operation_id, chain_id, customer_id, operation_kind, outcome,"
    " answer_type, answer) VALUES ($1, $2, $3, $4, 'voided', $5, $6::jsonb)"
    " ON CONFLICT (chain_id, operation_id) DO UPDATE SET outcome = 'voided',"
    " answer_type = excluded.answer_type, answer = excluded.answer"
)


async def find_operation(db: Db, chain_id: UUID, operation_id: UUID) -> StoredOperation | None:
    return _stored_operation(await sql.fetchrow(db, _FIND_OPERATION, chain_id, operation_id))


def _stored_operation(row: asyncpg.Record | None) -> StoredOperation | None:
    if row is None or row["operation_id"] is None:
        return None
    return StoredOperation(
        row["operation_id"],
        row["chain_id"],
        row["customer_id"],
        row["outcome"],
        row["answer_type"],
        dict(row["answer"]),
    )


async def void_operation(
    db: Db,
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
    await sql.execute(
        db,
        _VOID_OPERATION,
        operation_id,
        chain_id,
        customer_id,
        operation_kind,
        answer_type,
        _json(answer),
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


_MOVEMENTS = "SELECT movement_id, kind, amount, lot_id, at FROM bonus_movements"
#: an operation's own movements (but those of an earlier void of it)
_OWN_MOVEMENTS = (
    _MOVEMENTS + " WHERE chain_id = $1 AND customer_id = $2 AND operation_id = $3"
    " AND kind NOT IN ('void_taken', 'void_given') ORDER BY id"
)
#: what happened since to lots: their expiry, the cancellation of their payments' accruals
_LATER_MOVEMENTS = (
    _MOVEMENTS + " WHERE chain_id = $1 AND customer_id = $2 AND lot_id = ANY($3::uuid[])"
    " AND kind IN ('expired', 'cancelled') ORDER BY id"
)


async def movements_to_void(
    db: Db, chain_id: UUID, customer_id: UUID, operation_id: UUID
) -> list[VoidedMovement]:
    """The published movements an operation caused: its own, and what happened since to what
    it accrued (the expiry of its lots, the cancellation of its payments' accruals)."""
    own = await sql.fetch(db, _OWN_MOVEMENTS, chain_id, customer_id, operation_id)
    lots = [
        r["lot_id"]
        for r in own
        if r["lot_id"] is not None
        and r["kind"] in (MovementKind.ACCRUED.value, MovementKind.RESTORED.value)
    ]
    later = []
    if lots:
        mine = {r["movement_id"] for r in own}
        later = [
            r
            for r in await sql.fetch(db, _LATER_MOVEMENTS, chain_id, customer_id, lots)
            if r["movement_id"] not in mine
        ]
    return [
        VoidedMovement(r["movement_id"], MovementKind(r["kind"]), r["amount"], r["lot_id"], r["at"])
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
