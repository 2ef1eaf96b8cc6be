"""The credit database: ledger entries, sales, operations (saga state), parked commands,
overdue marks, and a per-customer row that serialises everything done for one customer.

Ledger rows are only inserted; an operation's entries count while it is pending or confirmed
and never once it is voided. Money is NUMERIC, never float: NUMERIC(18,4) holds every balance
below the contract's bound (10^13, `amount_out_of_range`) with room to spare.

Operations and sales are keyed by (chain_id, id): a POS chooses its sale ids, and they are
unique within its chain only (migration 0003).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from servicekit.schema import messaging_tables

metadata = sa.MetaData()
messaging = messaging_tables(metadata)

MONEY = sa.Numeric(18, 4)
QTY = sa.Numeric(18, 6)


def _ts(name: str, **kw: object) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


chains = sa.Table(
    "chains",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("settings", JSONB, nullable=False),
    sa.Column("from_masterdata", sa.Boolean, nullable=False, server_default=sa.false()),
    _ts("updated_at", nullable=False, server_default=sa.func.now()),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False, index=True),
    # the operation waiting for loyalty; while set, later commands are parked
    sa.Column("in_flight", UUID(as_uuid=True)),
    sa.Column("debt", MONEY, nullable=False, server_default="0"),
    sa.Column("advance", MONEY, nullable=False, server_default="0"),
    sa.Column("bonus_balance", MONEY, nullable=False, server_default="0"),
    sa.Column("minor_units", sa.Integer, nullable=False, server_default="2"),
    _ts("updated_at", nullable=False, server_default=sa.func.now()),
)

operations = sa.Table(
    "operations",
    metadata,
    sa.Column("operation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True)),
    # pending -> confirmed | voided
    sa.Column("status", sa.Text, nullable=False),
    # the outcome event, without the figures loyalty adds when it answers
    sa.Column("outcome_type", sa.Text, nullable=False),
    sa.Column("outcome", JSONB, nullable=False),
    # what confirming needs besides the outcome (sales it may settle, the chain's time zone)
    sa.Column("meta", JSONB, nullable=False, server_default="{}"),
    sa.Column("correlation_id", UUID(as_uuid=True), nullable=False),
    _ts("created_at", nullable=False, server_default=sa.func.now()),
    _ts("finished_at"),
    sa.PrimaryKeyConstraint("chain_id", "operation_id", name="operations_pkey"),
    sa.Index("operations_customer", "customer_id"),
    # the deadline job's question, every second: which operations wait since when
    sa.Index("operations_pending", "created_at", postgresql_where=sa.text("status = 'pending'")),
)

refusals = sa.Table(
    "refusals",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("operation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True)),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    _ts("refused_at", nullable=False, server_default=sa.func.now()),
    sa.Index("refusals_operation", "chain_id", "operation_id", "kind"),
)

sales = sa.Table(
    "sales",
    metadata,
    sa.Column("sale_id", UUID(as_uuid=True), nullable=False),
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True)),
    sa.Column("store_id", UUID(as_uuid=True), nullable=False),
    sa.Column("terminal_id", UUID(as_uuid=True)),
    _ts("sold_at", nullable=False),
    sa.Column("local_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("payments", JSONB, nullable=False),
    # true once the sale owes nothing under confirmed operations (then nothing can charge it
    # again): a command reads only the customer's other sales (migration 0004); false means
    # "may owe something" and is always safe
    sa.Column("settled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.PrimaryKeyConstraint("chain_id", "sale_id", name="sales_pkey"),
    sa.Index("sales_customer", "customer_id"),
    sa.Index("sales_open", "customer_id", postgresql_where=sa.text("NOT settled")),
)

entries = sa.Table(
    "entries",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("operation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True)),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    _ts("at", nullable=False),
    sa.Column("sale_id", UUID(as_uuid=True)),
    sa.Column("line_no", sa.Integer),
    sa.Column("payment_id", UUID(as_uuid=True)),
    sa.Column("method", sa.Text),
    sa.Column("quantity", QTY),
    sa.CheckConstraint("amount >= 0", name="entries_amount_not_negative"),
    sa.Index("entries_customer", "customer_id"),
    sa.Index("entries_sale", "chain_id", "sale_id"),
    # the customer's advance, summed by every command (migration 0004)
    sa.Index(
        "entries_advance",
        "customer_id",
        postgresql_where=sa.text("kind IN ('advance_in', 'advance_out', 'advance_applied')"),
    ),
)

parked = sa.Table(
    "parked_commands",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("envelope", JSONB, nullable=False),
    _ts("parked_at", nullable=False, server_default=sa.func.now()),
    sa.Index("parked_customer", "customer_id", "id"),
)

overdue_marks = sa.Table(
    "overdue_marks",
    metadata,
    # one row per sale: SaleOverdue is published by whoever inserts it, exactly once
    sa.Column("sale_id", UUID(as_uuid=True), nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    _ts("detected_at", nullable=False, server_default=sa.func.now()),
    _ts("settled_at"),
    sa.PrimaryKeyConstraint("chain_id", "sale_id", name="overdue_marks_pkey"),
)

saga_timeouts = sa.Table(
    "saga_timeouts",
    metadata,
    # no longer written (since migration 0003 an operation past its deadline is failed, see
    # service_layer/deadline.py); kept for the release in which older instances still write
    # it, to be dropped in a later one (expand/contract)
    sa.Column("operation_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    _ts("waiting_since", nullable=False),
    _ts("detected_at", nullable=False, server_default=sa.func.now()),
)
