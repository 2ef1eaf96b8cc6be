"""Loyalty's tables (SQLAlchemy Core): the immutable ledger and its projections.

Immutable, inserted once: ``bonus_movements`` (the ledger), ``payment_accruals`` (what each
payment accrued), ``payment_reversals``, ``payment_cancellations`` and ``bonus_operations`` (the
answer given to each credit operation, keyed by its operation id).

Projections, updated in the same transaction as the movements that change them:
``customer_bonus`` (balance and deficit; its row is the per-customer lock) and ``bonus_lots``
(what is left of each accrual or restoration, for spending oldest first and for expiry).

Money is NUMERIC(18,4) so currencies with up to 4 minor-unit digits fit; values are rounded
to the chain's minor units when read. A balance stays below 10^13 (`amount_out_of_range`).

Everything named by a credit operation's id (or a payment id derived from a POS-chosen sale
id) is keyed by the chain as well: a sale id is unique within its chain only (migration 0002).
An operation credit gave up is `voided` in ``bonus_operations``: its accruals, reversals and
restorations then count in no history.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from servicekit.schema import messaging_tables

metadata = sa.MetaData()
messaging = messaging_tables(metadata)

MONEY = sa.Numeric(18, 4)
RATE = sa.Numeric(9, 4)
TS = sa.DateTime(timezone=True)
MOVEMENT_KINDS = (
    "accrued",
    "spent",
    "cancelled",
    "reversed",
    "restored",
    "expired",
    "void_taken",
    "void_given",
)


def _uuid(name: str, *, nullable: bool = False, **kw: object) -> sa.Column[object]:
    return sa.Column(name, UUID(as_uuid=True), nullable=nullable, **kw)  # type: ignore[arg-type]


chain_settings = sa.Table(
    "chain_settings",
    metadata,
    _uuid("chain_id", primary_key=True),
    sa.Column("bonus_expiry_days", sa.Integer),
    sa.Column("bonus_rate_percent", RATE),
    sa.Column("minor_units", sa.SmallInteger, nullable=False, server_default="2"),
    sa.Column("timezone", sa.Text),
    # null when known only from a command's snapshot: any master-data event overrides it
    sa.Column("changed_at", TS),
)

customer_bonus = sa.Table(
    "customer_bonus",
    metadata,
    _uuid("chain_id", primary_key=True),
    _uuid("customer_id", primary_key=True),
    sa.Column("balance", MONEY, nullable=False, server_default="0"),
    sa.Column("deficit", MONEY, nullable=False, server_default="0"),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("deficit >= 0", name="customer_bonus_deficit_not_negative"),
)

bonus_movements = sa.Table(
    "bonus_movements",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    _uuid("movement_id", unique=True),
    _uuid("chain_id"),
    _uuid("customer_id"),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("balance_after", MONEY, nullable=False),
    _uuid("operation_id", nullable=True),
    sa.Column("seq", sa.SmallInteger, nullable=False, server_default="0"),
    _uuid("payment_id", nullable=True),
    _uuid("sale_id", nullable=True),
    _uuid("store_id", nullable=True),
    _uuid("lot_id", nullable=True),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("amount > 0", name="bonus_movements_amount_positive"),
    sa.CheckConstraint(
        "kind IN ('accrued', 'spent', 'cancelled', 'reversed', 'restored', 'expired', "
        "'void_taken', 'void_given')",
        name="bonus_movements_kind",
    ),
    # an operation's movements are written once: a replay can never add them again
    sa.UniqueConstraint(
        "chain_id", "operation_id", "kind", "seq", name="bonus_movements_operation_once"
    ),
    sa.Index("bonus_movements_customer", "chain_id", "customer_id", "id"),
    sa.Index(
        "bonus_movements_sale", "sale_id", "kind", postgresql_where=sa.text("sale_id IS NOT NULL")
    ),
    sa.Index(
        "bonus_movements_payment",
        "payment_id",
        "kind",
        postgresql_where=sa.text("payment_id IS NOT NULL"),
    ),
    # a lot expires once, whichever instance's job or operation records it
    sa.Index(
        "bonus_movements_lot_expires_once",
        "lot_id",
        unique=True,
        postgresql_where=sa.text("kind = 'expired'"),
    ),
    sa.Index(
        "bonus_movements_operation",
        "chain_id",
        "operation_id",
        postgresql_where=sa.text("operation_id IS NOT NULL"),
    ),
)

bonus_lots = sa.Table(
    "bonus_lots",
    metadata,
    _uuid("lot_id", primary_key=True),
    # spending order among lots of the same moment
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
    _uuid("chain_id"),
    _uuid("customer_id"),
    sa.Column("at", TS, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("remaining", MONEY, nullable=False),
    _uuid("store_id", nullable=True),
    _uuid("payment_id", nullable=True),
    _uuid("sale_id", nullable=True),
    sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name="bonus_lots_remaining"),
    sa.Index(
        "bonus_lots_open",
        "chain_id",
        "customer_id",
        "at",
        "seq",
        postgresql_where=sa.text("remaining > 0"),
    ),
    sa.Index("bonus_lots_open_by_age", "at", postgresql_where=sa.text("remaining > 0")),
)

payment_accruals = sa.Table(
    "payment_accruals",
    metadata,
    _uuid("payment_id", primary_key=True),
    _uuid("chain_id", primary_key=True),
    _uuid("customer_id"),
    _uuid("operation_id"),
    _uuid("sale_id", nullable=True),
    _uuid("store_id"),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("base", MONEY, nullable=False),
    sa.Column("rate_percent", RATE, nullable=False),
    sa.Column("accrued", MONEY, nullable=False),
    sa.Column("at", TS, nullable=False),
    _uuid("lot_id", nullable=True),
    sa.Index("payment_accruals_operation", "operation_id"),
)

payment_reversals = sa.Table(
    "payment_reversals",
    metadata,
    _uuid("operation_id", primary_key=True),
    _uuid("payment_id", primary_key=True),
    _uuid("chain_id", primary_key=True),
    _uuid("customer_id"),
    sa.Column("base", MONEY, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("payment_reversals_payment", "payment_id"),
)

payment_cancellations = sa.Table(
    "payment_cancellations",
    metadata,
    _uuid("payment_id", primary_key=True),
    _uuid("chain_id", primary_key=True),
    _uuid("customer_id"),
    sa.Column("cancelled", MONEY, nullable=False),
    sa.Column("cancelled_at", TS, nullable=False),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
)

bonus_operations = sa.Table(
    "bonus_operations",
    metadata,
    # the guard that a credit operation is applied once, whatever message carries it
    _uuid("operation_id", primary_key=True),
    _uuid("chain_id", primary_key=True),
    _uuid("customer_id"),
    sa.Column("operation_kind", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("answer_type", sa.Text, nullable=False),
    sa.Column("answer", JSONB, nullable=False),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    # voided: credit gave the operation up; what it applied (if anything) was undone
    sa.CheckConstraint(
        "outcome IN ('applied', 'refused', 'voided')", name="bonus_operations_outcome"
    ),
)

SERVICE_TABLES = (
    chain_settings,
    customer_bonus,
    bonus_movements,
    bonus_lots,
    payment_accruals,
    payment_reversals,
    payment_cancellations,
    bonus_operations,
)
