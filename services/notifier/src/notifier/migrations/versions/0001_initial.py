"""Initial schema: outbox/inbox, tasks, the overdue mirror and webhooks.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

from notifier.adapters.tables import TABLES
from servicekit.schema import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    # The first revision creates the tables from `adapters.tables` (one definition for the
    # migration and the code); any later change gets an explicit revision of its own.
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
    drop_messaging_tables()
