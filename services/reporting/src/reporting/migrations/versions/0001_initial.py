"""Initial schema: outbox/inbox and the read-model tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

from reporting.adapters.tables import READ_MODEL_TABLES
from servicekit.schema import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    # The read models are disposable projections (rebuilt from the log by reporting.rebuild,
    # which creates them from the same definitions), so this first revision builds them from
    # `adapters.tables`; any later change gets an explicit revision of its own.
    bind = op.get_bind()
    for table in READ_MODEL_TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(READ_MODEL_TABLES):
        table.drop(bind)
    drop_messaging_tables()
