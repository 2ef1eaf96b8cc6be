"""Who completed a task: the staff user's id and name (null for the chain admin key).

Revision ID: 0002_staff
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002_staff"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 was written when the columns existed already, so a fresh database has them; one
    # made by an earlier 0001 gets them here
    op.execute("ALTER TABLE nt_tasks ADD COLUMN IF NOT EXISTS completed_by_user_id uuid")
    op.execute("ALTER TABLE nt_tasks ADD COLUMN IF NOT EXISTS completed_by_name text")


def downgrade() -> None:
    op.drop_column("nt_tasks", "completed_by_name")
    op.drop_column("nt_tasks", "completed_by_user_id")
