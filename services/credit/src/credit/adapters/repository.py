"""Reads and writes of the credit ledger inside the caller's transaction.

The per-customer row is the lock: every operation, answer and overdue scan of a customer
first takes ``SELECT ... FOR UPDATE`` on it, so two instances (or two partitions during a
rebalance) never decide on the same ledger at once.

Every statement is plain SQL (module constants, `$1`-style parameters) sent through
`servicekit.sql` on the caller's transaction (a consumer batch's `Tx`, or a session's own
connection and transaction for the jobs and the HTTP reads): SQLAlchemy's per-statement
pipeline was most of credit's CPU per sale. jsonb is passed as JSON text (`json.dumps`, as
SQLAlchemy's JSONB type did) and comes back decoded; rows are `asyncpg.Record`s; errors are
asyncpg's own. The schema itself (`tables`, the migrations) stays SQLAlchemy's.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from credit.domain.model import Entry, EntryKind, Ledger, Line, Method, Payment, Sale
from servicekit import sql
from servicekit.db import column_arrays
from servicekit.outbox import carrying_buffered

LIVE = ("pending", "confirmed")

#: Master data's settings of a chain: they always win. $1 chain_id, $2 settings (JSON text).
_MASTERDATA_CHAIN = (
    "INSERT INTO chains (chain_id, settings, from_masterdata) VALUES ($1, $2::jsonb, true)"
    " ON CONFLICT (chain_id) DO UPDATE SET settings = excluded.settings,"
    " from_masterdata = true, updated_at = now()"
)

#: A command's chain snapshot: refresh a chain only master data has not described when its
#: settings differ (an UPDATE locks only the rows it changes), insert one never seen (ON
#: CONFLICT DO NOTHING takes no lock on a row that exists), otherwise touch nothing.
#: $1 chain_id, $2 settings (JSON text).
_REFRESH_CHAIN = (
    "refreshed AS (UPDATE chains SET settings = $2::jsonb, updated_at = now()"
    " WHERE chain_id = $1::uuid AND NOT from_masterdata AND settings IS DISTINCT FROM $2::jsonb"
    " RETURNING chain_id)"
)
_INSERT_UNSEEN_CHAIN = (
    "INSERT INTO chains (chain_id, settings, from_masterdata)"
    " SELECT $1::uuid, $2::jsonb, false"
    " WHERE NOT EXISTS (SELECT 1 FROM chains WHERE chain_id = $1::uuid)"
    " ON CONFLICT (chain_id) DO NOTHING"
)
_SNAPSHOT_CHAIN = f"WITH {_REFRESH_CHAIN} {_INSERT_UNSEEN_CHAIN}"

_CHAINS = "SELECT chain_id, settings FROM chains"
_CHAIN_SETTINGS = "SELECT settings FROM chains WHERE chain_id = $1"

#: The customer's row, locked until the transaction ends (`..._SKIP_LOCKED`: none when
#: another transaction holds it); `_INSERT_CUSTOMER` creates it on first sight. $1 customer_id.
_LOCK_CUSTOMER = (
    "SELECT customer_id, chain_id, in_flight, bonus_balance FROM customers"
    " WHERE customer_id = $1 FOR UPDATE"
)
_LOCK_CUSTOMER_SKIP_LOCKED = _LOCK_CUSTOMER + " SKIP LOCKED"
#: A command's chain snapshot (`_SNAPSHOT_CHAIN`) and its customer's lock in one statement:
#: the snapshot's writes are CTEs, run once whatever the lock finds. $3 customer_id.
_SNAPSHOT_CHAIN_THEN_LOCK_CUSTOMER = (
    f"WITH {_REFRESH_CHAIN}, unseen AS ({_INSERT_UNSEEN_CHAIN} RETURNING chain_id) "
    + _LOCK_CUSTOMER.replace("$1", "$3")
)
_INSERT_CUSTOMER = (
    "INSERT INTO customers (customer_id, chain_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
)

#: $1 customer_id, $2 whether to set in_flight, $3 in_flight; $4 bonus_balance, $5 debt,
#: $6 advance (NULL: left as it is; none of the three columns is nullable).
_UPDATE_CUSTOMER = (
    "UPDATE customers SET in_flight = CASE WHEN $2::boolean THEN $3::uuid ELSE in_flight END,"
    " bonus_balance = COALESCE($4::numeric, bonus_balance),"
    " debt = COALESCE($5::numeric, debt), advance = COALESCE($6::numeric, advance),"
    " updated_at = now() WHERE customer_id = $1"
)

_CUSTOMER_CHAIN = "SELECT chain_id FROM customers WHERE customer_id = $1"
#: the customers the overdue scan looks at: open debt, or overdue marks not yet settled
_CUSTOMERS_WITH_DEBT = (
    "SELECT customer_id FROM customers WHERE chain_id = $1 AND (debt > 0 OR customer_id IN"
    " (SELECT customer_id FROM overdue_marks WHERE chain_id = $1 AND settled_at IS NULL))"
)

#: $1 chain_id, $2 sale_id (an anonymous sale's returns, one by one)
_LOCK_SALE = "SELECT sale_id FROM sales WHERE chain_id = $1 AND sale_id = $2 FOR UPDATE"

#: the entries of an operation recorded on its own, in their order (the identity numbers
#: them): $1 chain_id, $2 customer_id, $3-$11 the entries' columns (`_entry_arrays`)
_ADD_ENTRIES = (
    "INSERT INTO entries (operation_id, chain_id, customer_id, kind, amount, at, sale_id,"
    " line_no, payment_id, method, quantity)"
    " SELECT x.operation_id, $1::uuid, $2::uuid, x.kind,"
    " x.amount, x.at, x.sale_id, x.line_no, x.payment_id, x.method, x.quantity"
    " FROM unnest($3::uuid[], $4::text[], $5::numeric[], $6::timestamptz[], $7::uuid[],"
    " $8::integer[], $9::uuid[], $10::text[], $11::numeric[]) WITH ORDINALITY"
    " AS x(operation_id, kind, amount, at, sale_id, line_no, payment_id, method, quantity, n)"
    " ORDER BY x.n"
)

_OPERATION_COLUMNS = (
    "operation_id, kind, chain_id, customer_id, status, outcome_type, outcome, meta,"
    " correlation_id, created_at, finished_at"
)
#: $1 operation_id, $2 kind, $3 chain_id, $4 customer_id, $5 status, $6 outcome_type,
#: $7 outcome, $8 meta (JSON text), $9 correlation_id; the id when it was inserted
_ADD_OPERATION = (
    "INSERT INTO operations (operation_id, kind, chain_id, customer_id, status, outcome_type,"
    " outcome, meta, correlation_id, finished_at)"
    " VALUES ($1, $2, $3, $4, $5::text, $6, $7::jsonb, $8::jsonb, $9,"
    " CASE WHEN $5::text = 'pending' THEN NULL ELSE now() END)"
    " ON CONFLICT DO NOTHING RETURNING operation_id"
)
#: $1 chain_id, $2 operation_id
_PENDING_OPERATION = (
    f"SELECT {_OPERATION_COLUMNS} FROM operations"
    " WHERE chain_id = $1 AND operation_id = $2 AND status = 'pending'"
)
#: $1 chain_id, $2 operation_id, $3 the status it ends as, $4 customer_id.
#: An answer's customer (`_LOCK_CUSTOMER`) locked (its chain returned, to be checked),
#: then its operation ended as $3 if still pending, its row returned: one statement. The UPDATE
#: re-reads the operation's row once it may change it, so an operation someone else ended while
#: this statement waited for the lock (the deadline job) is no longer pending: nothing comes back.
_LOCK_CUSTOMER_AND_CLAIM_PENDING = (
    "WITH locked AS (SELECT chain_id FROM customers WHERE customer_id = $4 FOR UPDATE)"
    " UPDATE operations SET status = $3, finished_at = now()"
    " WHERE chain_id = $1 AND operation_id = $2 AND status = 'pending'"
    " AND EXISTS (SELECT 1 FROM locked)"
    f" RETURNING {_OPERATION_COLUMNS}, (SELECT chain_id FROM locked) AS customer_chain_id"
)
#: $1 the cutoff: the deadline job's question, every second (the partial index
#: `operations_pending`), oldest first
_PENDING_SINCE_BEFORE = (
    "SELECT chain_id, operation_id, customer_id FROM operations"
    " WHERE status = 'pending' AND created_at < $1 AND customer_id IS NOT NULL"
    " ORDER BY created_at"
)
_FINISH_OPERATION = (
    "UPDATE operations SET status = $3, finished_at = now()"
    " WHERE chain_id = $1 AND operation_id = $2"
)
_ADD_REFUSAL = (
    "INSERT INTO refusals (operation_id, kind, chain_id, customer_id, code, detail)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)

#: $1 customer_id, $2 message_id, $3 envelope (JSON text)
_PARK = (
    "INSERT INTO parked_commands (customer_id, message_id, envelope)"
    " VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING"
)
_UNPARK_NEXT = (
    "DELETE FROM parked_commands WHERE id = (SELECT id FROM parked_commands"
    " WHERE customer_id = $1 ORDER BY id LIMIT 1) RETURNING envelope"
)
#: `_UPDATE_CUSTOMER` clearing the operation in flight, and `_UNPARK_NEXT`: one round trip
#: (the update runs to completion although nothing reads it). Its parameters are
#: `_UPDATE_CUSTOMER`'s without $2 and $3.
_END_IN_FLIGHT = (
    "WITH ended AS (UPDATE customers SET in_flight = NULL,"
    " bonus_balance = COALESCE($2::numeric, bonus_balance),"
    " debt = COALESCE($3::numeric, debt), advance = COALESCE($4::numeric, advance),"
    " updated_at = now() WHERE customer_id = $1) " + _UNPARK_NEXT
)

#: $1 sale_id, $2 chain_id, $3 customer_id, $4 due_date, $5 detected_at; the sale when new
_MARK_OVERDUE = (
    "INSERT INTO overdue_marks (sale_id, chain_id, customer_id, due_date, detected_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING sale_id"
)
#: $1 chain_id, $2 sale_id
_LOCK_MARK = "SELECT settled_at FROM overdue_marks WHERE chain_id = $1 AND sale_id = $2 FOR UPDATE"
_SETTLE_MARK = "UPDATE overdue_marks SET settled_at = now() WHERE chain_id = $1 AND sale_id = $2"
_UNSETTLED_MARKS = "SELECT sale_id FROM overdue_marks WHERE customer_id = $1 AND settled_at IS NULL"

#: sales a confirmed operation brought to owing nothing: a command no longer reads them
#: (unless it names them). $1 chain_id, $2 sale ids
_MARK_SETTLED = "UPDATE sales SET settled = true WHERE chain_id = $1 AND sale_id = ANY($2::uuid[])"


class _Keep:
    """`update_customer`'s default for `in_flight`: leave it as it is (None clears it)."""


