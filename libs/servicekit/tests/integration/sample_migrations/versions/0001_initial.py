"""A slow first migration, so that instances starting together would collide without a lock."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from servicekit.schema import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables()
    op.execute("SELECT pg_sleep(0.5)")
    op.create_table(
        "things",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("things")
