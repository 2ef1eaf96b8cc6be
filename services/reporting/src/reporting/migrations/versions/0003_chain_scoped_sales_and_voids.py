"""Sales keyed by (chain_id, sale_id); loyalty's movement id on bonus movements.

A POS chooses its sale ids, unique within its chain only, so `rm_sales` and `rm_sale_lines`
gain the chain in their primary keys. `rm_movements.bonus_movement_id` is loyalty's id of a
bonus movement, so the movements of an operation loyalty voided (`loyalty.BonusesVoided`) can
be dropped. Rows written before have none: no operation voided before this release.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 was written when the tables had this shape already: on a fresh database every step
    # leaves the shape as it is, on one made by an earlier 0001 it changes it.
    op.execute(
        "ALTER TABLE rm_sales DROP CONSTRAINT rm_sales_pkey, ADD CONSTRAINT rm_sales_pkey "
        "PRIMARY KEY (chain_id, sale_id)"
    )
    op.execute(
        "ALTER TABLE rm_sale_lines DROP CONSTRAINT rm_sale_lines_pkey, ADD CONSTRAINT "
        "rm_sale_lines_pkey PRIMARY KEY (chain_id, sale_id, line_no)"
    )
    op.execute("ALTER TABLE rm_movements ADD COLUMN IF NOT EXISTS bonus_movement_id uuid")
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_movements_bonus_movement ON rm_movements "
        "(bonus_movement_id) WHERE bonus_movement_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS rm_movements_bonus_movement")
    op.execute("ALTER TABLE rm_movements DROP COLUMN IF EXISTS bonus_movement_id")
    op.execute(
        "ALTER TABLE rm_sale_lines DROP CONSTRAINT rm_sale_lines_pkey, ADD CONSTRAINT "
        "rm_sale_lines_pkey PRIMARY KEY (sale_id, line_no)"
    )
    op.execute(
        "ALTER TABLE rm_sales DROP CONSTRAINT rm_sales_pkey, ADD CONSTRAINT rm_sales_pkey "
        "PRIMARY KEY (sale_id)"
    )
