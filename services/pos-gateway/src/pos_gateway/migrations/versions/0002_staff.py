"""Staff accounts: users, their session tokens, failed sign-ins; the chain's reminder email.

Revision ID: 0002_staff
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002_staff"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 was written when the column existed already, so a fresh database has it; one made
    # by an earlier 0001 gets it here
    op.execute("ALTER TABLE chains ADD COLUMN IF NOT EXISTS reminder_email text")
    op.create_table(
        "users",
        sa.Column("user_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("chain_id", UUID(as_uuid=True), sa.ForeignKey("chains.chain_id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("email_key", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('manager', 'customer_service')", name="users_role"),
    )
    op.create_index(
        "users_email_key_live",
        "users",
        ["email_key"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("users_chain_list", "users", ["chain_id", "email_key", "user_id"])
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("user_sessions_user", "user_sessions", ["user_id"])
    op.create_index("user_sessions_expires_at", "user_sessions", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("email_key", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("user_sessions")
    op.drop_table("users")
    op.drop_column("chains", "reminder_email")
