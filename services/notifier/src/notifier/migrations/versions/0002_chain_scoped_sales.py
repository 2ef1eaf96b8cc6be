"""Overdue sales and their lines keyed by (chain_id, sale_id).

A POS chooses its sale ids, unique within its chain only: `nt_overdue_lines` gains `chain_id`
(filled from its sale), and both tables' primary keys gain the chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 was written when the tables had this shape already: on a fresh database every step
    # leaves the shape as it is, on one made by an earlier 0001 it changes it.
    op.execute("ALTER TABLE nt_overdue_lines ADD COLUMN IF NOT EXISTS chain_id uuid")
    op.execute(
        "UPDATE nt_overdue_lines l SET chain_id = s.chain_id FROM nt_overdue_sales s "
        "WHERE s.sale_id = l.sale_id AND l.chain_id IS NULL"
    )
    op.execute("DELETE FROM nt_overdue_lines WHERE chain_id IS NULL")  # no sale: never read
    op.execute("ALTER TABLE nt_overdue_lines ALTER COLUMN chain_id SET NOT NULL")
    op.execute(
        "ALTER TABLE nt_overdue_sales DROP CONSTRAINT nt_overdue_sales_pkey, "
        "ADD CONSTRAINT nt_overdue_sales_pkey PRIMARY KEY (chain_id, sale_id)"
    )
    op.execute(
        "ALTER TABLE nt_overdue_lines DROP CONSTRAINT nt_overdue_lines_pkey, "
        "ADD CONSTRAINT nt_overdue_lines_pkey PRIMARY KEY (chain_id, sale_id, line_no)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE nt_overdue_lines DROP CONSTRAINT nt_overdue_lines_pkey, "
        "ADD CONSTRAINT nt_overdue_lines_pkey PRIMARY KEY (sale_id, line_no)"
    )
    op.execute(
        "ALTER TABLE nt_overdue_sales DROP CONSTRAINT nt_overdue_sales_pkey, "
        "ADD CONSTRAINT nt_overdue_sales_pkey PRIMARY KEY (sale_id)"
    )
    op.execute("ALTER TABLE nt_overdue_lines DROP COLUMN chain_id")
