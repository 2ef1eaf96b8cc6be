"""`rm_sales` and `rm_sale_lines`: every customer sale and what each of its lines still owes, as
the projection writes them, and the open lines the card lookup, the balances' overdue flag,
Unpaid goods and Aging read.

Sales and their lines are keyed by (chain_id, sale_id): sale ids are chosen by the POS and
unique within the chain only. Every method works in the caller's session and transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import open_debt
from reporting.adapters import tables as t
from servicekit import sql

#: a line's sale: sale ids are unique within their chain only
_same_sale = sa.and_(
    t.sales.c.chain_id == t.sale_lines.c.chain_id, t.sales.c.sale_id == t.sale_lines.c.sale_id
)


# The projection's writes of a return, a revoked discount and an overdue sale (per event, so
# through `servicekit.sql`: asyncpg on the session's connection; tables unqualified, found on
# the connection's search_path, the rebuild's scratch schema there).
#: the line's `returned_quantity` or `amount` raised by $4
_ADD_TO_LINE = {
    column: f"UPDATE rm_sale_lines SET {column} = {column} + $4::numeric"
    " WHERE chain_id = $1::uuid AND sale_id = $2::uuid AND line_no = $3::integer"
    for column in ("returned_quantity", "amount")
}
_ADD_DISCOUNT_REVOKED = (
    "UPDATE rm_sales SET discount_revoked = discount_revoked + $3::numeric"
    " WHERE chain_id = $1::uuid AND sale_id = $2::uuid"
)
_STORE_OF = "SELECT store_id FROM rm_sales WHERE chain_id = $1::uuid AND sale_id = $2::uuid"
_SET_DUE_DATE_IF_MISSING = (
    "UPDATE rm_sales SET due_date = $3::date"
    " WHERE chain_id = $1::uuid AND sale_id = $2::uuid AND due_date IS NULL"
)


#: the open lines' report order (customer name, customer id, sold at, sale id, line number):
#: `_owed_lines_query` sorts by it and `owed_lines_page`'s keyset compares it
_REPORT_ORDER = (
    sa.func.coalesce(t.customers.c.name, ""),
    t.sale_lines.c.customer_id,
    t.sales.c.sold_at,
    t.sale_lines.c.sale_id,
    t.sale_lines.c.line_no,
)


def _owed_lines_query(chain_id: UUID, store_id: UUID | None, vip_only: bool) -> sa.Select[Any]:
    """The chain's open lines (owed > 0) with their customer and sale, in report order
    (customer name, customer id, sold at, sale id, line number)."""
    stmt = (
        sa.select(
            t.sale_lines.c.customer_id,
            sa.func.coalesce(t.customers.c.name, "").label("customer_name"),
            t.sale_lines.c.sale_id,
            t.sales.c.sold_at,
            t.sales.c.due_date,
            t.sale_lines.c.line_no,
            t.sale_lines.c.name,
            t.sale_lines.c.barcode,
            (t.sale_lines.c.quantity - t.sale_lines.c.returned_quantity).label("quantity"),
            t.sale_lines.c.owed,
        )
        .select_from(
            t.sale_lines.join(t.sales, _same_sale).outerjoin(
                t.customers, t.customers.c.customer_id == t.sale_lines.c.customer_id
            )
        )
        .where(t.sale_lines.c.chain_id == chain_id, t.sale_lines.c.owed > 0)
        .order_by(*_REPORT_ORDER)
    )
    if store_id is not None:
        stmt = stmt.where(t.sales.c.store_id == store_id)
    if vip_only:
        stmt = stmt.where(t.customers.c.vip.is_(True))
    return stmt


class Sales:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ----------------------------------------------------------------------- written

    async def add_to_line(
        self, chain_id: UUID, sale_id: UUID, line_no: int, column: str, amount: Decimal
    ) -> None:
        """`column` (`returned_quantity`, `amount`) of the line raised by `amount`."""
        await sql.execute(self.session, _ADD_TO_LINE[column], chain_id, sale_id, line_no, amount)

    async def add_discount_revoked(self, chain_id: UUID, sale_id: UUID, amount: Decimal) -> None:
        await sql.execute(self.session, _ADD_DISCOUNT_REVOKED, chain_id, sale_id, amount)

    async def store_of(self, chain_id: UUID, sale_id: UUID) -> UUID | None:
        store_id: UUID | None = await sql.fetchval(self.session, _STORE_OF, chain_id, sale_id)
        return store_id

    async def set_due_date_if_missing(self, chain_id: UUID, sale_id: UUID, due: date) -> None:
        await sql.execute(self.session, _SET_DUE_DATE_IF_MISSING, chain_id, sale_id, due)

    # ----------------------------------------------------------------------- read

    async def overdue_customers(
        self, chain_id: UUID, customer_ids: Sequence[UUID], today: date
    ) -> set[UUID]:
        """Those of the customers with an open line of a sale due before `today`."""
        return set(
            (
                await self.session.execute(
                    sa.select(t.sale_lines.c.customer_id)
                    .join(t.sales, _same_sale)
                    .where(
                        t.sale_lines.c.chain_id == chain_id,
                        t.sale_lines.c.customer_id.in_(customer_ids),
                        t.sale_lines.c.owed > 0,
                        t.sales.c.due_date < today,
                    )
                    .distinct()
                )
            ).scalars()
        )

    async def open_lines_of(self, chain_id: UUID, customer_id: UUID) -> Sequence[Any]:
        """The customer's open lines with their sale, in sale (sold at, id) and line order."""
        return (
            await self.session.execute(
                sa.select(
                    t.sales.c.sale_id,
                    t.sales.c.sold_at,
                    t.sales.c.due_date,
                    t.sale_lines.c.line_no,
                    t.sale_lines.c.name,
                    t.sale_lines.c.barcode,
                    t.sale_lines.c.owed,
                )
                .join(t.sales, _same_sale)
                .where(
                    t.sale_lines.c.chain_id == chain_id,
                    t.sale_lines.c.customer_id == customer_id,
                    t.sale_lines.c.owed > 0,
                )
                .order_by(t.sales.c.sold_at, t.sales.c.sale_id, t.sale_lines.c.line_no)
            )
        ).all()

    async def owed_lines(
        self, chain_id: UUID, store_id: UUID | None, vip_only: bool
    ) -> Sequence[Any]:
        """Every open line of the chain (of the store, of VIP customers) in report order:
        (customer_id, customer_name, sale_id, sold_at, due_date, line_no, name, barcode,
        quantity, owed)."""
        query = _owed_lines_query(chain_id, store_id, vip_only)
        rows: Sequence[Any] = (await self.session.execute(query)).all()
        return rows

    async def owed_lines_page(
        self,
        chain_id: UUID,
        store_id: UUID | None,
        vip_only: bool,
        after: tuple[str, UUID, datetime, UUID, int] | None,
        limit: int,
    ) -> Sequence[Any]:
        """Up to `limit` of `owed_lines` after `after` (customer name, customer id, sold at,
        sale id, line number), read for the customers they can belong to only: the cursor's
        own, whose lines may go on, and the next `limit` from `rm_open_debt` in name order
        (each has at least one open line)."""
        stmt = _owed_lines_query(chain_id, store_id, vip_only)
        from_ = None if after is None else (after[0], after[1])
        candidates = open_debt.page_customers_query(chain_id, store_id, vip_only, from_, limit + 1)
        stmt = stmt.where(t.sale_lines.c.customer_id.in_(candidates.scalar_subquery()))
        if after is not None:
            name, customer_id, sold_at, sale_id, line_no = after
            stmt = stmt.where(
                sa.tuple_(*_REPORT_ORDER)
                > sa.tuple_(
                    sa.literal(name, sa.Text),
                    sa.literal(customer_id, t.sale_lines.c.customer_id.type),
                    sa.literal(sold_at, t.sales.c.sold_at.type),
                    sa.literal(sale_id, t.sale_lines.c.sale_id.type),
                    sa.literal(line_no, sa.Integer),
                )
            )
        rows: Sequence[Any] = (await self.session.execute(stmt.limit(limit))).all()
        return rows