KEEP = _Keep()


@dataclass(frozen=True)
class Unparked:
    """The customer's oldest parked command, taken off the queue (None: nothing was parked)."""

    envelope: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _OperationColumns:
    """The columns of an operation's row that `Repository.record_operation` writes and
    `lock_customer_and_claim_pending` / `pending_operation` read back."""

    operation_id: uuid.UUID
    kind: str
    chain_id: uuid.UUID
    customer_id: uuid.UUID | None
    status: str
    outcome_type: str
    outcome: dict[str, Any]
    meta: dict[str, Any]
    correlation_id: uuid.UUID


@dataclass(frozen=True)
class OperationRecord(_OperationColumns):
    """What `Repository.record_operation` writes for an operation the ledger accepted.

    `in_flight` for one that waits for loyalty; `debt`/`advance` for one confirmed at once
    (None: the customer's balances stay as they are); `sale_settled`: the sale it records owes
    nothing (paid in full at the till), so later commands need not read it."""

    sale: Sale | None
    entries: list[Entry]
    in_flight: uuid.UUID | None = None
    debt: Decimal | None = None
    advance: Decimal | None = None
    sale_settled: bool = False


@dataclass(frozen=True, slots=True)
class OperationRow(_OperationColumns):
    """An operation's row as `lock_customer_and_claim_pending` and `pending_operation` return it."""

    created_at: datetime
    finished_at: datetime | None


