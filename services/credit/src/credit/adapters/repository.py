"""Reads and writes of the credit ledger inside the caller's transaction.

The per-customer row is the lock: every operation, answer and overdue scan of a customer
first takes ``SELECT ... FOR UPDATE`` on it, so two instances (or two partitions during a
rebalance) never decide on the same ledger at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from credit.adapters import tables as t
from credit.domain.model import Entry, EntryKind, Ledger, Line, Method, Payment, Sale
from servicekit.db import column_arrays, lock_row

LIVE = ("pending", "confirmed")

#: A command's chain snapshot: refresh a chain only master data has not described when its
#: settings differ (an UPDATE locks only the rows it changes), insert one never seen (ON
#: CONFLICT DO NOTHING takes no lock on a row that exists), otherwise touch nothing.
_SNAPSHOT_CHAIN = sa.text(
    "WITH refreshed AS (UPDATE chains SET settings = :settings, updated_at = now() "
    "WHERE chain_id = :chain_id AND NOT from_masterdata AND settings IS DISTINCT FROM :settings "
    "RETURNING chain_id) "
    "INSERT INTO chains (chain_id, settings, from_masterdata) "
    "SELECT :chain_id, :settings, false "
    "WHERE NOT EXISTS (SELECT 1 FROM chains WHERE chain_id = :chain_id) "
    "ON CONFLICT (chain_id) DO NOTHING"
).bindparams(
    sa.bindparam("chain_id", type_=sa.Uuid),
    sa.bindparam("settings", type_=JSONB),
)


@dataclass(frozen=True)
class OperationRecord:
    """What `Repository.record_operation` writes for an operation the ledger accepted.

    `in_flight` for one that waits for loyalty; `debt`/`advance` for one confirmed at once
    (None: the customer's balances stay as they are)."""

    operation_id: uuid.UUID
    kind: str
    chain_id: uuid.UUID
    customer_id: uuid.UUID | None
    status: str
    outcome_type: str
    outcome: dict[str, Any]
    meta: dict[str, Any]
    correlation_id: uuid.UUID
    sale: Sale | None
    entries: list[Entry]
    in_flight: uuid.UUID | None = None
    debt: Decimal | None = None
    advance: Decimal | None = None


@dataclass
class CustomerRow:
    customer_id: uuid.UUID
    chain_id: uuid.UUID
    in_flight: uuid.UUID | None
    bonus_balance: Decimal


class Repository:
    """The credit tables as the service layer needs them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def savepoint(self) -> AsyncSessionTransaction:
        """`async with repo.savepoint():` what fails inside is rolled back alone."""
        return self.session.begin_nested()

    # ----------------------------------------------------------------- customers

    async def lock_customer(
        self, customer_id: uuid.UUID, chain_id: uuid.UUID, *, skip_locked: bool = False
    ) -> CustomerRow | None:
        """The customer's row, locked until the transaction ends (created on first sight,
        unless `skip_locked`: then None when another transaction holds it)."""
        row = await lock_row(
            self.session,
            sa.select(t.customers)
            .where(t.customers.c.customer_id == customer_id)
            .with_for_update(skip_locked=skip_locked),
            None
            if skip_locked
            else pg_insert(t.customers)
            .values(customer_id=customer_id, chain_id=chain_id)
            .on_conflict_do_nothing(),
        )
        if row is None:
            return None
        if row.chain_id != chain_id:
            raise LookupError(f"customer {customer_id} belongs to another chain")
        return CustomerRow(row.customer_id, row.chain_id, row.in_flight, row.bonus_balance)

    async def update_customer(self, customer_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id == customer_id)
            .values(updated_at=sa.func.now(), **values)
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
            await self.session.execute(
                pg_insert(t.chains)
                .values(chain_id=chain_id, settings=settings, from_masterdata=True)
                .on_conflict_do_update(
                    index_elements=[t.chains.c.chain_id],
                    set_={
                        "settings": settings,
                        "from_masterdata": True,
                        "updated_at": sa.func.now(),
                    },
                )
            )
            return
        await self.session.execute(_SNAPSHOT_CHAIN, {"chain_id": chain_id, "settings": settings})

    async def chains(self) -> list[tuple[uuid.UUID, dict[str, Any]]]:
        query = sa.select(t.chains.c.chain_id, t.chains.c.settings)
        rows = (await self.session.execute(query)).all()
        return [(r.chain_id, r.settings) for r in rows]

    async def chain_settings(self, chain_id: uuid.UUID) -> dict[str, Any] | None:
        return await self.session.scalar(
            sa.select(t.chains.c.settings).where(t.chains.c.chain_id == chain_id)
        )

    # ----------------------------------------------------------------- ledger

    async def load_ledger(
        self,
        *,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        sale_id: uuid.UUID | None = None,
        minor_units: int = 2,
    ) -> Ledger:
        """A customer's whole ledger, or one anonymous sale's (``customer_id`` None).

        Only rows of live (pending or confirmed) operations count, the operation being found
        by (chain, id) through its primary key."""
        ledger, _ = await self.load_for_command(
            chain_id=chain_id, customer_id=customer_id, sale_id=sale_id, minor_units=minor_units
        )
        return ledger

    async def load_for_command(
        self,
        *,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        sale_id: uuid.UUID | None = None,
        minor_units: int = 2,
        seen: tuple[uuid.UUID, str] | None = None,
    ) -> tuple[Ledger, bool]:
        """`load_ledger` (an empty ledger when neither a customer nor a sale is named) and,
        when `seen` names an (operation, kind), whether it was accepted or refused before
        (`operation_known`): one statement, sales, entries and the answer tagged apart."""
        parts: list[Any] = []
        if customer_id is not None or sale_id is not None:
            parts += _ledger_selects(chain_id, customer_id, sale_id)
        if seen is not None:
            parts.append(
                sa.select(sa.literal_column("'k'").label("tag"), *_NULLS).where(
                    self._known(chain_id, *seen)
                )
            )
        rows: list[Any] = []
        if parts:
            union = sa.union_all(*parts).subquery()
            query = sa.select(union).order_by(union.c.tag, union.c.ord)
            rows = list((await self.session.execute(query)).all())
        ledger = Ledger(
            [_sale_from_row(r) for r in rows if r.tag == "s"],
            [_entry_from_row(r) for r in rows if r.tag == "e"],
            minor_units=minor_units,
        )
        return ledger, any(r.tag == "k" for r in rows)

    async def record_operation(self, op: OperationRecord) -> None:
        """An operation the ledger accepted: its sale (if it records one), its entries, the
        operation row (ON CONFLICT DO NOTHING, as before) and the customer's row (the
        operation in flight, or the balances it leaves): one statement."""
        await self.session.execute(_RECORD, _record_params(op))

    async def add_entries(
        self, entries: list[Entry], *, chain_id: uuid.UUID, customer_id: uuid.UUID | None
    ) -> None:
        if not entries:
            return
        await self.session.execute(
            sa.insert(t.entries),
            [
                {
                    "operation_id": e.operation_id,
                    "chain_id": chain_id,
                    "customer_id": customer_id,
                    "kind": e.kind.value,
                    "amount": e.amount,
                    "at": e.at,
                    "sale_id": e.sale_id,
                    "line_no": e.line_no,
                    "payment_id": e.payment_id,
                    "method": e.method.value if e.method else None,
                    "quantity": e.quantity,
                }
                for e in entries
            ],
        )

    async def lock_sale(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.select(t.sales.c.sale_id)
            .where(t.sales.c.chain_id == chain_id, t.sales.c.sale_id == sale_id)
            .with_for_update()
        )

    # ----------------------------------------------------------------- operations

    async def operation_known(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID, kind: str
    ) -> bool:
        """Accepted before (pending, confirmed or voided) or refused before (one statement)."""
        return bool(await self.session.scalar(sa.select(self._known(chain_id, operation_id, kind))))

    @staticmethod
    def _known(chain_id: uuid.UUID, operation_id: uuid.UUID, kind: str) -> Any:
        accepted = sa.select(t.operations.c.operation_id).where(
            t.operations.c.chain_id == chain_id, t.operations.c.operation_id == operation_id
        )
        refused = sa.select(t.refusals.c.operation_id).where(
            t.refusals.c.chain_id == chain_id,
            t.refusals.c.operation_id == operation_id,
            t.refusals.c.kind == kind,
        )
        return sa.or_(accepted.exists(), refused.exists())

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
        inserted = await self.session.execute(
            pg_insert(t.operations)
            .values(
                operation_id=operation_id,
                kind=kind,
                chain_id=chain_id,
                customer_id=customer_id,
                status=status,
                outcome_type=outcome_type,
                outcome=outcome,
                meta=meta,
                correlation_id=correlation_id,
                finished_at=sa.func.now() if status != "pending" else None,
            )
            .on_conflict_do_nothing()
            .returning(t.operations.c.operation_id)
        )
        return inserted.first() is not None

    async def pending_operation(self, chain_id: uuid.UUID, operation_id: uuid.UUID) -> Any:
        return (
            await self.session.execute(
                sa.select(t.operations).where(
                    t.operations.c.chain_id == chain_id,
                    t.operations.c.operation_id == operation_id,
                    t.operations.c.status == "pending",
                )
            )
        ).first()

    async def claim_pending(self, chain_id: uuid.UUID, operation_id: uuid.UUID, status: str) -> Any:
        """End a pending operation as `status` and return its row (None: it is not pending):
        `pending_operation` and `finish_operation` in one statement."""
        o = t.operations.c
        result = await self.session.execute(
            sa.update(t.operations)
            .where(o.chain_id == chain_id, o.operation_id == operation_id, o.status == "pending")
            .values(status=status, finished_at=sa.func.now())
            .returning(*t.operations.c)
        )
        return result.first()

    async def operation_voided(self, chain_id: uuid.UUID, operation_id: uuid.UUID) -> bool:
        status = await self.session.scalar(
            sa.select(t.operations.c.status).where(
                t.operations.c.chain_id == chain_id, t.operations.c.operation_id == operation_id
            )
        )
        return status == "voided"

    async def pending_since_before(
        self, cutoff: datetime
    ) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
        """(chain, operation, customer) of every operation pending since before `cutoff`,
        oldest first (the partial index `operations_pending`)."""
        o = t.operations.c
        rows = (
            await self.session.execute(
                sa.select(o.chain_id, o.operation_id, o.customer_id)
                .where(o.status == "pending", o.created_at < cutoff, o.customer_id.is_not(None))
                .order_by(o.created_at)
            )
        ).all()
        return [(r.chain_id, r.operation_id, r.customer_id) for r in rows]

    async def finish_operation(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID, status: str
    ) -> None:
        await self.session.execute(
            sa.update(t.operations)
            .where(t.operations.c.chain_id == chain_id, t.operations.c.operation_id == operation_id)
            .values(status=status, finished_at=sa.func.now())
        )

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
        await self.session.execute(
            sa.insert(t.refusals).values(
                operation_id=operation_id,
                kind=kind,
                chain_id=chain_id,
                customer_id=customer_id,
                code=code,
                detail=detail,
            )
        )

    # ----------------------------------------------------------------- parking

    async def park(
        self, customer_id: uuid.UUID, message_id: uuid.UUID, envelope: dict[str, Any]
    ) -> None:
        await self.session.execute(
            pg_insert(t.parked)
            .values(customer_id=customer_id, message_id=message_id, envelope=envelope)
            .on_conflict_do_nothing()
        )

    async def unpark_next(self, customer_id: uuid.UUID) -> dict[str, Any] | None:
        """The customer's oldest parked command, taken off the queue (one statement; the
        caller holds the customer's lock)."""
        p = t.parked.c
        oldest = (
            sa.select(p.id).where(p.customer_id == customer_id).order_by(p.id).limit(1)
        ).scalar_subquery()
        envelope: dict[str, Any] | None = await self.session.scalar(
            sa.delete(t.parked).where(p.id == oldest).returning(p.envelope)
        )
        return envelope

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
        inserted = await self.session.execute(
            pg_insert(t.overdue_marks)
            .values(
                sale_id=sale_id,
                chain_id=chain_id,
                customer_id=customer_id,
                due_date=due_date,
                detected_at=detected_at,
            )
            .on_conflict_do_nothing()
            .returning(t.overdue_marks.c.sale_id)
        )
        return inserted.first() is not None

    async def settle_mark(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> bool | None:
        """None: never overdue; True: the mark is settled now; False: it was settled before."""
        mark = sa.and_(t.overdue_marks.c.chain_id == chain_id, t.overdue_marks.c.sale_id == sale_id)
        row = (
            await self.session.execute(
                sa.select(t.overdue_marks.c.settled_at).where(mark).with_for_update()
            )
        ).first()
        if row is None:
            return None
        if row.settled_at is not None:
            return False
        await self.session.execute(
            sa.update(t.overdue_marks).where(mark).values(settled_at=sa.func.now())
        )
        return True

    async def unsettled_marks(self, customer_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            (
                await self.session.execute(
                    sa.select(t.overdue_marks.c.sale_id).where(
                        t.overdue_marks.c.customer_id == customer_id,
                        t.overdue_marks.c.settled_at.is_(None),
                    )
                )
            ).scalars()
        )

    async def customers_with_debt(self, chain_id: uuid.UUID) -> list[uuid.UUID]:
        """Customers the scan must look at: open debt, or overdue marks not yet settled."""
        marks = sa.select(t.overdue_marks.c.customer_id).where(
            t.overdue_marks.c.chain_id == chain_id, t.overdue_marks.c.settled_at.is_(None)
        )
        return list(
            (
                await self.session.execute(
                    sa.select(t.customers.c.customer_id).where(
                        t.customers.c.chain_id == chain_id,
                        sa.or_(t.customers.c.debt > 0, t.customers.c.customer_id.in_(marks)),
                    )
                )
            ).scalars()
        )

    async def customer_chain(self, customer_id: uuid.UUID) -> uuid.UUID | None:
        return await self.session.scalar(
            sa.select(t.customers.c.chain_id).where(t.customers.c.customer_id == customer_id)
        )


# --------------------------------------------------------------------------- one-statement SQL

_SALE_COLUMNS = [t.sales.c[n] for n in ("store_id", "terminal_id", "sold_at", "local_date")] + [
    t.sales.c[n] for n in ("due_date", "lines", "payments")
]
_ENTRY_COLUMNS = [t.entries.c[n] for n in ("operation_id", "kind", "amount", "at", "line_no")] + [
    t.entries.c[n] for n in ("payment_id", "method", "quantity")
]


def _nulls(columns: list[sa.Column[Any]]) -> list[Any]:
    return [sa.cast(sa.null(), c.type).label(c.name) for c in columns]


#: a ledger read's row without a sale or an entry (its `ord` and every other column NULL)
_NULLS = [
    sa.cast(sa.null(), sa.BigInteger).label("ord"),
    *_nulls([t.sales.c.sale_id, *_SALE_COLUMNS, *_ENTRY_COLUMNS]),
]


def _ledger_selects(
    chain_id: uuid.UUID, customer_id: uuid.UUID | None, sale_id: uuid.UUID | None
) -> list[Any]:
    """The sales (tag 's', in `seq` order) and the entries (tag 'e', in `id` order) of a
    customer's ledger, or of one anonymous sale's, each of a live operation, as rows of one
    shape (the sale's columns, then the entry's)."""
    s, e, o = t.sales.c, t.entries.c, t.operations.c

    def live(chain: Any, operation_id: Any) -> Any:
        return (
            sa.select(o.operation_id)
            .where(o.chain_id == chain, o.operation_id == operation_id, o.status.in_(LIVE))
            .exists()
        )

    if customer_id is not None:
        sale_filter: Any = s.customer_id == customer_id
        entry_filter: Any = e.customer_id == customer_id
    else:
        sale_filter = sa.and_(s.chain_id == chain_id, s.sale_id == sale_id, s.customer_id.is_(None))
        entry_filter = sa.and_(
            e.chain_id == chain_id, e.sale_id == sale_id, e.customer_id.is_(None)
        )
    sales = sa.select(
        sa.literal_column("'s'").label("tag"),
        s.seq.label("ord"),
        s.sale_id,
        *_SALE_COLUMNS,
        *_nulls(_ENTRY_COLUMNS),
    ).where(sale_filter, live(s.chain_id, s.sale_id))
    entries = sa.select(
        sa.literal_column("'e'").label("tag"),
        e.id.label("ord"),
        e.sale_id,
        *_nulls(_SALE_COLUMNS),
        *_ENTRY_COLUMNS,
    ).where(entry_filter, live(e.chain_id, e.operation_id))
    return [sales, entries]


# Every part runs whatever the others do (as the separate statements did): the sale only when
# there is one, the entries in their order (the identity numbers them), the customer's row only
# for a known customer (COALESCE: a NULL parameter leaves the column as it is).
_RECORD = sa.text(
    "WITH sale AS ("
    " INSERT INTO sales (sale_id, chain_id, customer_id, store_id, terminal_id, sold_at,"
    " local_date, due_date, lines, payments)"
    " SELECT CAST(:sale_id AS uuid), CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " CAST(:store_id AS uuid), CAST(:terminal_id AS uuid), CAST(:sold_at AS timestamptz),"
    " CAST(:local_date AS date), CAST(:due_date AS date), :lines, :payments"
    " WHERE CAST(:sale_id AS uuid) IS NOT NULL),"
    " entry AS ("
    " INSERT INTO entries (operation_id, chain_id, customer_id, kind, amount, at, sale_id,"
    " line_no, payment_id, method, quantity)"
    " SELECT x.operation_id, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid), x.kind,"
    " x.amount, x.at, x.sale_id, x.line_no, x.payment_id, x.method, x.quantity"
    " FROM unnest(CAST(:e_operation_ids AS uuid[]), CAST(:e_kinds AS text[]),"
    " CAST(:e_amounts AS numeric[]), CAST(:e_ats AS timestamptz[]), CAST(:e_sale_ids AS uuid[]),"
    " CAST(:e_line_nos AS integer[]), CAST(:e_payment_ids AS uuid[]), CAST(:e_methods AS text[]),"
    " CAST(:e_quantities AS numeric[])) WITH ORDINALITY"
    " AS x(operation_id, kind, amount, at, sale_id, line_no, payment_id, method, quantity, n)"
    " ORDER BY x.n),"
    " operation AS ("
    " INSERT INTO operations (operation_id, kind, chain_id, customer_id, status, outcome_type,"
    " outcome, meta, correlation_id, finished_at)"
    " VALUES (CAST(:operation_id AS uuid), CAST(:kind AS text), CAST(:chain_id AS uuid),"
    " CAST(:customer_id AS uuid), CAST(:status AS text), CAST(:outcome_type AS text), :outcome,"
    " :meta, CAST(:correlation_id AS uuid),"
    " CASE WHEN CAST(:status AS text) = 'pending' THEN NULL ELSE now() END)"
    " ON CONFLICT DO NOTHING)"
    " UPDATE customers SET in_flight = COALESCE(CAST(:in_flight AS uuid), in_flight),"
    " debt = COALESCE(CAST(:debt AS numeric), debt),"
    " advance = COALESCE(CAST(:advance AS numeric), advance), updated_at = now()"
    " WHERE customer_id = CAST(:customer_id AS uuid)"
).bindparams(
    sa.bindparam("lines", type_=JSONB),
    sa.bindparam("payments", type_=JSONB),
    sa.bindparam("outcome", type_=JSONB),
    sa.bindparam("meta", type_=JSONB),
)


def _record_params(op: OperationRecord) -> dict[str, Any]:
    sale, entries = op.sale, op.entries
    return {
        "operation_id": op.operation_id,
        "kind": op.kind,
        "chain_id": op.chain_id,
        "customer_id": op.customer_id,
        "status": op.status,
        "outcome_type": op.outcome_type,
        "outcome": op.outcome,
        "meta": op.meta,
        "correlation_id": op.correlation_id,
        "in_flight": op.in_flight,
        "debt": op.debt,
        "advance": op.advance,
        **_sale_params(sale),
        **column_arrays(
            entries,
            e_operation_ids="operation_id",
            e_kinds=lambda e: e.kind.value,
            e_amounts="amount",
            e_ats="at",
            e_sale_ids="sale_id",
            e_line_nos="line_no",
            e_payment_ids="payment_id",
            e_methods=lambda e: e.method.value if e.method else None,
            e_quantities="quantity",
        ),
    }


def _sale_params(sale: Sale | None) -> dict[str, Any]:
    if sale is None:
        names = ("sale_id", "store_id", "terminal_id", "sold_at", "local_date", "due_date")
        return {**dict.fromkeys(names), "lines": [], "payments": []}
    return {
        "sale_id": sale.sale_id,
        "store_id": sale.store_id,
        "terminal_id": sale.terminal_id,
        "sold_at": sale.sold_at,
        "local_date": sale.local_date,
        "due_date": sale.due_date,
        "lines": [_line_json(line) for line in sale.lines],
        "payments": [
            {"payment_id": str(p.payment_id), "method": p.method.value, "amount": str(p.amount)}
            for p in sale.payments
        ],
    }


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


def _sale_from_row(row: Any) -> Sale:
    return Sale(
        sale_id=row.sale_id,
        store_id=row.store_id,
        terminal_id=row.terminal_id,
        sold_at=row.sold_at,
        local_date=row.local_date,
        due_date=row.due_date,
        seq=row.ord,
        lines=tuple(
            Line(
                line_no=x["line_no"],
                name=x["name"],
                sku=x["sku"],
                barcode=x["barcode"],
                quantity=Decimal(x["quantity"]),
                unit_price=Decimal(x["unit_price"]),
                discount=Decimal(x["discount"]),
                amount=Decimal(x["amount"]),
            )
            for x in row.lines
        ),
        payments=tuple(
            Payment(uuid.UUID(p["payment_id"]), Method(p["method"]), Decimal(p["amount"]))
            for p in row.payments
        ),
    )


def _entry_from_row(row: Any) -> Entry:
    return Entry(
        operation_id=row.operation_id,
        kind=EntryKind(row.kind),
        amount=row.amount,
        at=row.at,
        sale_id=row.sale_id,
        line_no=row.line_no,
        payment_id=row.payment_id,
        method=Method(row.method) if row.method else None,
        quantity=row.quantity,
    )
