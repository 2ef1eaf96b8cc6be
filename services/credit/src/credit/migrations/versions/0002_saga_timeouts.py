"""Saga timeouts: one row per pending operation that waited for loyalty too long.

Whichever instance inserts the row counts and logs the timeout, so it is counted once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saga_timeouts",
        sa.Column("operation_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
        sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "detected_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("saga_timeouts")
