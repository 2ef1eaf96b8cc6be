"""Payment-Balance in SQL: customers' sort key for sort=name and covering movement indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    # 0001 was written when the column and the indexes existed already, so on a fresh database
    # they exist: every step here is IF NOT EXISTS.
    # name_key is Python's str.casefold() of the name (PostgreSQL's lower() is another mapping,
    # and ASCII only under the C locale), so existing rows are filled from Python.
    op.execute(
        "ALTER TABLE rm_customers ADD COLUMN IF NOT EXISTS name_key text NOT NULL DEFAULT ''"
    )
    bind = op.get_bind()
    customers = sa.table(
        "rm_customers", sa.column("customer_id"), sa.column("name"), sa.column("name_key")
    )
    rows = bind.execute(sa.select(customers.c.customer_id, customers.c.name)).all()
    update = (
        sa.update(customers)
        .where(customers.c.customer_id == sa.bindparam("cid"))
        .values(name_key=sa.bindparam("key"))
    )
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        bind.execute(update, [{"cid": r.customer_id, "key": r.name.casefold()} for r in batch])
    op.execute("ALTER TABLE rm_customers ALTER COLUMN name_key DROP DEFAULT")
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_movements_pb_customer ON rm_movements "
        "(chain_id, customer_id, at) INCLUDE (store_id, goods, payments) "
        "WHERE bonus_kind IS NULL"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_movements_pb_store ON rm_movements "
        "(chain_id, store_id, customer_id, at) INCLUDE (goods, payments) "
        "WHERE bonus_kind IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS rm_movements_pb_store")
    op.execute("DROP INDEX IF EXISTS rm_movements_pb_customer")
    op.execute("ALTER TABLE rm_customers DROP COLUMN IF EXISTS name_key")
