"""Ids keyed by chain as well; voided operations and their compensating movements.

A POS chooses its sale ids (unique within the chain only), and a sale's id is also the id of
its bonus operation and the seed of a derived payment id: `bonus_operations`,
`payment_accruals`, `payment_reversals`, `payment_cancellations` and the once-only guard of
`bonus_movements` gain `chain_id`. `bonus_operations.outcome` may be `voided` (credit gave the
operation up), and `bonus_movements.kind` `void_taken` / `void_given` (the undo).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PKEYS = {
    "bonus_operations": ("operation_id",),
    "payment_accruals": ("payment_id",),
    "payment_reversals": ("operation_id", "payment_id"),
    "payment_cancellations": ("payment_id",),
}


def upgrade() -> None:
    for table, columns in _PKEYS.items():
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
            f"ADD PRIMARY KEY (chain_id, {', '.join(columns)})"
        )
    op.execute(
        "ALTER TABLE bonus_movements DROP CONSTRAINT bonus_movements_operation_once, "
        "ADD CONSTRAINT bonus_movements_operation_once "
        "UNIQUE (chain_id, operation_id, kind, seq)"
    )
    op.execute(
        "CREATE INDEX bonus_movements_operation ON bonus_movements (chain_id, operation_id) "
        "WHERE operation_id IS NOT NULL"
    )
    op.execute(
        "ALTER TABLE bonus_movements DROP CONSTRAINT bonus_movements_kind, "
        "ADD CONSTRAINT bonus_movements_kind CHECK (kind IN ('accrued', 'spent', 'cancelled', "
        "'reversed', 'restored', 'expired', 'void_taken', 'void_given'))"
    )
    op.execute(
        "ALTER TABLE bonus_operations DROP CONSTRAINT bonus_operations_outcome, "
        "ADD CONSTRAINT bonus_operations_outcome CHECK (outcome IN ('applied', 'refused', "
        "'voided'))"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE bonus_operations DROP CONSTRAINT bonus_operations_outcome, "
        "ADD CONSTRAINT bonus_operations_outcome CHECK (outcome IN ('applied', 'refused'))"
    )
    op.execute(
        "ALTER TABLE bonus_movements DROP CONSTRAINT bonus_movements_kind, "
        "ADD CONSTRAINT bonus_movements_kind CHECK (kind IN ('accrued', 'spent', 'cancelled', "
        "'reversed', 'restored', 'expired'))"
    )
    op.execute("DROP INDEX bonus_movements_operation")
    op.execute(
        "ALTER TABLE bonus_movements DROP CONSTRAINT bonus_movements_operation_once, "
        "ADD CONSTRAINT bonus_movements_operation_once UNIQUE (operation_id, kind, seq)"
    )
    for table, columns in _PKEYS.items():
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
            f"ADD PRIMARY KEY ({', '.join(columns)})"
        )
