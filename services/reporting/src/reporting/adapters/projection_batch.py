"""The projection's money and bonus writes of a whole consumed batch, one statement per table
(issue 14, "batch at a time").

On the consumer's fast path (`MessageContext.batched`) the handlers of credit's money events
and loyalty's bonus movements do not write: they leave their write here (`defer_credit_event`,
`defer_bonus_event`, in the batch's order), and the consumer's `before_commit` writes them all
(`flush`) in one statement: the balances of all the batch's customers locked in customer
order, then the sales, their lines, the owed amounts of lines stored before, the balances and the
movements, each one multi-row write. The statement-level triggers that keep the report sums
(`open_debt`, `credit_ledger`) then run once per batch instead of once per event.

It writes what the per-event statements of `projection_writes` would, in the batch's order:
- a credit movement's debt and advance changes are credit's balances after it minus those after
  the customer's previous event (in the batch, else as stored; none stored: 0);
- a line stored by an earlier event of the batch takes a later event's owed amount in the insert
  itself; an owed amount changed twice takes the last;
- a bonus movement adds to the bonus balance, whatever comes before or after it.

A sale twice in a batch (delivered again under another message id) is inserted once; its second
event sets only the owed amounts it names, as the per-event statement's conflict clause does. Any
other handler of the projection writes what is pending first
(`service_layer.handlers.flushing`), so whatever it reads or changes comes after it. On the
slow path (a savepoint per message) the handlers write at once, as before.

Table names are unqualified, as in `projection_writes`: the rebuild runs the same consumer over
its scratch schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from reporting.adapters.projection_writes import (
    BONUS_PARAMS,
    MOVEMENT_COLUMNS,
    CreditMovement,
    CreditWritten,
    SaleRow,
)
from servicekit import sql

_PENDING = "reporting.pending_writes"
ZERO = Decimal(0)

#: Every write of a batch: one statement, one array per column.
#: - credit events, in the batch's order ($1-$13): message_id, customer_id, debt and advance
#:   (credit's, after the event), chain_id, store_id, at, kind, sale_id, payment_id,
#:   description, goods, payments. `old` locks the balances of all the batch's customers first
#:   ($14, sorted: two instances never wait on each other in opposite orders, whatever their
#:   events) and reads them before the upserts change them (the upserts and the movements read
#:   from `changes`, which reads `old`, so it is evaluated first). `changes`: each credit event's
#:   debt and advance minus those after the customer's previous event of the batch, else as
#:   stored, else 0;
#: - sales $15-$21; their lines $22-$31;
#: - owed amounts of lines stored before $32-$35: `owed` updates only rows stored before this
#:   statement (the sibling inserts' rows are not in its snapshot), so a sale delivered again
#:   keeps its lines and takes the owed amounts its event sets, as the per-event statement's
#:   conflict clause does;
#: - the balances after the batch of the customers with credit events, with their bonus change
#:   ($36-$40), and of those with bonus movements only ($41-$43);
#: - bonus movements ($44-$56): message_id, chain_id, customer_id, store_id, at, kind, sale_id,
#:   payment_id, description, bonus_change, bonus_kind, bonus_amount, bonus_movement_id.
#: It returns the lines `owed` found ('o') and each credit event's changes ('c').
_WRITE_BATCH = (
    "WITH x AS ("
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::numeric[], $4::numeric[], $5::uuid[],"
    " $6::uuid[], $7::timestamptz[], $8::text[], $9::uuid[], $10::uuid[], $11::text[],"
    " $12::numeric[], $13::numeric[]) WITH ORDINALITY AS x(message_id, customer_id, debt,"
    " advance, chain_id, store_id, at, kind, sale_id, payment_id, description, goods, payments,"
    " ord)),"
    " old AS MATERIALIZED ("
    " SELECT customer_id, debt, advance FROM rm_balances"
    " WHERE customer_id = ANY($14::uuid[]) ORDER BY customer_id FOR UPDATE),"
    " changes AS MATERIALIZED ("
    " SELECT x.message_id,"
    " x.debt - coalesce(lag(x.debt) OVER w, o.debt, 0) AS debt_change,"
    " x.advance - coalesce(lag(x.advance) OVER w, o.advance, 0) AS advance_change"
    " FROM x LEFT JOIN old o ON o.customer_id = x.customer_id"
    " WINDOW w AS (PARTITION BY x.customer_id ORDER BY x.ord)),"
    " sale AS ("
    " INSERT INTO rm_sales (sale_id, chain_id, customer_id, store_id, sold_at, due_date, total)"
    " SELECT * FROM unnest($15::uuid[], $16::uuid[], $17::uuid[], $18::uuid[],"
    " $19::timestamptz[], $20::date[], $21::numeric[])"
    " ON CONFLICT DO NOTHING),"
    " line AS ("
    " INSERT INTO rm_sale_lines (sale_id, line_no, chain_id, customer_id, sku, barcode, name,"
    " quantity, amount, owed)"
    " SELECT * FROM unnest($22::uuid[], $23::integer[], $24::uuid[], $25::uuid[], $26::text[],"
    " $27::text[], $28::text[], $29::numeric[], $30::numeric[], $31::numeric[])"
    " ON CONFLICT DO NOTHING),"
    " owed AS ("
    " UPDATE rm_sale_lines l SET owed = u.owed"
    " FROM unnest($32::uuid[], $33::uuid[], $34::integer[], $35::numeric[])"
    " AS u(chain_id, sale_id, line_no, owed)"
    " WHERE l.chain_id = u.chain_id AND l.sale_id = u.sale_id AND l.line_no = u.line_no"
    " RETURNING l.chain_id, l.sale_id, l.line_no),"
    " credit_balance AS ("
    " INSERT INTO rm_balances AS b (customer_id, chain_id, debt, advance, bonus_balance)"
    " SELECT u.* FROM unnest($36::uuid[], $37::uuid[], $38::numeric[], $39::numeric[],"
    " $40::numeric[]) AS u, (SELECT count(*) FROM changes) AS after_old"
    " ON CONFLICT (customer_id) DO UPDATE SET debt = excluded.debt,"
    " advance = excluded.advance, bonus_balance = b.bonus_balance + excluded.bonus_balance),"
    " bonus_balance AS ("
    " INSERT INTO rm_balances AS b (customer_id, chain_id, bonus_balance)"
    " SELECT u.* FROM unnest($41::uuid[], $42::uuid[], $43::numeric[]) AS u,"
    " (SELECT count(*) FROM old) AS after_old"
    " ON CONFLICT (customer_id) DO UPDATE"
    " SET bonus_balance = b.bonus_balance + excluded.bonus_balance),"
    " movement AS ("
    f" INSERT INTO rm_movements ({MOVEMENT_COLUMNS})"
    " SELECT x.message_id, 0, x.chain_id, x.customer_id, x.store_id, x.at, x.kind, x.sale_id,"
    " x.payment_id, x.description, x.goods, x.payments, c.debt_change, c.advance_change, 0,"
    " NULL, 0, NULL"
    " FROM x JOIN changes c ON c.message_id = x.message_id"
    " UNION ALL"
    " SELECT u.message_id, 0, u.chain_id, u.customer_id, u.store_id, u.at, u.kind, u.sale_id,"
    " u.payment_id, u.description, 0, 0, 0, 0, u.bonus_change, u.bonus_kind, u.bonus_amount,"
    " u.bonus_movement_id"
    " FROM unnest($44::uuid[], $45::uuid[], $46::uuid[], $47::uuid[], $48::timestamptz[],"
    " $49::text[], $50::uuid[], $51::uuid[], $52::text[], $53::numeric[], $54::text[],"
    " $55::numeric[], $56::uuid[]) AS u(message_id, chain_id, customer_id, store_id, at, kind,"
    " sale_id, payment_id, description, bonus_change, bonus_kind, bonus_amount,"
    " bonus_movement_id)"
    " ON CONFLICT DO NOTHING)"
    " SELECT 'o' AS tag, chain_id, sale_id, line_no, NULL::uuid AS message_id,"
    " NULL::numeric AS debt_change, NULL::numeric AS advance_change FROM owed"
    " UNION ALL SELECT 'c', NULL, NULL, NULL, message_id, debt_change, advance_change"
    " FROM changes"
)


@dataclass
class _CreditWrite:
    chain_id: UUID
    customer_id: UUID
    debt: Decimal
    advance: Decimal
    movement: CreditMovement
    owed: list[tuple[UUID, int, Decimal]]
    done: Callable[[CreditWritten], None]
    sale: SaleRow | None = None
    sale_owed_changed: list[int] = field(default_factory=list)


@dataclass
class _BonusWrite:
    values: dict[str, Any]


@dataclass
class _Batch:
    """The columns of `_WRITE_BATCH`, filled event by event."""

    credit: list[tuple[Any, ...]] = field(default_factory=list)
    sales: list[tuple[Any, ...]] = field(default_factory=list)
    sale_keys: set[tuple[UUID, UUID]] = field(default_factory=set)
    lines: dict[tuple[UUID, UUID, int], list[Any]] = field(default_factory=dict)
    owed: dict[tuple[UUID, UUID, int], Decimal] = field(default_factory=dict)
    #: per customer with credit events: (chain, debt, advance) after their last one
    credit_balances: dict[UUID, tuple[UUID, Decimal, Decimal]] = field(default_factory=dict)
    #: per customer with bonus movements: (chain, the bonus balance's change)
    bonus_changes: dict[UUID, tuple[UUID, Decimal]] = field(default_factory=dict)
    bonus: list[tuple[Any, ...]] = field(default_factory=list)


async def defer_credit_event(
    db: sql.Db, *, done: Callable[[CreditWritten], None], **write: Any
) -> None:
    """`projection_writes.write_credit_event(session, **write)` at `flush`; `done` gets what it
    wrote. (A coroutine, as the write it stands for: the handlers call either.)"""
    _pending(db).append(_CreditWrite(done=done, **write))


async def defer_bonus_event(db: sql.Db, **values: Any) -> None:
    """`projection_writes.write_bonus_event(session, **values)` at `flush`."""
    _pending(db).append(_BonusWrite(values))


def _pending(db: sql.Db) -> list[_CreditWrite | _BonusWrite]:
    pending: list[_CreditWrite | _BonusWrite] = sql.info_of(db).setdefault(_PENDING, [])
    return pending


async def flush(db: sql.Db) -> None:
    """Write what the batch's handlers left, in their order (nothing pending: no statement)."""
    writes: list[_CreditWrite | _BonusWrite] = sql.info_of(db).pop(_PENDING, [])
    if not writes:
        return
    batch = _Batch()
    found: list[set[tuple[UUID, int]]] = []
    for w in writes:
        if isinstance(w, _BonusWrite):
            _add_bonus(batch, w.values)
        else:
            found.append(_add_credit(batch, w))
    rows = await sql.fetch(db, _WRITE_BATCH, *_parameters(batch))
    updated = {(r["chain_id"], r["sale_id"], r["line_no"]) for r in rows if r["tag"] == "o"}
    changes = {r["message_id"]: r for r in rows if r["tag"] == "c"}
    credit = [w for w in writes if isinstance(w, _CreditWrite)]
    for w, own in zip(credit, found, strict=True):
        change = changes[w.movement.message_id]
        own |= {(s, n) for s, n, _ in w.owed if (w.chain_id, s, n) in updated}
        w.done(CreditWritten(change["debt_change"], change["advance_change"], own))


