"""Reminder mail: the chain's address, name and currency; the tasks waiting for a digest; the
digests and their delivery state.

Revision ID: 0003_mail
Revises: 0002_staff
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003_mail"
down_revision = "0002_staff"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # 0001 was written when nt_chains had the columns already, so a fresh database has them;
    # one made by an earlier 0001 gets them here
    for column in ("reminder_email", "name", "currency"):
        op.execute(f"ALTER TABLE nt_chains ADD COLUMN IF NOT EXISTS {column} text")
    op.create_table(
        "nt_mail_items",
        sa.Column("item_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
        sa.Column("task_id", UUID(as_uuid=True), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("re_raised", sa.Boolean, nullable=False),
        sa.Column("raised_at", _TS, nullable=False),
        sa.Column("digest_id", UUID(as_uuid=True)),
    )
    op.create_index(
        "nt_mail_items_waiting",
        "nt_mail_items",
        ["chain_id"],
        postgresql_where=sa.text("digest_id IS NULL"),
    )
    op.create_index("nt_mail_items_digest", "nt_mail_items", ["digest_id"])
    op.create_table(
        "nt_mail_digests",
        sa.Column("digest_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body_text", sa.Text, nullable=False),
        sa.Column("body_html", sa.Text, nullable=False),
        sa.Column("tasks", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_to", sa.Text),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("sent_at", _TS),
    )
    op.create_index(
        "nt_mail_digests_due",
        "nt_mail_digests",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("nt_mail_digests")
    op.drop_table("nt_mail_items")
    for column in ("currency", "name", "reminder_email"):
        op.drop_column("nt_chains", column)
