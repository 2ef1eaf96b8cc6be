"""Initial schema of the gateway: messaging tables, master data, keys, operations.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

from pos_gateway.adapters import tables
from servicekit.schema import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The initial schema is the tables module as it is at this revision; later revisions change
# the schema with explicit `op.*` calls, never by editing the tables module alone.
_OWN = (
    tables.chains,
    tables.stores,
    tables.terminals,
    tables.api_keys,
    tables.customers,
    tables.cards,
    tables.operations,
    tables.sale_lines,
    tables.payments,
    tables.idempotency_keys,
)


def upgrade() -> None:
    create_messaging_tables()
    bind = op.get_bind()
    for table in _OWN:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_OWN):
        table.drop(bind)
    drop_messaging_tables()
