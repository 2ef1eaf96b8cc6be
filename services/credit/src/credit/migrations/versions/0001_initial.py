"""The credit database: messaging tables, ledger, sales, operations, parked commands, marks.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op
from servicekit.schema import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = (
    "chains",
    "customers",
    "operations",
    "refusals",
    "sales",
    "entries",
    "parked_commands",
    "overdue_marks",
)


def upgrade() -> None:
    from credit.adapters.tables import metadata

    create_messaging_tables()
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[name] for name in _TABLES])


def downgrade() -> None:
    for name in reversed(_TABLES):
        op.drop_table(name)
    op.drop_table("inbox")
    op.drop_table("outbox")
