"""The gateway's tables (SQLAlchemy Core): master data, keys, idempotency, operations.

Money columns are NUMERIC(18,4): a chain's currency may have up to 4 minor-unit digits
(contracts allow it); values are quantized to the chain's minor units before they are stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from servicekit.schema import messaging_tables

metadata = sa.MetaData()
messaging = messaging_tables(metadata)

MONEY = sa.Numeric(18, 4)
QUANTITY = sa.Numeric(18, 6)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else sa.func.now(),
    )


chains = sa.Table(
    "chains",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("minor_units", sa.Integer, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("credit_mode", sa.Text, nullable=False),
    sa.Column("max_payment_delay_days", sa.Integer, nullable=False),
    sa.Column("overdue_discount", sa.Text, nullable=False),
    sa.Column("block_credit_when_overdue", sa.Boolean, nullable=False),
    sa.Column("reminder_repeat_days", sa.Integer, nullable=False),
    sa.Column("bonus_rate_percent", sa.Numeric(18, 4), nullable=False),
    sa.Column("bonus_expiry_days", sa.Integer),
    _ts("created_at"),
    _ts("updated_at"),
    #: customer service's address for the notifier's reminder digest (null: no mail);
    #: added by revision 0002_staff
    sa.Column("reminder_email", sa.Text),
)

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("store_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), sa.ForeignKey("chains.chain_id"), nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    _ts("created_at"),
    sa.UniqueConstraint("chain_id", "code", name="stores_chain_code"),
)

terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("terminal_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("store_id", UUID(as_uuid=True), sa.ForeignKey("stores.store_id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    _ts("created_at"),
)

# Only the SHA-256 of a key is stored; the key itself is shown once, at creation.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.Text, primary_key=True),
    sa.Column("key_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("store_id", UUID(as_uuid=True)),
    sa.Column("terminal_id", UUID(as_uuid=True)),
    _ts("created_at"),
    _ts("revoked_at", nullable=True),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("phone", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("vip", sa.Boolean, nullable=False),
    sa.Column("bonus_accrual", sa.Boolean, nullable=False),
    sa.Column("credit_limit", MONEY),
    sa.Column("max_payment_delay_days", sa.Integer),
    #: the active card (null when the customer has none or it was blocked)
    sa.Column("card_number", sa.Text),
    _ts("created_at"),
    _ts("updated_at"),
    sa.Index("customers_chain_name", "chain_id", "name", "customer_id"),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("card_number", sa.Text, primary_key=True),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
    _ts("issued_at"),
    _ts("blocked_at", nullable=True),
)

# One row per till/back-office operation sent to credit or loyalty, with its outcome.
# kind: sale, debt_payment, advance, refund, return, revoke_discount, bonus_cancel.
operations = sa.Table(
    "operations",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("operation_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("store_id", UUID(as_uuid=True)),
    sa.Column("terminal_id", UUID(as_uuid=True)),
    sa.Column("customer_id", UUID(as_uuid=True)),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("request", JSONB, nullable=False),
    #: pending, completed or refused
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("outcome", JSONB),
    sa.Column("code", sa.Text),
    sa.Column("detail", sa.Text),
    _ts("created_at"),
    _ts("completed_at", nullable=True),
)

sale_lines = sa.Table(
    "sale_lines",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("sale_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("sku", sa.Text),
    sa.Column("barcode", sa.Text),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("quantity", QUANTITY, nullable=False),
    sa.Column("unit_price", MONEY, nullable=False),
    sa.Column("discount", MONEY, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("returned_quantity", QUANTITY, nullable=False, server_default="0"),
)

# Payment ids are minted here, so the back office can name a payment (bonus-type) later.
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("payment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True)),
    sa.Column("operation_kind", sa.Text, nullable=False),
    sa.Column("operation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    _ts("created_at"),
)

# Idempotency-Key rows, scoped to the calling key. The first request holds the row's lock
# for its whole transaction, so a concurrent retry waits for it and then reads its answer.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True)),
    sa.Column("operation_kind", sa.Text),
    sa.Column("operation_id", UUID(as_uuid=True)),
    sa.Column("status_code", sa.Integer),
    sa.Column("response", JSONB),
    _ts("created_at"),
    sa.Index("idempotency_keys_created_at", "created_at"),
)


# --------------------------------------------------------------------------- staff (0002_staff)

# Staff users of a chain. Emails are unique across the system among users not deleted
# (`email_key` is the email in lower case); a deleted user keeps its row (who completed a task
# stays readable), so its email may be given to a new user.
users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), sa.ForeignKey("chains.chain_id"), nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("email_key", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    #: argon2id (argon2-cffi's encoded form, parameters and salt included)
    sa.Column("password_hash", sa.Text, nullable=False),
    _ts("created_at"),
    _ts("deleted_at", nullable=True),
    sa.CheckConstraint("role IN ('manager', 'customer_service')", name="users_role"),
    sa.Index(
        "users_email_key_live",
        "email_key",
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
    sa.Index("users_chain_list", "chain_id", "email_key", "user_id"),
)

# Bearer tokens of signed-in users: only the SHA-256 of a token is stored (like API keys).
user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("user_id", UUID(as_uuid=True), nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    _ts("created_at"),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("user_sessions_user", "user_id"),
    sa.Index("user_sessions_expires_at", "expires_at"),
)

# Failed sign-ins per email (known or not, so the answer never tells which), shared by every
# gateway instance: the sign-in limit holds however many instances there are.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("email_key", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
)