@dataclass
class CustomerRow:
    customer_id: uuid.UUID
    chain_id: uuid.UUID
    in_flight: uuid.UUID | None
    bonus_balance: Decimal


def _check_chain(found: uuid.UUID, customer_id: uuid.UUID, chain_id: uuid.UUID) -> None:
    """The locked customer must be of `chain_id` (`found`: the chain of its row)."""
    if found != chain_id:
        raise LookupError(f"customer {customer_id} belongs to another chain")


def _customer_row(row: Any, customer_id: uuid.UUID, chain_id: uuid.UUID) -> CustomerRow:
    """The locked customer's row, which must be of `chain_id`."""
    _check_chain(row["chain_id"], customer_id, chain_id)
    return CustomerRow(row["customer_id"], row["chain_id"], row["in_flight"], row["bonus_balance"])


class Repository:
    """The credit tables as the service layer needs them."""

    def __init__(self, db: sql.Db) -> None:
        self.db = db

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """`async with repo.savepoint():` what fails inside is rolled back alone."""
        return sql.savepoint(self.db)

    # ----------------------------------------------------------------- customers

    async def lock_customer(
        self, customer_id: uuid.UUID, chain_id: uuid.UUID, *, skip_locked: bool = False
    ) -> CustomerRow | None:
        """The customer's row, locked until the transaction ends (created on first sight,
        unless `skip_locked`: then None when another transaction holds it).

        One statement when the row exists, the common case; three on first sight. Two first
        sights at once: both insert, one waits for the other's row and inserts nothing, then
        both lock it in turn."""
        row = await sql.lock_row(
            self.db,
            _LOCK_CUSTOMER_SKIP_LOCKED if skip_locked else _LOCK_CUSTOMER,
            (customer_id,),
            None if skip_locked else _INSERT_CUSTOMER,
            (customer_id, chain_id),
        )
        if row is None:
            return None
        return _customer_row(row, customer_id, chain_id)

    async def remember_chain_and_lock_customer(
        self, chain_id: uuid.UUID, settings: dict[str, Any], customer_id: uuid.UUID
    ) -> CustomerRow:
        """`remember_chain` of a command's snapshot, then `lock_customer`: one statement when
        the customer exists; on first sight that one finds no row, and `lock_customer` creates
        and locks it (three more)."""
        row = await sql.fetchrow(
            self.db,
            _SNAPSHOT_CHAIN_THEN_LOCK_CUSTOMER,
            chain_id,
            json.dumps(settings),
            customer_id,
        )
        if row is None:
            found = await self.lock_customer(customer_id, chain_id)
            assert found is not None  # created and locked: it waits, never skips
            return found
        return _customer_row(row, customer_id, chain_id)

    async def update_customer(
        self,
        customer_id: uuid.UUID,
        *,
        in_flight: uuid.UUID | _Keep | None = KEEP,
        bonus_balance: Decimal | None = None,
        debt: Decimal | None = None,
        advance: Decimal | None = None,
    ) -> None:
        """Set the values given (`in_flight=None` clears the operation in flight)."""
        flight = None if isinstance(in_flight, _Keep) else in_flight
        await sql.execute(
            self.db,
            _UPDATE_CUSTOMER,
            customer_id,
            not isinstance(in_flight, _Keep),
            flight,
            bonus_balance,
            debt,
            advance,
        )

    # ----------------------------------------------------------------- chains

    async def remember_chain(
        self, chain_id: uuid.UUID, settings: dict[str, Any], *, authoritative: bool
    ) -> None:
        """Master data always wins; a command's snapshot only fills a chain not yet known (or
        refreshes one master data has not described yet).

        A snapshot locks the chain's row only when it changes it: every command comes through
        here, and an `INSERT ... ON CONFLICT DO UPDATE` locks the conflicting row even when its
        WHERE leaves it unchanged, so every credit instance queued on four chain rows and two
        batches that met two chains in opposite orders deadlocked (docs/benchmarks.md, runs
        with `--instances`). Still one statement."""
        if authoritative:
            await sql.execute(self.db, _MASTERDATA_CHAIN, chain_id, json.dumps(settings))
            return
        await sql.execute(self.db, _SNAPSHOT_CHAIN, chain_id, json.dumps(settings))

    async def chains(self) -> list[tuple[uuid.UUID, dict[str, Any]]]:
        rows = await sql.fetch(self.db, _CHAINS)
        return [(r["chain_id"], r["settings"]) for r in rows]

    async def chain_settings(self, chain_id: uuid.UUID) -> dict[str, Any] | None:
        return await _json_value(self.db, _CHAIN_SETTINGS, chain_id)

    # ----------------------------------------------------------------- ledger

    async def load_ledger(
        self,
        *,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        sale_id: uuid.UUID | None = None,
        minor_units: int = 2,
    ) -> Ledger:
        """A customer's whole ledger (every sale and entry), or one anonymous sale's
        (``customer_id`` None): the overdue scan's and the internal endpoint's read.

        Only rows of live (pending or confirmed) operations count, the operation being found
        by (chain, id) through its primary key."""
        query, args = _ledger_query(chain_id, customer_id, sale_id, None, whole=True)
        assert query is not None or (customer_id is None and sale_id is None)
        rows = await sql.fetch(self.db, query, *args) if query else []
        return _ledger_from_rows(rows, minor_units)

    async def load_for_command(
        self,
        *,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        sale_id: uuid.UUID | None = None,
        minor_units: int = 2,
        seen: tuple[uuid.UUID, str] | None = None,
        named: Sequence[uuid.UUID] = (),
    ) -> tuple[Ledger, bool]:
        """What a command of the customer needs of the ledger (an anonymous sale's whole
        ledger, an empty one when neither a customer nor a sale is named) and, when `seen`
        names an (operation, kind), whether it was accepted or refused before
        (`operation_known`): one statement, sales, entries, advance and the answer tagged
        apart.

        A customer's: the sales not marked `settled` (all that may owe something) and the
        customer's sales among `named` (the sale a return or a revocation names, the sales a
        payment allocates to, a new sale's id), each with all its live entries, and the
        advance summed over all the customer's live entries (`Ledger`: such a part is enough
        for every operation). A customer's settled history is not read."""
        query, args = _ledger_query(chain_id, customer_id, sale_id, seen, named=named)
        rows = await sql.fetch(self.db, query, *args) if query else []
        return _read_rows(rows, minor_units)

    async def record_operation(self, op: OperationRecord) -> None:
        """An operation the ledger accepted: its sale (if it records one), its entries, the
        operation row (ON CONFLICT DO NOTHING, as before) and the customer's row (the
        operation in flight, or the balances it leaves): one statement, which also writes the
        events emitted before it (`outbox.carrying_buffered`)."""
        statement, args = carrying_buffered(self.db, _RECORD, _record_args(op))
        await sql.execute(self.db, statement, *args)

    async def mark_settled(self, chain_id: uuid.UUID, sale_ids: Sequence[uuid.UUID]) -> None:
        """The sales a confirmed operation brought to owing nothing: commands stop reading
        them (nothing charges a sale that owes nothing, see `Ledger.revoke_discount`)."""
        if sale_ids:
            await sql.execute(self.db, _MARK_SETTLED, chain_id, list(sale_ids))

    async def add_entries(
        self, entries: list[Entry], *, chain_id: uuid.UUID, customer_id: uuid.UUID | None
    ) -> None:
        if not entries:
            return
        await sql.execute(self.db, _ADD_ENTRIES, chain_id, customer_id, *_entry_arrays(entries))

    async def lock_sale(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> None:
        await sql.execute(self.db, _LOCK_SALE, chain_id, sale_id)

    # ----------------------------------------------------------------- operations

    async def operation_known(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID, kind: str
    ) -> bool:
        """Accepted before (pending, confirmed or voided) or refused before (one statement)."""
        return await sql.fetchrow(self.db, _SEEN, chain_id, operation_id, kind) is not None

    async def add_operation(
        self,
        *,
        operation_id: uuid.UUID,
        kind: str,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        status: str,
        outcome_type: str,
        outcome: dict[str, Any],
        meta: dict[str, Any],
        correlation_id: uuid.UUID,
    ) -> bool:
        """True when the operation is new (ON CONFLICT DO NOTHING)."""
        inserted = await sql.fetchval(
            self.db,
            _ADD_OPERATION,
            operation_id,
            kind,
            chain_id,
            customer_id,
            status,
            outcome_type,
            json.dumps(outcome),
            json.dumps(meta),
            correlation_id,
        )
        return inserted is not None

    async def pending_operation(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID
    ) -> OperationRow | None:
        row = await sql.fetchrow(self.db, _PENDING_OPERATION, chain_id, operation_id)
        return None if row is None else OperationRow(**dict(row.items()))

    async def lock_customer_and_claim_pending(
        self, customer_id: uuid.UUID, chain_id: uuid.UUID, operation_id: uuid.UUID, status: str
    ) -> OperationRow | None:
        """Lock the customer (one credit knows) and end its pending operation as `status`:
        the operation's row, or None when it is not pending (then the customer may be left
        unlocked: nothing is changed). One statement."""
        row = await sql.fetchrow(
            self.db,
            _LOCK_CUSTOMER_AND_CLAIM_PENDING,
            chain_id,
            operation_id,
            status,
            customer_id,
        )
        if row is None:
            return None
        values = dict(row.items())
        _check_chain(values.pop("customer_chain_id"), customer_id, chain_id)
        return OperationRow(**values)

    async def pending_since_before(
        self, cutoff: datetime
    ) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
        """(chain, operation, customer) of every operation pending since before `cutoff`,
        oldest first (the partial index `operations_pending`)."""
        rows = await sql.fetch(self.db, _PENDING_SINCE_BEFORE, cutoff)
        return [(r["chain_id"], r["operation_id"], r["customer_id"]) for r in rows]

    async def finish_operation(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID, status: str
    ) -> None:
        await sql.execute(self.db, _FINISH_OPERATION, chain_id, operation_id, status)

    async def add_refusal(
        self,
        *,
        operation_id: uuid.UUID,
        kind: str,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        code: str,
        detail: str,
    ) -> None:
        await sql.execute(
            self.db, _ADD_REFUSAL, operation_id, kind, chain_id, customer_id, code, detail
        )

    # ----------------------------------------------------------------- parking

    async def park(
        self, customer_id: uuid.UUID, message_id: uuid.UUID, envelope: dict[str, Any]
    ) -> None:
        await sql.execute(self.db, _PARK, customer_id, message_id, json.dumps(envelope))

    async def end_in_flight(
        self,
        customer_id: uuid.UUID,
        *,
        bonus_balance: Decimal | None = None,
        debt: Decimal | None = None,
        advance: Decimal | None = None,
    ) -> Unparked:
        """`update_customer(in_flight=None, ...)` and `unpark_next` in one statement: the
        customer's operation in flight has ended, and the next parked command is taken (the
        caller holds the customer's lock and replays it: `drain_parked(taken=...)`). The
        events emitted before it are written by the same statement (`outbox.carrying_buffered`)."""
        statement, args = carrying_buffered(
            self.db, _END_IN_FLIGHT, (customer_id, bonus_balance, debt, advance)
        )
        return Unparked(await _json_value(self.db, statement, *args))

    async def unpark_next(self, customer_id: uuid.UUID) -> dict[str, Any] | None:
        """The customer's oldest parked command, taken off the queue (one statement; the
        caller holds the customer's lock)."""
        return await _json_value(self.db, _UNPARK_NEXT, customer_id)

    # ----------------------------------------------------------------- overdue marks

    async def mark_overdue(
        self,
        *,
        sale_id: uuid.UUID,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID,
        due_date: date,
        detected_at: datetime,
    ) -> bool:
        """True for the one caller that marks the sale first."""
        inserted = await sql.fetchval(
            self.db, _MARK_OVERDUE, sale_id, chain_id, customer_id, due_date, detected_at
        )
        return inserted is not None

    async def settle_mark(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> bool | None:
        """None: never overdue; True: the mark is settled now; False: it was settled before."""
        row = await sql.fetchrow(self.db, _LOCK_MARK, chain_id, sale_id)
        if row is None:
            return None
        if row["settled_at"] is not None:
            return False
        await sql.execute(self.db, _SETTLE_MARK, chain_id, sale_id)
        return True

    async def unsettled_marks(self, customer_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await sql.fetch(self.db, _UNSETTLED_MARKS, customer_id)
        return [r["sale_id"] for r in rows]

    async def customers_with_debt(self, chain_id: uuid.UUID) -> list[uuid.UUID]:
        """Customers the scan must look at: open debt, or overdue marks not yet settled."""
        rows = await sql.fetch(self.db, _CUSTOMERS_WITH_DEBT, chain_id)
        return [r["customer_id"] for r in rows]

    async def customer_chain(self, customer_id: uuid.UUID) -> uuid.UUID | None:
        chain_id: uuid.UUID | None = await sql.fetchval(self.db, _CUSTOMER_CHAIN, customer_id)
        return chain_id


# --------------------------------------------------------------------------- one-statement SQL

# A ledger read's rows have one shape: the tag ('s' a sale, in `seq` order; 'e' an entry, in
# `id` order; 'k' the operation was seen before), `ord`, the sale's columns, the entry's.
_SALE_NULLS = (
    "NULL::uuid AS store_id, NULL::uuid AS terminal_id, NULL::timestamptz AS sold_at,"
    " NULL::date AS local_date, NULL::date AS due_date, NULL::text AS lines,"
    " NULL::text AS payments"
)
_ENTRY_NULLS = (
    "NULL::uuid AS operation_id, NULL::text AS kind, NULL::numeric AS amount,"
    " NULL::timestamptz AS at, NULL::integer AS line_no, NULL::uuid AS payment_id,"
    " NULL::text AS method, NULL::numeric AS quantity"
)
_LIVE_SQL = ", ".join(f"'{status}'" for status in LIVE)


#: a sale's lines and payments as JSON text (`_sale` decodes them, once per distinct sale)
_SALE_JSON = "s.lines::text AS lines, s.payments::text AS payments"


async def _json_value(db: sql.Db, query: str, *args: Any) -> dict[str, Any] | None:
    """The one jsonb document a query reads (a chain's settings, a parked envelope), or None
    (one statement)."""
    document: dict[str, Any] | None = await sql.fetchval(db, query, *args)
    return document


def _live(alias: str, operation_column: str) -> str:
    """The row's operation (found by (chain, id) through its primary key) is live."""
    return (
        f"EXISTS (SELECT 1 FROM operations o WHERE o.chain_id = {alias}.chain_id"
        f" AND o.operation_id = {alias}.{operation_column} AND o.status IN ({_LIVE_SQL}))"
    )


def _ledger_sql(sale_filter: str, entry_filter: str) -> str:
    """The sales and the entries of live operations that the filters name, as one read."""
    return (
        "SELECT 's' AS tag, s.seq AS ord, s.sale_id, s.store_id, s.terminal_id, s.sold_at,"
        f" s.local_date, s.due_date, {_SALE_JSON}, {_ENTRY_NULLS}"
        f" FROM sales s WHERE {sale_filter} AND {_live('s', 'sale_id')}"
        " UNION ALL SELECT 'e', e.id, e.sale_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        " e.operation_id, e.kind, e.amount, e.at, e.line_no, e.payment_id, e.method, e.quantity"
        f" FROM entries e WHERE {entry_filter} AND {_live('e', 'operation_id')}"
    )


def _known_sql(chain: str, operation: str, kind: str) -> str:
    """One 'k' row when the operation was accepted (any status) or refused (as `kind`)."""
    return (
        f"SELECT 'k' AS tag, NULL::bigint AS ord, NULL::uuid AS sale_id, {_SALE_NULLS},"
        f" {_ENTRY_NULLS} WHERE EXISTS (SELECT 1 FROM operations"
        f" WHERE chain_id = {chain} AND operation_id = {operation})"
        f" OR EXISTS (SELECT 1 FROM refusals WHERE chain_id = {chain}"
        f" AND operation_id = {operation} AND kind = {kind})"
    )


_ORDER = " ORDER BY tag, ord"
#: a customer's whole ledger: $1 customer_id
_CUSTOMER_ROWS = _ledger_sql("s.customer_id = $1", "e.customer_id = $1")
_ADVANCE_KINDS = "('advance_in', 'advance_out', 'advance_applied')"
#: what a command of a customer reads (`Repository.load_for_command`): the sales that may owe
#: something (the partial index `sales_open`) and the settled ones named, with their entries,
#: then one 'a' row, the customer's advance in `amount` (the partial index `entries_advance`).
#: $1 customer_id, $2 chain_id, $3 the named sale ids
_CUSTOMER_OPEN_ROWS = (
    "WITH s AS (SELECT * FROM sales WHERE customer_id = $1 AND NOT settled"
    " UNION ALL SELECT * FROM sales WHERE chain_id = $2 AND sale_id = ANY($3::uuid[])"
    " AND customer_id = $1 AND settled)"
    " SELECT 's' AS tag, s.seq AS ord, s.sale_id, s.store_id, s.terminal_id, s.sold_at,"
    f" s.local_date, s.due_date, {_SALE_JSON}, {_ENTRY_NULLS}"
    f" FROM s WHERE {_live('s', 'sale_id')}"
    " UNION ALL SELECT 'e', e.id, e.sale_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " e.operation_id, e.kind, e.amount, e.at, e.line_no, e.payment_id, e.method, e.quantity"
    " FROM entries e WHERE e.chain_id = $2 AND e.sale_id IN (SELECT sale_id FROM s)"
    f" AND e.customer_id = $1 AND {_live('e', 'operation_id')}"
    " UNION ALL SELECT 'a', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, (SELECT COALESCE(sum(CASE WHEN e.kind = 'advance_in' THEN e.amount"
    " ELSE -e.amount END), 0) FROM entries e WHERE e.customer_id = $1"
    f" AND e.kind IN {_ADVANCE_KINDS} AND {_live('e', 'operation_id')}),"
    " NULL, NULL, NULL, NULL, NULL"
)
#: one anonymous sale's ledger: $1 chain_id, $2 sale_id
_SALE_ROWS = _ledger_sql(
    "s.chain_id = $1 AND s.sale_id = $2 AND s.customer_id IS NULL",
    "e.chain_id = $1 AND e.sale_id = $2 AND e.customer_id IS NULL",
)
_CUSTOMER_LEDGER = _CUSTOMER_ROWS + _ORDER
_SALE_LEDGER = _SALE_ROWS + _ORDER
_CUSTOMER_OPEN = _CUSTOMER_OPEN_ROWS + _ORDER
#: ... and whether the operation was seen: $1 customer_id, $2 chain_id, $3 named sale ids,
#: $4 operation_id, $5 kind
_CUSTOMER_OPEN_SEEN = f"{_CUSTOMER_OPEN_ROWS} UNION ALL {_known_sql('$2', '$4', '$5')}{_ORDER}"
#: $1 chain_id, $2 sale_id, $3 operation_id, $4 kind
_SALE_LEDGER_SEEN = f"{_SALE_ROWS} UNION ALL {_known_sql('$1', '$3', '$4')}{_ORDER}"
#: whether the operation was seen, nothing else: $1 chain_id, $2 operation_id, $3 kind
_SEEN = _known_sql("$1", "$2", "$3")


def _ledger_query(
    chain_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    sale_id: uuid.UUID | None,
    seen: tuple[uuid.UUID, str] | None,
    *,
    whole: bool = False,
    named: Sequence[uuid.UUID] = (),
) -> tuple[str | None, tuple[Any, ...]]:
    """`load_for_command`'s statement and its arguments (None: nothing to read); `whole`:
    a customer's whole ledger (`load_ledger`)."""
    if customer_id is not None:
        if whole:
            return _CUSTOMER_LEDGER, (customer_id,)
        if seen is None:
            return _CUSTOMER_OPEN, (customer_id, chain_id, list(named))
        return _CUSTOMER_OPEN_SEEN, (customer_id, chain_id, list(named), *seen)
    if sale_id is not None:
        if seen is None:
            return _SALE_LEDGER, (chain_id, sale_id)
        return _SALE_LEDGER_SEEN, (chain_id, sale_id, *seen)
    if seen is not None:
        return _SEEN, (chain_id, *seen)
    return None, ()


# Every part runs whatever the others do (as the separate statements did): the sale only when
# there is one, the entries in their order (the identity numbers them), the customer's row only
# for a known customer (COALESCE: a NULL parameter leaves the column as it is). The arguments
# in `_record_args`'s order: $1-$10 the sale, $11-$19 the entries' columns (arrays), $20-$26
# the operation (and $2, $3), $27-$29 the customer's row, $30 whether the sale is settled.
_RECORD = (
    "WITH sale AS ("
    " INSERT INTO sales (sale_id, chain_id, customer_id, store_id, terminal_id, sold_at,"
    " local_date, due_date, lines, payments, settled)"
    " SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::uuid, $6::timestamptz,"
    " $7::date, $8::date, $9::jsonb, $10::jsonb, $30::boolean"
    " WHERE $1::uuid IS NOT NULL),"
    " entry AS ("
    " INSERT INTO entries (operation_id, chain_id, customer_id, kind, amount, at, sale_id,"
    " line_no, payment_id, method, quantity)"
    " SELECT x.operation_id, $2::uuid, $3::uuid, x.kind,"
    " x.amount, x.at, x.sale_id, x.line_no, x.payment_id, x.method, x.quantity"
    " FROM unnest($11::uuid[], $12::text[], $13::numeric[], $14::timestamptz[], $15::uuid[],"
    " $16::integer[], $17::uuid[], $18::text[], $19::numeric[]) WITH ORDINALITY"
    " AS x(operation_id, kind, amount, at, sale_id, line_no, payment_id, method, quantity, n)"
    " ORDER BY x.n),"
    " operation AS ("
    " INSERT INTO operations (operation_id, kind, chain_id, customer_id, status, outcome_type,"
    " outcome, meta, correlation_id, finished_at)"
    " VALUES ($20::uuid, $21::text, $2::uuid, $3::uuid, $22::text, $23::text, $24::jsonb,"
    " $25::jsonb, $26::uuid, CASE WHEN $22::text = 'pending' THEN NULL ELSE now() END)"
    " ON CONFLICT DO NOTHING)"
    " UPDATE customers SET in_flight = COALESCE($27::uuid, in_flight),"
    " debt = COALESCE($28::numeric, debt),"
    " advance = COALESCE($29::numeric, advance), updated_at = now()"
    " WHERE customer_id = $3::uuid"
)


def _ledger_from_rows(rows: Sequence[Any], minor_units: int) -> Ledger:
    """The ledger of a read's rows: the advance from the 'a' row when there is one (a
    customer's command read), else from the entries."""
    return _read_rows(rows, minor_units)[0]


def _read_rows(rows: Sequence[Any], minor_units: int) -> tuple[Ledger, bool]:
    """`_ledger_from_rows`, and whether a 'k' row (the operation was seen) is among the rows:
    one pass over them, each decoded by its tag."""
    sales: list[Sale] = []
    entries: list[Entry] = []
    advance = None
    known = False
    for r in rows:
        tag = r["tag"]
        if tag == "e":
            entries.append(_entry_from_row(r))
        elif tag == "s":
            sales.append(_sale_from_row(r))
        elif tag == "a":
            if advance is None:
                advance = r["amount"]
        elif tag == "k":
            known = True
    return Ledger(sales, entries, minor_units=minor_units, advance=advance), known


def _entry_arrays(entries: list[Entry]) -> list[list[Any]]:
    """The entries' columns, one list each, in `_RECORD`'s and `_ADD_ENTRIES`' order."""
    arrays = column_arrays(
        entries,
        operation_id="operation_id",
        kind=lambda e: e.kind.value,
        amount="amount",
        at="at",
        sale_id="sale_id",
        line_no="line_no",
        payment_id="payment_id",
        method=lambda e: e.method.value if e.method else None,
        quantity="quantity",
    )
    return list(arrays.values())


def _record_args(op: OperationRecord) -> tuple[Any, ...]:
    return (
        *_sale_args(op.sale, op.chain_id, op.customer_id),
        *_entry_arrays(op.entries),
        op.operation_id,
        op.kind,
        op.status,
        op.outcome_type,
        json.dumps(op.outcome),
        json.dumps(op.meta),
        op.correlation_id,
        op.in_flight,
        op.debt,
        op.advance,
        op.sale_settled,
    )


def _sale_args(
    sale: Sale | None, chain_id: uuid.UUID, customer_id: uuid.UUID | None
) -> tuple[Any, ...]:
    """`_RECORD`'s $1-$10: the sale (NULLs and empty lists when the operation records none)."""
    if sale is None:
        return (None, chain_id, customer_id, None, None, None, None, None, "[]", "[]")
    payments = [
        {"payment_id": str(p.payment_id), "method": p.method.value, "amount": str(p.amount)}
        for p in sale.payments
    ]
    return (
        sale.sale_id,
        chain_id,
        customer_id,
        sale.store_id,
        sale.terminal_id,
        sale.sold_at,
        sale.local_date,
        sale.due_date,
        json.dumps([_line_json(line) for line in sale.lines]),
        json.dumps(payments),
    )


def _line_json(line: Line) -> dict[str, Any]:
    return {
        "line_no": line.line_no,
        "name": line.name,
        "sku": line.sku,
        "barcode": line.barcode,
        "quantity": str(line.quantity),
        "unit_price": str(line.unit_price),
        "discount": str(line.discount),
        "amount": str(line.amount),
    }


#: the enums' members by value: a dict look-up per row instead of an enum call
_METHODS: dict[str, Method] = {m.value: m for m in Method}
_ENTRY_KINDS: dict[str, EntryKind] = {k.value: k for k in EntryKind}


def _method(value: str) -> Method:
    return _METHODS.get(value) or Method(value)


def _sale_from_row(row: Any) -> Sale:
    return _sale(
        row["sale_id"],
        row["store_id"],
        row["terminal_id"],
        row["sold_at"],
        row["local_date"],
        row["due_date"],
        row["ord"],
        row["lines"],
        row["payments"],
    )


#: How many distinct sales `_sale` keeps (a few MB): the open sales of the customers a
#: consumer sees again soon, read by each of their commands.
SALES_KEPT = 4096


@functools.lru_cache(maxsize=SALES_KEPT)
def _sale(
    sale_id: uuid.UUID,
    store_id: uuid.UUID,
    terminal_id: uuid.UUID | None,
    sold_at: datetime,
    local_date: date,
    due_date: date,
    seq: int,
    lines: str,
    payments: str,
) -> Sale:
    """A sale of its row's columns (`lines` and `payments`: their JSON text). A pure function
    of them, and a `Sale` is immutable: every command of a customer reads its open sales
    again, and a sale read before with the very same columns is not built again."""
    return Sale(
        sale_id=sale_id,
        store_id=store_id,
        terminal_id=terminal_id,
        sold_at=sold_at,
        local_date=local_date,
        due_date=due_date,
        seq=seq,
        lines=tuple(
            Line(
                x["line_no"],
                x["name"],
                Decimal(x["quantity"]),
                Decimal(x["unit_price"]),
                Decimal(x["discount"]),
                Decimal(x["amount"]),
                x["sku"],
                x["barcode"],
            )
            for x in json.loads(lines)
        ),
        payments=tuple(
            Payment(uuid.UUID(p["payment_id"]), _method(p["method"]), Decimal(p["amount"]))
            for p in json.loads(payments)
        ),
    )


def _entry_from_row(row: Any) -> Entry:
    kind, method = row["kind"], row["method"]
    return Entry(
        row["operation_id"],
        _ENTRY_KINDS.get(kind) or EntryKind(kind),
        row["amount"],
        row["at"],
        row["sale_id"],
        row["line_no"],
        row["payment_id"],
        _method(method) if method else None,
        row["quantity"],
    )
