"""Sales that owe nothing any more are marked `settled`, so a command reads only the others.

A command of a customer reads the sales that may still owe something (`NOT settled`, the
partial index `sales_open`) with their entries, the sales it names (a return, a revocation, a
payment's allocations), and the customer's advance summed in SQL from the advance entries (the
partial index `entries_advance`), instead of every sale and entry the customer ever had.

`settled` is only ever a promise that the sale owes nothing under confirmed operations (its
goods paid or cancelled; nothing can charge a sale that owes nothing): false means "may owe
something", which is always safe to read. The backfill marks the sales of known customers
that owe nothing under confirmed operations and that no pending operation touches.

Rolling update: old instances insert sales with the default (false) and never mark one, which
only makes the new instances read more than they need.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE sales ADD COLUMN settled boolean NOT NULL DEFAULT false")
    op.execute(
        "UPDATE sales s SET settled = true"
        " WHERE s.customer_id IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM operations o WHERE o.chain_id = s.chain_id"
        " AND o.operation_id = s.sale_id AND o.status = 'confirmed')"
        " AND NOT EXISTS (SELECT 1 FROM entries e JOIN operations o"
        " ON o.chain_id = e.chain_id AND o.operation_id = e.operation_id"
        " WHERE e.chain_id = s.chain_id AND e.sale_id = s.sale_id AND o.status = 'pending')"
        " AND NOT EXISTS (SELECT 1 FROM entries e JOIN operations o"
        " ON o.chain_id = e.chain_id AND o.operation_id = e.operation_id"
        " WHERE e.chain_id = s.chain_id AND e.sale_id = s.sale_id AND o.status = 'confirmed'"
        " AND e.kind IN ('goods', 'revoked_discount', 'payment', 'advance_applied',"
        " 'return_cancelled')"
        " GROUP BY e.line_no HAVING sum(CASE WHEN e.kind IN ('goods', 'revoked_discount')"
        " THEN e.amount ELSE -e.amount END) <> 0)"
    )
    op.execute("CREATE INDEX sales_open ON sales (customer_id) WHERE NOT settled")
    op.execute(
        "CREATE INDEX entries_advance ON entries (customer_id)"
        " WHERE kind IN ('advance_in', 'advance_out', 'advance_applied')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX entries_advance")
    op.execute("DROP INDEX sales_open")
    op.execute("ALTER TABLE sales DROP COLUMN settled")
