"""The gateway's tables as the service layer needs them, one query object per aggregate.

Every method works in the caller's session and transaction and never commits: the service
layer decides where a transaction starts and ends, these classes only say how a row is read,
locked or written. Rows come back as SQLAlchemy rows (attribute access by column name); the
few statements of a sale's hot path go through asyncpg instead (`servicekit.sql`, the end of
this module), and their methods say what they return.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.adapters import tables as t
from pos_gateway.adapters.outcome_listener import (
    ANSWER_COLUMNS,
    CHANNEL,
    PAYLOAD_LIMIT,
    payload_of,
)
from pos_gateway.domain.auth import KeyKind
from pos_gateway.domain.operations import OpRef
from servicekit import sql
from servicekit.outbox import note_outbox_written


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _after(columns: Sequence[Any], position: Sequence[Any]) -> Any:
    """Keyset paging: the rows after `position` in the order of `columns`."""
    return sa.tuple_(*columns) > sa.tuple_(*(sa.literal(p) for p in position))


class _Tables:
    """`db`: the caller's transaction; the till's hot statements run on it through
    `servicekit.sql`, the rest through `session` (a consumer batch's `Tx` makes one on first
    use)."""

    def __init__(self, db: sql.Db) -> None:
        self.db = db

    @property
    def session(self) -> AsyncSession:
        return sql.session_of(self.db)

    async def _first(self, query: sa.Select[Any], *, lock: bool) -> Row[Any] | None:
        """The first row of `query`; with `lock`, locked (FOR UPDATE) until the transaction ends."""
        if lock:
            query = query.with_for_update()
        row: Row[Any] | None = (await self.session.execute(query)).first()
        return row


# --------------------------------------------------------------------------- idempotency


class IdempotencyKeys(_Tables):
    """`idempotency_keys`: one row per (scope, key), locked by its first request until it
    commits, so a concurrent retry waits on the primary key."""

    async def insert(self, scope: str, key: str, request_hash: str) -> bool:
        """True when this transaction created the key's row (and holds it now)."""
        return await sql.fetchval(self.db, _CLAIM_KEY, scope, key, request_hash) is not None

    async def get(self, scope: str, key: str) -> SimpleNamespace:
        """The key's row (its columns as attributes); it must exist. One statement through
        asyncpg: a request sent again reads it (`idempotency.claim`)."""
        row = await sql.fetchrow(self.db, _KEY_ROW, scope, key)
        if row is None:
            raise LookupError(f"no idempotency key {key!r} in scope {scope!r}")
        return SimpleNamespace(**dict(row.items()))

    async def update(self, scope: str, key: str, **values: Any) -> None:
        k = t.idempotency_keys.c
        await self.session.execute(
            sa.update(t.idempotency_keys).where(k.scope == scope, k.key == key).values(**values)
        )

    async def delete_created_before(self, moment: datetime) -> int:
        result = await self.session.execute(
            sa.delete(t.idempotency_keys).where(t.idempotency_keys.c.created_at < moment)
        )
        return _rowcount(result)


# --------------------------------------------------------------------------- master data