def _add_credit(batch: _Batch, w: _CreditWrite) -> set[tuple[UUID, int]]:
    """One credit event into the batch's columns; the older lines it found among the batch's
    own (the others are found by the statement)."""
    chain = w.chain_id
    m = w.movement
    head = (m.message_id, w.customer_id, w.debt, w.advance, chain, m.store_id, m.at, m.kind)
    batch.credit.append((*head, m.sale_id, m.payment_id, m.description, m.goods, m.payments))
    if w.sale is not None:
        _add_sale(batch, w)
    found: set[tuple[UUID, int]] = set()
    for sale_id, line_no, owed in w.owed:
        key = (chain, sale_id, line_no)
        # a line stored before the batch takes it by the update (the last event's amount)
        batch.owed[key] = owed
        if key in batch.lines:
            # the line of a sale of an earlier event of the batch takes it in its insert
            batch.lines[key][-1] = owed
            found.add((sale_id, line_no))
    batch.credit_balances[w.customer_id] = (chain, w.debt, w.advance)
    return found


def _add_sale(batch: _Batch, w: _CreditWrite) -> None:
    """A sale and its lines into the batch's columns. A sale the batch has already (delivered
    again under another message id) is not written twice: like the per-event statement's
    conflict clause, its event sets only the owed amounts it names (`sale_owed_changed`), of
    the lines stored before the batch (by the update) or earlier in it (in their insert)."""
    s, chain = w.sale, w.chain_id
    assert s is not None
    again = (chain, s.sale_id) in batch.sale_keys
    batch.sale_keys.add((chain, s.sale_id))
    if not again:
        batch.sales.append(
            (s.sale_id, chain, w.customer_id, s.store_id, s.sold_at, s.due_date, s.total)
        )
    owed_set = set(w.sale_owed_changed)
    for line in s.lines:
        key = (chain, s.sale_id, line.line_no)
        if line.line_no in owed_set:
            batch.owed[key] = line.owed  # a line stored before this batch: by the update
        if key in batch.lines:
            if line.line_no in owed_set:
                batch.lines[key][-1] = line.owed
            continue
        batch.lines[key] = [
            s.sale_id,
            line.line_no,
            chain,
            w.customer_id,
            line.sku,
            line.barcode,
            line.name,
            line.quantity,
            line.amount,
            line.owed,
        ]


