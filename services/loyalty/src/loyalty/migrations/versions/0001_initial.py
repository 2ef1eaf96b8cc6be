"""Initial schema: messaging tables, the bonus ledger and its projections.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from servicekit.schema import create_messaging_tables, drop_messaging_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(18, 4)
RATE = sa.Numeric(9, 4)
TS = sa.DateTime(timezone=True)


def _id(name: str, *, nullable: bool = False, primary_key: bool = False) -> sa.Column[object]:
    return sa.Column(name, UUID(as_uuid=True), nullable=nullable, primary_key=primary_key)


def upgrade() -> None:
    create_messaging_tables()
    op.create_table(
        "chain_settings",
        _id("chain_id", primary_key=True),
        sa.Column("bonus_expiry_days", sa.Integer),
        sa.Column("bonus_rate_percent", RATE),
        sa.Column("minor_units", sa.SmallInteger, nullable=False, server_default="2"),
        sa.Column("timezone", sa.Text),
        sa.Column("changed_at", TS),
    )
    op.create_table(
        "customer_bonus",
        _id("chain_id", primary_key=True),
        _id("customer_id", primary_key=True),
        sa.Column("balance", MONEY, nullable=False, server_default="0"),
        sa.Column("deficit", MONEY, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("deficit >= 0", name="customer_bonus_deficit_not_negative"),
    )
    op.create_table(
        "bonus_movements",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("movement_id", UUID(as_uuid=True), nullable=False, unique=True),
        _id("chain_id"),
        _id("customer_id"),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("balance_after", MONEY, nullable=False),
        _id("operation_id", nullable=True),
        sa.Column("seq", sa.SmallInteger, nullable=False, server_default="0"),
        _id("payment_id", nullable=True),
        _id("sale_id", nullable=True),
        _id("store_id", nullable=True),
        _id("lot_id", nullable=True),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("amount > 0", name="bonus_movements_amount_positive"),
        sa.CheckConstraint(
            "kind IN ('accrued', 'spent', 'cancelled', 'reversed', 'restored', 'expired')",
            name="bonus_movements_kind",
        ),
        sa.UniqueConstraint("operation_id", "kind", "seq", name="bonus_movements_operation_once"),
    )
    op.create_index(
        "bonus_movements_customer", "bonus_movements", ["chain_id", "customer_id", "id"]
    )
    op.create_index(
        "bonus_movements_sale",
        "bonus_movements",
        ["sale_id", "kind"],
        postgresql_where=sa.text("sale_id IS NOT NULL"),
    )
    op.create_index(
        "bonus_movements_payment",
        "bonus_movements",
        ["payment_id", "kind"],
        postgresql_where=sa.text("payment_id IS NOT NULL"),
    )
    op.create_index(
        "bonus_movements_lot_expires_once",
        "bonus_movements",
        ["lot_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'expired'"),
    )
    op.create_table(
        "bonus_lots",
        _id("lot_id", primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        _id("chain_id"),
        _id("customer_id"),
        sa.Column("at", TS, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("remaining", MONEY, nullable=False),
        _id("store_id", nullable=True),
        _id("payment_id", nullable=True),
        _id("sale_id", nullable=True),
        sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name="bonus_lots_remaining"),
    )
    op.create_index(
        "bonus_lots_open",
        "bonus_lots",
        ["chain_id", "customer_id", "at", "seq"],
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index(
        "bonus_lots_open_by_age", "bonus_lots", ["at"], postgresql_where=sa.text("remaining > 0")
    )
    op.create_table(
        "payment_accruals",
        _id("payment_id", primary_key=True),
        _id("chain_id"),
        _id("customer_id"),
        _id("operation_id"),
        _id("sale_id", nullable=True),
        _id("store_id"),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("base", MONEY, nullable=False),
        sa.Column("rate_percent", RATE, nullable=False),
        sa.Column("accrued", MONEY, nullable=False),
        sa.Column("at", TS, nullable=False),
        _id("lot_id", nullable=True),
    )
    op.create_index("payment_accruals_operation", "payment_accruals", ["operation_id"])
    op.create_table(
        "payment_reversals",
        _id("operation_id", primary_key=True),
        _id("payment_id", primary_key=True),
        _id("chain_id"),
        _id("customer_id"),
        sa.Column("base", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("payment_reversals_payment", "payment_reversals", ["payment_id"])
    op.create_table(
        "payment_cancellations",
        _id("payment_id", primary_key=True),
        _id("chain_id"),
        _id("customer_id"),
        sa.Column("cancelled", MONEY, nullable=False),
        sa.Column("cancelled_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "bonus_operations",
        _id("operation_id", primary_key=True),
        _id("chain_id"),
        _id("customer_id"),
        sa.Column("operation_kind", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("answer_type", sa.Text, nullable=False),
        sa.Column("answer", JSONB, nullable=False),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("outcome IN ('applied', 'refused')", name="bonus_operations_outcome"),
    )


def downgrade() -> None:
    for table in (
        "bonus_operations",
        "payment_cancellations",
        "payment_reversals",
        "payment_accruals",
        "bonus_lots",
        "bonus_movements",
        "customer_bonus",
        "chain_settings",
    ):
        op.drop_table(table)
    drop_messaging_tables()