class MasterData(_Tables):
    """Chains, stores, terminals, customers and cards."""

    # chains

    async def chain(self, chain_id: uuid.UUID, *, lock: bool = False) -> Row[Any] | None:
        return await self._first(
            sa.select(t.chains).where(t.chains.c.chain_id == chain_id), lock=lock
        )

    async def insert_chain(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.chains).values(**values))

    async def update_chain(self, chain_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            sa.update(t.chains).where(t.chains.c.chain_id == chain_id).values(**values)
        )

    async def chains_page(
        self, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[Any]:
        """Chains oldest first, `limit` of them after `after` (created_at, chain_id)."""
        c = t.chains.c
        query = sa.select(c.chain_id, c.name, c.currency, c.timezone, c.created_at)
        if after is not None:
            query = query.where(_after((c.created_at, c.chain_id), after))
        return (
            await self.session.execute(query.order_by(c.created_at, c.chain_id).limit(limit))
        ).all()

    # stores and terminals

    async def store_code_taken(self, chain_id: uuid.UUID, code: str) -> bool:
        taken = await self.session.scalar(
            sa.select(sa.func.count()).where(
                t.stores.c.chain_id == chain_id, t.stores.c.code == code
            )
        )
        return bool(taken)

    async def store_exists(self, chain_id: uuid.UUID, store_id: uuid.UUID) -> bool:
        found = (
            await self.session.execute(
                sa.select(t.stores.c.store_id).where(
                    t.stores.c.chain_id == chain_id, t.stores.c.store_id == store_id
                )
            )
        ).first()
        return found is not None

    async def insert_store(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.stores).values(**values))

    async def stores_page(
        self, chain_id: uuid.UUID, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> Sequence[Any]:
        """The chain's stores by code, `limit` of them after `after` (code, store_id)."""
        st = t.stores.c
        query = sa.select(st.store_id, st.code, st.name).where(st.chain_id == chain_id)
        if after is not None:
            query = query.where(_after((st.code, st.store_id), after))
        return (await self.session.execute(query.order_by(st.code, st.store_id).limit(limit))).all()

    async def terminals_of(
        self, chain_id: uuid.UUID, store_ids: Iterable[uuid.UUID]
    ) -> Sequence[Any]:
        """Every terminal the stores ever had, oldest first, with its `revoked_at`: null
        while one of its keys is active, else when the last one was revoked."""
        k = t.api_keys.c
        revoked = (
            sa.select(
                k.terminal_id,
                sa.case(
                    (sa.func.count().filter(k.revoked_at.is_(None)) > 0, sa.null()),
                    else_=sa.func.max(k.revoked_at),
                ).label("revoked_at"),
            )
            .where(k.kind == KeyKind.TERMINAL.value)
            .group_by(k.terminal_id)
            .subquery()
        )
        tm = t.terminals.c
        return (
            await self.session.execute(
                sa.select(tm.store_id, tm.terminal_id, tm.name, tm.created_at, revoked.c.revoked_at)
                .outerjoin(revoked, revoked.c.terminal_id == tm.terminal_id)
                .where(tm.chain_id == chain_id, tm.store_id.in_(list(store_ids)))
                .order_by(tm.created_at, tm.terminal_id)
            )
        ).all()

    async def insert_terminal(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.terminals).values(**values))

    async def lock_terminal(self, chain_id: uuid.UUID, terminal_id: uuid.UUID) -> Row[Any] | None:
        tm = t.terminals.c
        query = sa.select(t.terminals).where(tm.chain_id == chain_id, tm.terminal_id == terminal_id)
        return await self._first(query, lock=True)

    # customers

    async def customer(
        self, chain_id: uuid.UUID, customer_id: uuid.UUID, *, lock: bool = False
    ) -> Row[Any] | None:
        c = t.customers.c
        query = sa.select(t.customers).where(c.chain_id == chain_id, c.customer_id == customer_id)
        return await self._first(query, lock=lock)

    async def insert_customer(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.customers).values(**values))

    async def update_customer(self, customer_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            sa.update(t.customers).where(t.customers.c.customer_id == customer_id).values(**values)
        )

    async def clear_customer_card(
        self, customer_id: uuid.UUID, card_number: str, now: datetime
    ) -> bool:
        """Take the card off its customer; False when the customer has another card now."""
        cleared = await self.session.execute(
            sa.update(t.customers)
            .where(
                t.customers.c.customer_id == customer_id, t.customers.c.card_number == card_number
            )
            .values(card_number=None, updated_at=now)
        )
        return bool(_rowcount(cleared))

    async def customers_page(
        self,
        chain_id: uuid.UUID,
        *,
        vip: bool | None,
        like: str | None,
        after: tuple[str, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Row[Any]]:
        """The chain's customers by name; `like`: a LIKE pattern (escaped with a backslash)
        their name, phone or card number matches, case-insensitively."""
        c = t.customers.c
        query = sa.select(t.customers).where(c.chain_id == chain_id)
        if vip is not None:
            query = query.where(c.vip.is_(vip))
        if like:
            query = query.where(
                sa.or_(
                    c.name.ilike(like, escape="\\"),
                    c.phone.ilike(like, escape="\\"),
                    c.card_number.ilike(like, escape="\\"),
                )
            )
        if after is not None:
            query = query.where(_after((c.name, c.customer_id), after))
        return (
            await self.session.execute(query.order_by(c.name, c.customer_id).limit(limit))
        ).all()

    # cards

    async def card(self, chain_id: uuid.UUID, card_number: str) -> Row[Any] | None:
        if "\x00" in card_number:
            # no card has it (PostgreSQL text cannot hold it, the query would fail): not found
            return None
        return (
            await self.session.execute(
                sa.select(t.cards).where(
                    t.cards.c.chain_id == chain_id, t.cards.c.card_number == card_number
                )
            )
        ).first()

    async def insert_card(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.cards).values(**values))

    async def block_card(
        self, chain_id: uuid.UUID, card_number: str, now: datetime, *, if_active: bool = False
    ) -> None:
        """`if_active`: leave a card blocked earlier as it is (its `blocked_at` stays)."""
        query = sa.update(t.cards).where(
            t.cards.c.chain_id == chain_id, t.cards.c.card_number == card_number
        )
        if if_active:
            query = query.where(t.cards.c.blocked.is_(False))
        await self.session.execute(query.values(blocked=True, blocked_at=now))


