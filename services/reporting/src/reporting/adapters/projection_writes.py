"""The projection's writes of one money or bonus event, each one statement (issue 14).

SQLAlchemy statement building and asyncpg round trips are most of the projection's CPU, so what
an event changes in `rm_sales`, `rm_sale_lines`, `rm_balances` and `rm_movements` goes in one
data-modifying CTE instead of a statement per table and row, sent through `servicekit.sql`
(asyncpg on the session's connection and transaction, none of SQLAlchemy's per-statement work).
The texts do not depend on the number of lines, so each is prepared once per connection. Table
names are unqualified: the rebuild runs the same projection over a scratch engine whose
connections have its scratch schema as their `search_path`, and these statements go over those
very connections.

Every function works in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from servicekit import sql
from servicekit.db import column_arrays

MOVEMENT_COLUMNS = (
    "message_id, seq, chain_id, customer_id, store_id, at, kind, sale_id, payment_id,"
    " description, goods, payments, debt_change, advance_change, bonus_change, bonus_kind,"
    " bonus_amount, bonus_movement_id"
)

# A credit event: its sale and lines (none when the sale id $5 is null), what older lines still
# owe, credit's balances after it, and its movement with the debt and advance changes.
# $1 chain_id, $2 customer_id, $3 debt, $4 advance (credit's, after the event); the sale:
# $5 sale_id, $6 store_id, $7 sold_at, $8 due_date, $9 total; its lines, one array per column:
# $10 line_no, $11 sku, $12 barcode, $13 name, $14 quantity, $15 amount, $16 owed, and $17 the
# line numbers whose owed amount the event sets; the older lines: $18 sale_id, $19 line_no,
# $20 owed; the movement: $21 message_id, $22 store_id, $23 at, $24 kind, $25 sale_id,
# $26 payment_id, $27 description, $28 goods, $29 payments.
# `old` locks the customer's balances row and reads it before the upsert changes it: the upsert
# and the movement read from `old`, so it is evaluated first (a row locked by another
# transaction is read as that one committed it). A customer seen for the first time has no row:
# the upsert creates it, and the changes are from 0 (the columns' defaults). Two credit events of
# one customer never race for that first row (they come in order from one partition); a bonus
# movement creating it meanwhile sets only the bonus balance, which this upsert leaves alone.
# A line of the sale that was stored before (a sale event delivered again under another message
# id) only takes the owed amount the event names for it, as a separate update would.
_CREDIT_EVENT = (
    "WITH old AS ("
    " SELECT debt, advance FROM rm_balances WHERE customer_id = $2::uuid FOR UPDATE),"
    " before AS (SELECT coalesce(max(o.debt), 0) AS debt, coalesce(max(o.advance), 0) AS advance"
    " FROM old o),"
    " sale AS ("
    " INSERT INTO rm_sales (sale_id, chain_id, customer_id, store_id, sold_at, due_date, total)"
    " SELECT $5::uuid, $1::uuid, $2::uuid, $6::uuid, $7::timestamptz, $8::date, $9::numeric"
    " WHERE $5::uuid IS NOT NULL"
    " ON CONFLICT DO NOTHING),"
    " line AS ("
    " INSERT INTO rm_sale_lines AS l (sale_id, line_no, chain_id, customer_id, sku, barcode,"
    " name, quantity, amount, owed)"
    " SELECT $5::uuid, x.line_no, $1::uuid, $2::uuid, x.sku, x.barcode, x.name, x.quantity,"
    " x.amount, x.owed"
    " FROM unnest($10::integer[], $11::text[], $12::text[], $13::text[], $14::numeric[],"
    " $15::numeric[], $16::numeric[]) AS x(line_no, sku, barcode, name, quantity, amount, owed)"
    " ON CONFLICT (chain_id, sale_id, line_no) DO UPDATE SET owed = excluded.owed"
    " WHERE excluded.line_no = ANY($17::integer[])),"
    " owed AS ("
    " UPDATE rm_sale_lines l SET owed = x.owed"
    " FROM unnest($18::uuid[], $19::integer[], $20::numeric[]) AS x(sale_id, line_no, owed)"
    " WHERE l.chain_id = $1::uuid AND l.sale_id = x.sale_id AND l.line_no = x.line_no"
    " RETURNING l.sale_id, l.line_no),"
    " balance AS ("
    " INSERT INTO rm_balances AS b (customer_id, chain_id, debt, advance)"
    " SELECT $2::uuid, $1::uuid, $3::numeric, $4::numeric FROM before"
    " ON CONFLICT (customer_id) DO UPDATE SET debt = excluded.debt, advance = excluded.advance),"
    " movement AS ("
    f" INSERT INTO rm_movements ({MOVEMENT_COLUMNS})"
    " SELECT $21::uuid, 0, $1::uuid, $2::uuid, $22::uuid, $23::timestamptz, $24::text,"
    " $25::uuid, $26::uuid, $27::text, $28::numeric, $29::numeric,"
    " $3::numeric - b.debt, $4::numeric - b.advance, 0, NULL, 0, NULL"
    " FROM before b"
    " ON CONFLICT DO NOTHING)"
    " SELECT b.debt, b.advance,"
    " (SELECT array_agg(o.sale_id) FROM owed o) AS owed_sale_ids,"
    " (SELECT array_agg(o.line_no) FROM owed o) AS owed_line_nos"
    " FROM before b"
)

# A bonus movement: the bonus balance moved by it (the row created on first sight) and the
# movement, one statement; the upsert takes the customer's row lock as the credit events do.
# $1 message_id, $2 chain_id, $3 customer_id, $4 store_id, $5 at, $6 kind, $7 sale_id,
# $8 payment_id, $9 description, $10 bonus_change, $11 bonus_kind, $12 bonus_amount,
# $13 bonus_movement_id (the order of `BONUS_PARAMS`).
_BONUS_EVENT = (
    "WITH balance AS ("
    " INSERT INTO rm_balances AS b (customer_id, chain_id, bonus_balance)"
    " VALUES ($3::uuid, $2::uuid, $10::numeric)"
    " ON CONFLICT (customer_id) DO UPDATE"
    " SET bonus_balance = b.bonus_balance + excluded.bonus_balance)"
    f" INSERT INTO rm_movements ({MOVEMENT_COLUMNS})"
    " VALUES ($1::uuid, 0, $2::uuid, $3::uuid, $4::uuid, $5::timestamptz, $6::text, $7::uuid,"
    " $8::uuid, $9::text, 0, 0, 0, 0, $10::numeric, $11::text, $12::numeric, $13::uuid)"
    " ON CONFLICT DO NOTHING"
)
BONUS_PARAMS = (
    "message_id",
    "chain_id",
    "customer_id",
    "store_id",
    "at",
    "kind",
    "sale_id",
    "payment_id",
    "description",
    "bonus_change",
    "bonus_kind",
    "bonus_amount",
    "bonus_movement_id",
)


@dataclass(frozen=True)
class SaleRow:
    """A sale as `rm_sales` keeps it, with its lines (objects with `line_no`, `sku`,
    `barcode`, `name`, `quantity`, `amount`, `owed`)."""

    sale_id: UUID
    store_id: UUID
    sold_at: datetime
    due_date: date | None
    total: Decimal
    lines: list[Any]


@dataclass(frozen=True)
class CreditMovement:
    """One `rm_movements` row of a credit event (the debt and advance changes come from the
    balances it replaces)."""

    message_id: UUID
    store_id: UUID | None
    at: datetime
    kind: str
    description: str
    sale_id: UUID | None = None
    payment_id: UUID | None = None
    goods: Decimal = Decimal(0)
    payments: Decimal = Decimal(0)


@dataclass(frozen=True)
class CreditWritten:
    """What `write_credit_event` changed: the debt and advance changes of the movement, and the
    (sale_id, line_no) of the older lines whose owed amount it set."""

    debt_change: Decimal
    advance_change: Decimal
    owed_set: set[tuple[UUID, int]]


async def write_credit_event(
    db: sql.Db,
    *,
    chain_id: UUID,
    customer_id: UUID,
    debt: Decimal,
    advance: Decimal,
    movement: CreditMovement,
    owed: list[tuple[UUID, int, Decimal]],
    sale: SaleRow | None = None,
    sale_owed_changed: list[int] | None = None,
) -> CreditWritten:
    """One statement: `sale` and its lines (if any; `sale_owed_changed` the line numbers whose
    owed amount the event sets), `owed` (sale_id, line_no, owed after) of lines stored before,
    credit's `debt` and `advance` after the event, and its movement."""
    row = await sql.fetchrow(
        db,
        _CREDIT_EVENT,
        chain_id,
        customer_id,
        debt,
        advance,
        *_sale_params(sale, sale_owed_changed or []),
        [sale_id for sale_id, _, _ in owed],
        [line_no for _, line_no, _ in owed],
        [amount for _, _, amount in owed],
        movement.message_id,
        movement.store_id,
        movement.at,
        movement.kind,
        movement.sale_id,
        movement.payment_id,
        movement.description,
        movement.goods,
        movement.payments,
    )
    assert row is not None  # `before` is one row
    owed_set = set(zip(row["owed_sale_ids"] or (), row["owed_line_nos"] or (), strict=True))
    return CreditWritten(debt - row["debt"], advance - row["advance"], owed_set)


def _sale_params(sale: SaleRow | None, owed_changed: list[int]) -> list[Any]:
    """$5 to $17 of `_CREDIT_EVENT`: the sale, its lines' columns, the lines whose owed
    amount the event sets."""
    if sale is None:
        return [None] * 5 + [[]] * 7 + [owed_changed]
    lines = column_arrays(
        sale.lines,
        line_no="line_no",
        sku="sku",
        barcode="barcode",
        name="name",
        quantity="quantity",
        amount="amount",
        owed="owed",
    )
    head = [sale.sale_id, sale.store_id, sale.sold_at, sale.due_date, sale.total]
    return [*head, *lines.values(), owed_changed]


async def write_bonus_event(db: sql.Db, **values: Any) -> None:
    """One statement: the customer's bonus balance moved by `bonus_change` and the movement
    (`message_id`, `chain_id`, `customer_id`, `store_id`, `at`, `kind`, `sale_id`,
    `payment_id`, `description`, `bonus_change`, `bonus_kind`, `bonus_amount`,
    `bonus_movement_id`)."""
    await sql.execute(db, _BONUS_EVENT, *(values[name] for name in BONUS_PARAMS))
