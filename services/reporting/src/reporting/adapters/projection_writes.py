"""The projection's writes of one money or bonus event, each one statement (issue 14).

SQLAlchemy statement building and asyncpg round trips are most of the projection's CPU, so what
an event changes in `rm_sales`, `rm_sale_lines`, `rm_balances` and `rm_movements` goes in one
data-modifying CTE instead of a statement per table and row. The texts do not depend on the
number of lines, so each is prepared once per connection. Table names are unqualified: the
rebuild runs the same projection with its scratch schema first on the search path.

Every function works in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import column_arrays

_MOVEMENT_COLUMNS = (
    "message_id, seq, chain_id, customer_id, store_id, at, kind, sale_id, payment_id,"
    " description, goods, payments, debt_change, advance_change, bonus_change, bonus_kind,"
    " bonus_amount, bonus_movement_id"
)

# A credit event: its sale and lines (none when :sale_id is null), what older lines still owe,
# credit's balances after it, and its movement with the debt and advance changes.
# `old` locks the customer's balances row and reads it before the upsert changes it: the upsert
# and the movement read from `old`, so it is evaluated first (a row locked by another
# transaction is read as that one committed it). A customer seen for the first time has no row:
# the upsert creates it, and the changes are from 0 (the columns' defaults). Two credit events of
# one customer never race for that first row (they come in order from one partition); a bonus
# movement creating it meanwhile sets only the bonus balance, which this upsert leaves alone.
# A line of the sale that was stored before (a sale event delivered again under another message
# id) only takes the owed amount the event names for it, as a separate update would.
_CREDIT_EVENT = sa.text(
    "WITH old AS ("
    " SELECT debt, advance FROM rm_balances WHERE customer_id = CAST(:customer_id AS uuid)"
    " FOR UPDATE),"
    " before AS (SELECT coalesce(max(o.debt), 0) AS debt, coalesce(max(o.advance), 0) AS advance"
    " FROM old o),"
    " sale AS ("
    " INSERT INTO rm_sales (sale_id, chain_id, customer_id, store_id, sold_at, due_date, total)"
    " SELECT CAST(:sale_id AS uuid), CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " CAST(:store_id AS uuid), CAST(:sold_at AS timestamptz), CAST(:due_date AS date),"
    " CAST(:total AS numeric)"
    " WHERE CAST(:sale_id AS uuid) IS NOT NULL"
    " ON CONFLICT DO NOTHING),"
    " line AS ("
    " INSERT INTO rm_sale_lines AS l (sale_id, line_no, chain_id, customer_id, sku, barcode,"
    " name, quantity, amount, owed)"
    " SELECT CAST(:sale_id AS uuid), x.line_no, CAST(:chain_id AS uuid),"
    " CAST(:customer_id AS uuid), x.sku, x.barcode, x.name, x.quantity, x.amount, x.owed"
    " FROM unnest(CAST(:l_line_nos AS integer[]), CAST(:l_skus AS text[]),"
    " CAST(:l_barcodes AS text[]), CAST(:l_names AS text[]), CAST(:l_quantities AS numeric[]),"
    " CAST(:l_amounts AS numeric[]), CAST(:l_owed AS numeric[]))"
    " AS x(line_no, sku, barcode, name, quantity, amount, owed)"
    " ON CONFLICT (chain_id, sale_id, line_no) DO UPDATE SET owed = excluded.owed"
    " WHERE excluded.line_no = ANY(CAST(:l_owed_changed AS integer[]))),"
    " owed AS ("
    " UPDATE rm_sale_lines l SET owed = x.owed"
    " FROM unnest(CAST(:o_sale_ids AS uuid[]), CAST(:o_line_nos AS integer[]),"
    " CAST(:o_owed AS numeric[])) AS x(sale_id, line_no, owed)"
    " WHERE l.chain_id = CAST(:chain_id AS uuid) AND l.sale_id = x.sale_id"
    " AND l.line_no = x.line_no"
    " RETURNING l.sale_id, l.line_no),"
    " balance AS ("
    " INSERT INTO rm_balances AS b (customer_id, chain_id, debt, advance)"
    " SELECT CAST(:customer_id AS uuid), CAST(:chain_id AS uuid), CAST(:debt AS numeric),"
    " CAST(:advance AS numeric) FROM before"
    " ON CONFLICT (customer_id) DO UPDATE SET debt = excluded.debt, advance = excluded.advance),"
    " movement AS ("
    f" INSERT INTO rm_movements ({_MOVEMENT_COLUMNS})"
    " SELECT CAST(:message_id AS uuid), 0, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " CAST(:m_store_id AS uuid), CAST(:at AS timestamptz), CAST(:kind AS text),"
    " CAST(:m_sale_id AS uuid), CAST(:payment_id AS uuid), CAST(:description AS text),"
    " CAST(:goods AS numeric), CAST(:payments AS numeric),"
    " CAST(:debt AS numeric) - b.debt, CAST(:advance AS numeric) - b.advance, 0, NULL, 0, NULL"
    " FROM before b"
    " ON CONFLICT DO NOTHING)"
    " SELECT b.debt, b.advance,"
    " (SELECT array_agg(o.sale_id) FROM owed o) AS owed_sale_ids,"
    " (SELECT array_agg(o.line_no) FROM owed o) AS owed_line_nos"
    " FROM before b"
).columns(
    sa.column("debt", sa.Numeric),
    sa.column("advance", sa.Numeric),
    sa.column("owed_sale_ids", sa.ARRAY(PG_UUID(as_uuid=True))),
    sa.column("owed_line_nos", sa.ARRAY(sa.Integer)),
)

# A bonus movement: the bonus balance moved by it (the row created on first sight) and the
# movement, one statement; the upsert takes the customer's row lock as the credit events do.
_BONUS_EVENT = sa.text(
    "WITH balance AS ("
    " INSERT INTO rm_balances AS b (customer_id, chain_id, bonus_balance)"
    " VALUES (CAST(:customer_id AS uuid), CAST(:chain_id AS uuid), CAST(:bonus_change AS numeric))"
    " ON CONFLICT (customer_id) DO UPDATE"
    " SET bonus_balance = b.bonus_balance + excluded.bonus_balance)"
    f" INSERT INTO rm_movements ({_MOVEMENT_COLUMNS})"
    " VALUES (CAST(:message_id AS uuid), 0, CAST(:chain_id AS uuid), CAST(:customer_id AS uuid),"
    " CAST(:store_id AS uuid), CAST(:at AS timestamptz), CAST(:kind AS text),"
    " CAST(:sale_id AS uuid), CAST(:payment_id AS uuid), CAST(:description AS text), 0, 0, 0, 0,"
    " CAST(:bonus_change AS numeric), CAST(:bonus_kind AS text), CAST(:bonus_amount AS numeric),"
    " CAST(:bonus_movement_id AS uuid))"
    " ON CONFLICT DO NOTHING"
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
    session: AsyncSession,
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
    row = (
        await session.execute(
            _CREDIT_EVENT,
            {
                "chain_id": chain_id,
                "customer_id": customer_id,
                "debt": debt,
                "advance": advance,
                **_sale_params(sale, sale_owed_changed or []),
                "o_sale_ids": [sale_id for sale_id, _, _ in owed],
                "o_line_nos": [line_no for _, line_no, _ in owed],
                "o_owed": [amount for _, _, amount in owed],
                "message_id": movement.message_id,
                "m_store_id": movement.store_id,
                "at": movement.at,
                "kind": movement.kind,
                "m_sale_id": movement.sale_id,
                "payment_id": movement.payment_id,
                "description": movement.description,
                "goods": movement.goods,
                "payments": movement.payments,
            },
        )
    ).one()
    owed_set = set(zip(row.owed_sale_ids or (), row.owed_line_nos or (), strict=True))
    return CreditWritten(debt - row.debt, advance - row.advance, owed_set)


def _sale_params(sale: SaleRow | None, owed_changed: list[int]) -> dict[str, Any]:
    lines = sale.lines if sale is not None else []
    return {
        "sale_id": sale.sale_id if sale is not None else None,
        "store_id": sale.store_id if sale is not None else None,
        "sold_at": sale.sold_at if sale is not None else None,
        "due_date": sale.due_date if sale is not None else None,
        "total": sale.total if sale is not None else None,
        **column_arrays(
            lines,
            l_line_nos="line_no",
            l_skus="sku",
            l_barcodes="barcode",
            l_names="name",
            l_quantities="quantity",
            l_amounts="amount",
            l_owed="owed",
        ),
        "l_owed_changed": owed_changed,
    }


async def write_bonus_event(session: AsyncSession, **values: Any) -> None:
    """One statement: the customer's bonus balance moved by `bonus_change` and the movement
    (`message_id`, `chain_id`, `customer_id`, `store_id`, `at`, `kind`, `sale_id`,
    `payment_id`, `description`, `bonus_change`, `bonus_kind`, `bonus_amount`,
    `bonus_movement_id`)."""
    await session.execute(_BONUS_EVENT, values)
