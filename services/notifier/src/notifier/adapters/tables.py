"""Tables of the notifier: its mirror of chains/customers/overdue sales, tasks and webhooks.

`nt_tasks_one_open_per_customer` (a partial unique index) is what guarantees one open task per
customer across instances; handlers also lock the customer's row so they never race into it.
Overdue sales and their lines are keyed by (chain_id, sale_id): a POS chooses sale ids, unique
within its chain only (migration 0002).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

MONEY = sa.Numeric(18, 4)

metadata = sa.MetaData()


def _retried(table: str) -> tuple[sa.Column[Any] | sa.Index, ...]:
    """What a message sent with retries keeps (a webhook delivery, a reminder digest): its
    status (`pending` until it is sent or given up), the tries so far, when the next is due and
    what the last one failed with; and the index of the pending ones by due time, which the
    sending job claims from."""
    return (
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Index(f"{table}_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
    )


chains = sa.Table(
    "nt_chains",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("minor_units", sa.Integer, nullable=False),
    sa.Column("reminder_repeat_days", sa.Integer, nullable=False),
    sa.Column("overdue_discount", sa.Text, nullable=False),
    # for the reminder digest (revision 0003_mail): where it goes (null: no mail), and what
    # its subject and amounts say
    sa.Column("reminder_email", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("currency", sa.Text),
)

#: also the row a handler locks to serialise all work on one customer
customers = sa.Table(
    "nt_customers",
    metadata,
    sa.Column("customer_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("phone", sa.Text),
)

overdue_sales = sa.Table(
    "nt_overdue_sales",
    metadata,
    sa.Column("sale_id", UUID(as_uuid=True), nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("sold_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("discount", MONEY, nullable=False),
    sa.Column("discount_revoked", sa.Boolean, nullable=False),
    sa.Column("settled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.PrimaryKeyConstraint("chain_id", "sale_id", name="nt_overdue_sales_pkey"),
    sa.Index("nt_overdue_sales_customer", "customer_id"),
)

overdue_lines = sa.Table(
    "nt_overdue_lines",
    metadata,
    sa.Column("sale_id", UUID(as_uuid=True), nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("owed", MONEY, nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.PrimaryKeyConstraint("chain_id", "sale_id", "line_no", name="nt_overdue_lines_pkey"),
)

tasks = sa.Table(
    "nt_tasks",
    metadata,
    sa.Column("task_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_reason", sa.Text),
    sa.Column("outcome", sa.Text),
    sa.Column("note", sa.Text),
    #: the staff user who completed it through the gateway (null: the chain admin key);
    #: added by revision 0002_staff
    sa.Column("completed_by_user_id", UUID(as_uuid=True)),
    sa.Column("completed_by_name", sa.Text),
    #: the overdue sales as last seen while the task was open:
    #: [{"sale_id", "due_date", "amount_owed"}]
    sa.Column("sales", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.CheckConstraint("status IN ('open', 'done')", name="nt_tasks_status"),
    sa.Index(
        "nt_tasks_one_open_per_customer",
        "customer_id",
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    ),
    sa.Index("nt_tasks_list", "chain_id", "status", "created_at", "task_id"),
    sa.Index("nt_tasks_customer", "customer_id", "raised_at"),
)

webhooks = sa.Table(
    "nt_webhooks",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

webhook_deliveries = sa.Table(
    "nt_webhook_deliveries",
    metadata,
    sa.Column("delivery_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("task_id", UUID(as_uuid=True), nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    #: pending, delivered, dead (tried webhook_max_attempts times) or cancelled (webhook removed)
    *_retried("nt_webhook_deliveries"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
)

webhook_dead_letters = sa.Table(
    "nt_webhook_dead_letters",
    metadata,
    sa.Column("delivery_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("task_id", UUID(as_uuid=True), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
)

# --------------------------------------------------------------------------- reminder mail
# (created by revision 0003_mail)

# A task raised or re-raised for a chain with a reminder email, written in the transaction
# that raises it (like a webhook delivery): the next digest of the chain takes it.
mail_items = sa.Table(
    "nt_mail_items",
    metadata,
    sa.Column("item_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("task_id", UUID(as_uuid=True), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("re_raised", sa.Boolean, nullable=False),
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    #: the digest that took it (null: waiting for the next run)
    sa.Column("digest_id", UUID(as_uuid=True)),
    sa.Index("nt_mail_items_waiting", "chain_id", postgresql_where=sa.text("digest_id IS NULL")),
    sa.Index("nt_mail_items_digest", "digest_id"),
)

# One message per chain and run, composed once (its text never changes, so a retry sends the
# same message with the same Message-ID) and retried with back-off until sent.
mail_digests = sa.Table(
    "nt_mail_digests",
    metadata,
    sa.Column("digest_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body_text", sa.Text, nullable=False),
    sa.Column("body_html", sa.Text, nullable=False),
    sa.Column("tasks", sa.Integer, nullable=False),
    #: pending, sent, dead (tried mail_max_attempts times) or cancelled (no address any more)
    *_retried("nt_mail_digests"),
    #: where it went (the chain's reminder_email when it was sent)
    sa.Column("sent_to", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
)
