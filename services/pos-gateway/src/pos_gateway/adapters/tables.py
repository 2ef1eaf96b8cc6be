"""The gateway's tables (SQLAlchemy Core): master data, keys, idempotency, operations.

Money columns are NUMERIC(18,4): a chain's currency may have up to 4 minor-unit digits
(contracts allow it); values are quantized to the chain's minor units before they are stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from servicekit.schema import messaging_tables
from sqlalchemy.dialects.postgresql import JSONB, UUID

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