# --------------------------------------------------------------------------- API keys


class ApiKeys(_Tables):
    """`api_keys`, stored only as hashes; a key is refused once `revoked_at` is set."""

    async def active(self, key_hash: str) -> asyncpg.Record | None:
        """The key's row while it is not revoked (every request's authentication), by column
        name (`row["kind"]`)."""
        return await sql.fetchrow(self.db, _ACTIVE_KEY, key_hash)

    async def insert(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.api_keys).values(key_id=uuid.uuid4(), **values))

    async def revoke_admin_keys(self, chain_id: uuid.UUID, now: datetime) -> None:
        k = t.api_keys.c
        await self.session.execute(
            sa.update(t.api_keys)
            .where(k.chain_id == chain_id, k.kind == KeyKind.ADMIN.value, k.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_terminal_keys(self, terminal_id: uuid.UUID, now: datetime) -> None:
        k = t.api_keys.c
        await self.session.execute(
            sa.update(t.api_keys)
            .where(k.terminal_id == terminal_id, k.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def active_terminal_keys(self, terminal_id: uuid.UUID) -> int:
        k = t.api_keys.c
        return int(
            await self.session.scalar(
                sa.select(sa.func.count()).where(
                    k.terminal_id == terminal_id, k.revoked_at.is_(None)
                )
            )
            or 0
        )

    async def terminal_revoked_at(self, terminal_id: uuid.UUID) -> datetime | None:
        revoked_at: datetime | None = await self.session.scalar(
            sa.select(sa.func.max(t.api_keys.c.revoked_at)).where(
                t.api_keys.c.terminal_id == terminal_id
            )
        )
        return revoked_at


# --------------------------------------------------------------------------- staff


class Staff(_Tables):
    """Staff users, their tokens (hashed) and the failed sign-ins counted per email."""

    async def password_hash(self, user_id: uuid.UUID) -> str | None:
        stored: str | None = await self.session.scalar(
            sa.select(t.users.c.password_hash).where(t.users.c.user_id == user_id)
        )
        return stored

    async def live_user_id(self, email_key: str) -> uuid.UUID | None:
        found: uuid.UUID | None = await self.session.scalar(
            sa.select(t.users.c.user_id).where(
                t.users.c.email_key == email_key, t.users.c.deleted_at.is_(None)
            )
        )
        return found

    async def live_user(self, email_key: str) -> Row[Any] | None:
        return (
            await self.session.execute(
                sa.select(t.users).where(
                    t.users.c.email_key == email_key, t.users.c.deleted_at.is_(None)
                )
            )
        ).first()

    async def lock_live_user(self, user_id: uuid.UUID) -> bool:
        """Lock the user's row; False when it was deleted."""
        live = await self.session.scalar(
            sa.select(t.users.c.user_id)
            .where(t.users.c.user_id == user_id, t.users.c.deleted_at.is_(None))
            .with_for_update()
        )
        return live is not None

    async def insert_user(self, **values: Any) -> Row[Any]:
        """Raises `IntegrityError` for an email a live user has (created concurrently)."""
        row: Row[Any] = (
            await self.session.execute(sa.insert(t.users).values(**values).returning(t.users))
        ).one()
        return row

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self.session.execute(
            sa.update(t.users)
            .where(t.users.c.user_id == user_id)
            .values(password_hash=password_hash)
        )

    async def users_page(
        self, chain_id: uuid.UUID, after: tuple[str, uuid.UUID] | None, limit: int
    ) -> Sequence[Row[Any]]:
        """The chain's live users by email, `limit` of them after `after` (email key, id)."""
        u = t.users.c
        query = sa.select(t.users).where(u.chain_id == chain_id, u.deleted_at.is_(None))
        if after is not None:
            query = query.where(_after((u.email_key, u.user_id), after))
        return (
            await self.session.execute(query.order_by(u.email_key, u.user_id).limit(limit))
        ).all()

    async def mark_deleted(
        self, chain_id: uuid.UUID, user_id: uuid.UUID, now: datetime
    ) -> Row[Any] | None:
        """The user as it was, now deleted; None when the chain has no such live user."""
        u = t.users.c
        row: Row[Any] | None = (
            await self.session.execute(
                sa.update(t.users)
                .where(u.user_id == user_id, u.chain_id == chain_id, u.deleted_at.is_(None))
                .values(deleted_at=now)
                .returning(t.users)
            )
        ).first()
        return row

    # tokens

    async def insert_token(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.user_sessions).values(**values))

    async def delete_tokens_of(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.delete(t.user_sessions).where(t.user_sessions.c.user_id == user_id)
        )

    async def delete_token(self, token_hash: str) -> None:
        await self.session.execute(
            sa.delete(t.user_sessions).where(t.user_sessions.c.token_hash == token_hash)
        )

    async def token_user(self, token_hash: str) -> Row[Any] | None:
        """The token's user with the token's `expires_at` (expired or deleted alike)."""
        return (
            await self.session.execute(
                sa.select(t.users, t.user_sessions.c.expires_at)
                .join(t.user_sessions, t.user_sessions.c.user_id == t.users.c.user_id)
                .where(t.user_sessions.c.token_hash == token_hash)
            )
        ).first()

    async def live_token_user(self, token_hash: str) -> Any:
        """The live user of an unexpired token: user_id, chain_id, name, role."""
        s, u = t.user_sessions.c, t.users.c
        return (
            await self.session.execute(
                sa.select(u.user_id, u.chain_id, u.name, u.role)
                .select_from(t.user_sessions.join(t.users, u.user_id == s.user_id))
                .where(
                    s.token_hash == token_hash,
                    s.expires_at > sa.func.now(),
                    u.deleted_at.is_(None),
                )
            )
        ).first()

    # failed sign-ins

    async def locked_until(self, email_key: str) -> datetime | None:
        until: datetime | None = await self.session.scalar(
            sa.select(t.login_failures.c.locked_until).where(
                t.login_failures.c.email_key == email_key
            )
        )
        return until

    async def count_failure(self, email_key: str, now: datetime, forget_before: datetime) -> int:
        """The email's failures in a row after this one (the count restarts after a failure
        older than `forget_before`); one statement, so concurrent failures on several
        instances are all counted."""
        f = t.login_failures
        failures = await self.session.scalar(
            pg_insert(f)
            .values(email_key=email_key, failures=1, last_failed_at=now)
            .on_conflict_do_update(
                index_elements=[f.c.email_key],
                set_={
                    "failures": sa.case(
                        (f.c.last_failed_at < forget_before, 1), else_=f.c.failures + 1
                    ),
                    "last_failed_at": now,
                },
            )
            .returning(f.c.failures)
        )
        return int(failures or 0)

    async def lock_email(self, email_key: str, until: datetime) -> None:
        f = t.login_failures
        await self.session.execute(
            sa.update(f).where(f.c.email_key == email_key).values(locked_until=until)
        )

    async def forget_failures(self, email_key: str) -> None:
        await self.session.execute(
            sa.delete(t.login_failures).where(t.login_failures.c.email_key == email_key)
        )

    async def purge(self, now: datetime, failures_before: datetime) -> int:
        """Delete expired tokens and failures last seen before `failures_before` that lock
        nothing any more."""
        expired = await self.session.execute(
            sa.delete(t.user_sessions).where(t.user_sessions.c.expires_at < now)
        )
        f = t.login_failures.c
        stale = await self.session.execute(
            sa.delete(t.login_failures).where(
                f.last_failed_at < failures_before,
                sa.or_(f.locked_until.is_(None), f.locked_until < now),
            )
        )
        return _rowcount(expired) + _rowcount(stale)


# --------------------------------------------------------------------------- operations


class Operations(_Tables):
    """Operation rows (the request and, later, its outcome), sale lines and payments."""

    async def read(self, ref: OpRef) -> SimpleNamespace | None:
        """The operation row (but its `request`: the command, which nothing reads back) with its
        chain's minor units, as `settle_and_notify` returns it (the columns as attributes). One
        statement through asyncpg: every read of an answer (a request sent again, a status URL
        polled, a waiting request's poll) runs it."""
        row = await sql.fetchrow(self.db, _READ_OPERATION, *_ref_args(ref))
        if row is None:
            return None
        return _operation_row(row)

    async def insert(self, ref: OpRef, *, status: str, **values: Any) -> None:
        """A pending operation, or one refused at once (then completed now)."""
        await self.session.execute(
            sa.insert(t.operations).values(
                chain_id=ref.chain_id,
                kind=ref.kind,
                operation_id=ref.operation_id,
                status=status,
                completed_at=None if status == "pending" else sa.func.now(),
                **values,
            )
        )

    async def delete(self, ref: OpRef) -> None:
        o = t.operations.c
        await self.session.execute(
            sa.delete(t.operations).where(
                o.chain_id == ref.chain_id, o.kind == ref.kind, o.operation_id == ref.operation_id
            )
        )

    async def lock_name(self, name: str) -> None:
        """A transaction-scoped advisory lock on `name` (serializes requests naming the same
        object: a POS-chosen sale id, one payment...)."""
        await self.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(name))))

    async def settle_and_notify(
        self,
        ref: OpRef,
        *,
        status: str,
        outcome: dict[str, Any] | None,
        code: str | None,
        detail: str | None,
    ) -> SimpleNamespace | None:
        """Store the outcome on a pending operation and tell every gateway instance's listener
        at this transaction's commit (`adapters.outcome_listener`): one statement. The row as
        stored (the columns `read` reads, as attributes); None when there is no pending
        operation (or it is done): nothing stored, nobody told."""
        row = await sql.fetchrow(
            self.db,
            _SETTLE_AND_NOTIFY,
            *_ref_args(ref),
            status,
            # JSON null, as the JSONB column type stores a Python None
            _jsonb(outcome),
            code,
            detail,
            CHANNEL,
            payload_of(ref.key),
        )
        if row is None:
            return None
        return _operation_row(row)

    async def record(
        self,
        ref: OpRef,
        request: TillRequest,
        outbox: dict[str, Any],
        *,
        idempotency: tuple[str, str] | None,
    ) -> bool:
        """A pending operation with its sale lines and payments, its command's outbox row and
        the Idempotency-Key's link to it: one statement. False when the operation exists
        already: then nothing at all was written (the caller deals with the existing one)."""
        lines, payments = request.lines, request.payments
        scope, key = idempotency if idempotency is not None else (None, None)
        inserted = await sql.fetchval(
            self.db,
            _RECORD,
            *_ref_args(ref),
            request.store_id,
            request.terminal_id,
            request.customer_id,
            request.request_hash,
            _jsonb(request.request),
            *([ln[name] for ln in lines] for name in _LINE_COLUMNS),
            [p["payment_id"] for p in payments],
            [p["method"] for p in payments],
            *(outbox[name] for name in _OUTBOX_COLUMNS),
            _jsonb(outbox["headers"]),
            scope,
            key,
        )
        if inserted:
            note_outbox_written(self.db)
        return bool(inserted)

    # sale lines and payments

    async def sale_lines(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> Sequence[Row[Any]]:
        """The sale's lines by line number."""
        return (
            await self.session.execute(
                sa.select(t.sale_lines)
                .where(t.sale_lines.c.chain_id == chain_id, t.sale_lines.c.sale_id == sale_id)
                .order_by(t.sale_lines.c.line_no)
            )
        ).all()

    async def add_returned(
        self, chain_id: uuid.UUID, sale_id: uuid.UUID, line_no: int, quantity: Any
    ) -> None:
        sl = t.sale_lines.c
        await self.session.execute(
            sa.update(t.sale_lines)
            .where(sl.chain_id == chain_id, sl.sale_id == sale_id, sl.line_no == line_no)
            .values(returned_quantity=sl.returned_quantity + quantity)
        )

    async def payment(self, chain_id: uuid.UUID, payment_id: uuid.UUID) -> Row[Any] | None:
        return (
            await self.session.execute(
                sa.select(t.payments).where(
                    t.payments.c.chain_id == chain_id, t.payments.c.payment_id == payment_id
                )
            )
        ).first()


# --------------------------------------------------------------------------- the till's hot path
#
# A till request's reads and writes as one statement each: a sale cost eleven statements
# before, each built and executed by SQLAlchemy, and that per-statement work was most of the
# gateway's CPU (docs/benchmarks.md). The statements of a sale (the key's authentication, the
# Idempotency-Key's claim, the till lookup, the writes) and the consumer's settling one go
# through asyncpg directly (`servicekit.sql`: SQL with `$n` parameters, prepared once per
# connection, in the session's transaction); their rows are `asyncpg.Record`s.

_ACTIVE_KEY = (
    "SELECT " + ", ".join(c.name for c in t.api_keys.columns) + " FROM api_keys"
    " WHERE key_hash = $1::text AND revoked_at IS NULL"
)

_CLAIM_KEY = (
    "INSERT INTO idempotency_keys (scope, key, request_hash)"
    " VALUES ($1::text, $2::text, $3::text)"
    " ON CONFLICT DO NOTHING RETURNING key"
)
#: `IdempotencyKeys.get`: $1 scope, $2 key
_KEY_ROW = (
    "SELECT scope, key, request_hash, chain_id, operation_kind, operation_id, status_code,"
    " response, created_at FROM idempotency_keys WHERE scope = $1::text AND key = $2::text"
)


def _jsonb(value: Any) -> str:
    """`value` (a command's or an event's payload: JSON's types only) as the text of a `jsonb`
    parameter. pydantic-core's serializer, not `json.dumps`: several times faster on a sale's
    command, and the same `jsonb` (non-ASCII is written as UTF-8 instead of as `\\u` escapes;
    NaN and the infinities as `json.dumps` writes them)."""
    return to_json(value).decode()


def _ref_args(ref: OpRef) -> tuple[uuid.UUID, str, uuid.UUID]:
    """The operation's key: `$1` chain_id, `$2` kind, `$3` operation_id."""
    return ref.chain_id, ref.kind, ref.operation_id


@dataclass(frozen=True)
class TillRequest:
    """What `Operations.record` writes besides the operation's key and its command: the
    request row's columns, and the sale's lines and payments (column dicts; none for most
    kinds)."""

    store_id: uuid.UUID | None
    terminal_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    request_hash: str
    request: dict[str, Any]
    lines: Sequence[dict[str, Any]] = ()
    payments: Sequence[dict[str, Any]] = ()


#: the columns of the row `settle_and_notify` returns (those `Operations.read` reads)
_SETTLED_COLUMNS = (*(c.name for c in ANSWER_COLUMNS), "minor_units")
_OPERATION_COLUMNS = ", ".join(f"s.{c.name}" for c in ANSWER_COLUMNS)


def _operation_row(row: asyncpg.Record) -> SimpleNamespace:
    """An operation row as `Operations.read` and `settle_and_notify` give it: the columns
    `read` reads, as attributes."""
    return SimpleNamespace(**{name: row[name] for name in _SETTLED_COLUMNS})


#: `Operations.read`: $1-$3 the operation's key (`_ref_args`)
_READ_OPERATION = (
    f"SELECT {_OPERATION_COLUMNS}, c.minor_units FROM operations AS s"
    " JOIN chains AS c ON c.chain_id = s.chain_id"
    " WHERE s.chain_id = $1::uuid AND s.kind = $2::text AND s.operation_id = $3::uuid"
)
# The notification carries the row as stored when it fits (`outcome_listener`), so a request
# another instance wakes answers without reading it. $1-$3: the operation's key (`_ref_args`).
_SETTLE_AND_NOTIFY = (
    "WITH settled AS ("
    " UPDATE operations SET status = $4::text, outcome = $5::jsonb,"
    " code = $6::text, detail = $7::text, completed_at = now()"
    " WHERE chain_id = $1::uuid AND kind = $2::text"
    " AND operation_id = $3::uuid AND status = 'pending'"
    " RETURNING *)"
    " SELECT a.*, pg_notify($8::text, CASE"
    f" WHEN octet_length(n.full_payload) < {PAYLOAD_LIMIT} THEN n.full_payload"
    " ELSE $9::text END) AS notified"
    f" FROM (SELECT {_OPERATION_COLUMNS}, c.minor_units"
    " FROM settled AS s LEFT JOIN chains AS c ON c.chain_id = s.chain_id) AS a,"
    " LATERAL (SELECT $9::text || '|' || CAST(to_jsonb(a) AS text)"
    " AS full_payload) AS n"
)

#: the sale line columns `_RECORD` takes as arrays ($9-$16), in its order
_LINE_COLUMNS = (
    "line_no",
    "sku",
    "barcode",
    "name",
    "quantity",
    "unit_price",
    "discount",
    "amount",
)
#: the outbox row's columns `_RECORD` takes ($19-$23; its headers are $24)
_OUTBOX_COLUMNS = ("message_id", "topic", "key", "type", "value")
# $1-$3: the operation's key (`_ref_args`); $4-$8: the request row; $9-$16: the lines (arrays,
# `_LINE_COLUMNS`); $17-$18: the payments (arrays); $19-$24: the outbox row; $25-$26: the
# Idempotency-Key (scope, key; null without one). Every part after `op` writes only when `op`
# inserted the operation (`FROM op`, `EXISTS`).
_RECORD = (
    "WITH op AS ("
    " INSERT INTO operations (chain_id, kind, operation_id, store_id, terminal_id,"
    " customer_id, request_hash, request, status)"
    " VALUES ($1::uuid, $2::text, $3::uuid, $4::uuid, $5::uuid, $6::uuid, $7::text, $8::jsonb,"
    " 'pending')"
    " ON CONFLICT DO NOTHING RETURNING operation_id),"
    " lines AS ("
    " INSERT INTO sale_lines (chain_id, sale_id, line_no, sku, barcode, name, quantity,"
    " unit_price, discount, amount)"
    " SELECT $1::uuid, op.operation_id, l.* FROM op, unnest($9::integer[], $10::text[],"
    " $11::text[], $12::text[], $13::numeric[], $14::numeric[], $15::numeric[],"
    " $16::numeric[]) AS l),"
    " paid AS ("
    " INSERT INTO payments (payment_id, chain_id, customer_id, operation_kind, operation_id,"
    " method)"
    " SELECT p.payment_id, $1::uuid, $6::uuid, $2::text, op.operation_id, p.method FROM op,"
    " unnest($17::uuid[], $18::text[]) AS p(payment_id, method)),"
    " sent AS ("
    " INSERT INTO outbox (message_id, topic, key, type, value, headers)"
    " SELECT $19::uuid, $20::text, $21::text, $22::text, $23::bytea, $24::jsonb FROM op),"
    " linked AS ("
    " UPDATE idempotency_keys SET chain_id = $1::uuid, operation_kind = $2::text,"
    " operation_id = $3::uuid"
    " WHERE scope = $25::text AND key = $26::text AND EXISTS (SELECT 1 FROM op))"
    " SELECT count(*) FROM op"
)


@dataclass(frozen=True)
class TillLookup:
    """What a till operation's static checks read, from one statement: the chain, the card
    named (None: none given, or no such card), the customer named by id and the card's
    customer (None when missing). Each is a row's columns as attributes, like a `Row`."""

    chain: Any
    card: Any
    customer: Any
    card_owner: Any


#: (alias, table, a column that is never null in a row that exists)
_LOOKUP_PARTS = (
    ("ch", t.chains, "chain_id"),
    ("ca", t.cards, "card_number"),
    ("cu", t.customers, "customer_id"),
    ("ow", t.customers, "customer_id"),
)


def _lookup_layout() -> list[tuple[int, list[tuple[str, int]]]]:
    """Per part of `_LOOKUP_PARTS`: the position of its never-null column in `_TILL_LOOKUP`'s
    row, and (name, position) of each of its columns (`locks` is position 0)."""
    layout, position = [], 1
    for _alias, table, present in _LOOKUP_PARTS:
        columns = [(c.name, position + i) for i, c in enumerate(table.columns)]
        layout.append((dict(columns)[present], columns))
        position += len(columns)
    return layout


_LOOKUP_LAYOUT = _lookup_layout()

#: the lookup's columns (`locks`, then the columns of `_LOOKUP_PARTS`), after a WITH that
#: defines `locked`; then its joins: $1 chain_id, $2 card_number, $3 customer_id
_LOOKUP_COLUMNS = " SELECT (SELECT count(*) FROM locked) AS locks, " + ", ".join(
    f"{alias}.{c.name} AS {alias}_{c.name}"
    for alias, table, _ in _LOOKUP_PARTS
    for c in table.columns
)
_LOOKUP_FROM = (
    " FROM (SELECT 1) AS one"
    " LEFT JOIN chains AS ch ON ch.chain_id = $1::uuid"
    " LEFT JOIN cards AS ca ON ca.chain_id = $1::uuid AND ca.card_number = $2::text"
    " LEFT JOIN customers AS cu ON cu.chain_id = $1::uuid AND cu.customer_id = $3::uuid"
    " LEFT JOIN customers AS ow ON ow.chain_id = $1::uuid AND ow.customer_id = ca.customer_id"
)

# $1 chain_id, $2 card_number, $3 customer_id, $4 lock_name (each may be null but the chain)
_TILL_LOOKUP = (
    # the advisory lock of `Operations.lock_name`, when a name is given (before the row)
    "WITH locked AS MATERIALIZED ("
    " SELECT pg_advisory_xact_lock(hashtext($4::text)) WHERE $4::text IS NOT NULL)"
    + _LOOKUP_COLUMNS
    + _LOOKUP_FROM
)

# `_TILL_LOOKUP` after the Idempotency-Key's claim (`_CLAIM_KEY`, $5 scope, $6 key, $7 request
# hash), in one statement: the claim's INSERT runs first (the lock below reads its row) and
# waits, like `_CLAIM_KEY` alone, for a concurrent request holding the key; the advisory lock
# is taken only when the key was claimed. The column `claimed` says whether it was;
# `key_active`, whether the API key of hash $8 is active (true when $8 is null).
_CLAIM_AND_TILL_LOOKUP = (
    "WITH claimed AS ("
    " INSERT INTO idempotency_keys (scope, key, request_hash)"
    " VALUES ($5::text, $6::text, $7::text)"
    " ON CONFLICT DO NOTHING RETURNING key),"
    " locked AS MATERIALIZED ("
    " SELECT pg_advisory_xact_lock(hashtext($4::text)) FROM claimed WHERE $4::text IS NOT NULL)"
    + _LOOKUP_COLUMNS
    + ", (SELECT count(*) FROM claimed) AS claimed, ($8::text IS NULL OR EXISTS ("
    " SELECT 1 FROM api_keys WHERE key_hash = $8::text AND revoked_at IS NULL)) AS key_active"
    + _LOOKUP_FROM
)


def _card_argument(card_number: str | None) -> str | None:
    if card_number is not None and "\x00" in card_number:
        return None  # no card has it (PostgreSQL text cannot hold it): not found
    return card_number


def _till_found(row: asyncpg.Record | None) -> TillLookup:
    assert row is not None, "the lookup always returns its one row"
    return TillLookup(
        *(
            None
            if row[present] is None
            else SimpleNamespace(**{name: row[i] for name, i in columns})
            for present, columns in _LOOKUP_LAYOUT
        )
    )


async def till_lookup(
    session: sql.Db,
    chain_id: uuid.UUID,
    *,
    card_number: str | None = None,
    customer_id: uuid.UUID | None = None,
    lock_name: str | None = None,
) -> TillLookup:
    """The chain, card and customers a till operation checks, in one statement; with
    `lock_name`, the transaction-scoped advisory lock `Operations.lock_name` takes, too."""
    row = await sql.fetchrow(
        session, _TILL_LOOKUP, chain_id, _card_argument(card_number), customer_id, lock_name
    )
    return _till_found(row)


@dataclass(frozen=True)
class ClaimedLookup:
    """What `claim_and_till_lookup` found: the lookup (None when the key existed: nothing was
    locked by name), and whether the API key it was asked to check is active."""

    found: TillLookup | None
    key_active: bool


async def claim_and_till_lookup(
    session: sql.Db,
    idempotency: tuple[str, str, str],
    chain_id: uuid.UUID,
    *,
    card_number: str | None = None,
    customer_id: uuid.UUID | None = None,
    lock_name: str | None = None,
    api_key_hash: str | None = None,
) -> ClaimedLookup:
    """`IdempotencyKeys.insert` of `idempotency` (scope, key, request hash), then `till_lookup`
    when this transaction created the key's row, and whether the API key of `api_key_hash` is
    active (`ApiKeys.active`; None: nothing to check): one statement."""
    row = await sql.fetchrow(
        session,
        _CLAIM_AND_TILL_LOOKUP,
        chain_id,
        _card_argument(card_number),
        customer_id,
        lock_name,
        *idempotency,
        api_key_hash,
    )
    assert row is not None, "the lookup always returns its one row"
    return ClaimedLookup(_till_found(row) if row["claimed"] else None, bool(row["key_active"]))