def _add_bonus(batch: _Batch, values: dict[str, Any]) -> None:
    customer = values["customer_id"]
    chain, before = batch.bonus_changes.get(customer, (values["chain_id"], ZERO))
    batch.bonus_changes[customer] = (chain, before + values["bonus_change"])
    # `_WRITE_BATCH`'s bonus movement columns ($44-$56) are `write_bonus_event`'s parameters
    batch.bonus.append(tuple(values[name] for name in BONUS_PARAMS))


def _parameters(batch: _Batch) -> list[list[Any]]:
    """`_WRITE_BATCH`'s arrays, a list per column. A customer with credit events gets their
    bonus change in the credit balances' row: a customer is in one of the two balance writes
    only."""
    credit = [
        (c, chain, debt, advance, batch.bonus_changes.get(c, (chain, ZERO))[1])
        for c, (chain, debt, advance) in sorted(batch.credit_balances.items())
    ]
    bonus_only = [
        (c, chain, change)
        for c, (chain, change) in sorted(batch.bonus_changes.items())
        if c not in batch.credit_balances
    ]
    return [
        *_columns(batch.credit, 13),
        sorted({*batch.credit_balances, *batch.bonus_changes}),
        *_columns(batch.sales, 7),
        *_columns(list(batch.lines.values()), 10),
        *_columns([(*key, owed) for key, owed in batch.owed.items()], 4),
        *_columns(credit, 5),
        *_columns(bonus_only, 3),
        *_columns(batch.bonus, 13),
    ]


def _columns(rows: list[Any], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]
