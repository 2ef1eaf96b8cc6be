"""Operations and sales keyed by (chain_id, id); the pending operations' index.

A POS chooses its sale ids, and the contract makes them unique within the chain only: the same
id in two chains are two sales. The primary keys of `operations`, `sales` and `overdue_marks`
gain the chain, and so do the indexes that find a refusal or a sale's entries by id.
`operations_pending` serves the deadline job (service_layer/deadline.py).

Rolling update: old instances keep working on the new keys (their inserts name no conflict
target, their lookups by id alone still find the row).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE operations DROP CONSTRAINT operations_pkey, "
        "ADD PRIMARY KEY (chain_id, operation_id)"
    )
    op.execute("ALTER TABLE sales DROP CONSTRAINT sales_pkey, ADD PRIMARY KEY (chain_id, sale_id)")
    op.execute(
        "ALTER TABLE overdue_marks DROP CONSTRAINT overdue_marks_pkey, "
        "ADD PRIMARY KEY (chain_id, sale_id)"
    )
    op.execute("DROP INDEX refusals_operation")
    op.execute("CREATE INDEX refusals_operation ON refusals (chain_id, operation_id, kind)")
    op.execute("DROP INDEX entries_sale")
    op.execute("CREATE INDEX entries_sale ON entries (chain_id, sale_id)")
    op.execute(
        "CREATE INDEX operations_pending ON operations (created_at) WHERE status = 'pending'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX operations_pending")
    op.execute("DROP INDEX entries_sale")
    op.execute("CREATE INDEX entries_sale ON entries (sale_id)")
    op.execute("DROP INDEX refusals_operation")
    op.execute("CREATE INDEX refusals_operation ON refusals (operation_id, kind)")
    op.execute(
        "ALTER TABLE overdue_marks DROP CONSTRAINT overdue_marks_pkey, ADD PRIMARY KEY (sale_id)"
    )
    op.execute("ALTER TABLE sales DROP CONSTRAINT sales_pkey, ADD PRIMARY KEY (sale_id)")
    op.execute(
        "ALTER TABLE operations DROP CONSTRAINT operations_pkey, ADD PRIMARY KEY (operation_id)"
    )
