"""Initial schema of the gateway: messaging tables, master data, keys, operations.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

from servicekit.schema import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: The tables as this revision creates them, written out, never imported from `adapters.tables`:
#: a migration must create the same schema whatever the code looks like later (docs/architecture.md,
#: "Migrations"). Each: (table, its CREATE TABLE and CREATE INDEX statements), in creation order.
_TABLES = (
    (
        "chains",
        """CREATE TABLE chains (
            chain_id UUID NOT NULL,
            name TEXT NOT NULL,
            currency TEXT NOT NULL,
            minor_units INTEGER NOT NULL,
            timezone TEXT NOT NULL,
            credit_mode TEXT NOT NULL,
            max_payment_delay_days INTEGER NOT NULL,
            overdue_discount TEXT NOT NULL,
            block_credit_when_overdue BOOLEAN NOT NULL,
            reminder_repeat_days INTEGER NOT NULL,
            bonus_rate_percent NUMERIC(18, 4) NOT NULL,
            bonus_expiry_days INTEGER,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            reminder_email TEXT,
            PRIMARY KEY (chain_id)
        )""",
    ),
    (
        "stores",
        """CREATE TABLE stores (
            store_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            code TEXT NOT NULL,
            name TEXT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (store_id),
            CONSTRAINT stores_chain_code UNIQUE (chain_id, code),
            FOREIGN KEY(chain_id) REFERENCES chains (chain_id)
        )""",
    ),
    (
        "terminals",
        """CREATE TABLE terminals (
            terminal_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            store_id UUID NOT NULL,
            name TEXT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (terminal_id),
            FOREIGN KEY(store_id) REFERENCES stores (store_id)
        )""",
    ),
    (
        "api_keys",
        """CREATE TABLE api_keys (
            key_hash TEXT NOT NULL,
            key_id UUID NOT NULL,
            kind TEXT NOT NULL,
            chain_id UUID NOT NULL,
            store_id UUID,
            terminal_id UUID,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            revoked_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (key_hash),
            UNIQUE (key_id)
        )""",
    ),
    (
        "customers",
        """CREATE TABLE customers (
            customer_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            name TEXT NOT NULL,
            phone TEXT,
            email TEXT,
            vip BOOLEAN NOT NULL,
            bonus_accrual BOOLEAN NOT NULL,
            credit_limit NUMERIC(18, 4),
            max_payment_delay_days INTEGER,
            card_number TEXT,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (customer_id)
        )""",
        "CREATE INDEX customers_chain_name ON customers (chain_id, name, customer_id)",
    ),
    (
        "cards",
        """CREATE TABLE cards (
            chain_id UUID NOT NULL,
            card_number TEXT NOT NULL,
            customer_id UUID NOT NULL,
            blocked BOOLEAN DEFAULT false NOT NULL,
            issued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            blocked_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (chain_id, card_number)
        )""",
    ),
    (
        "operations",
        """CREATE TABLE operations (
            chain_id UUID NOT NULL,
            kind TEXT NOT NULL,
            operation_id UUID NOT NULL,
            store_id UUID,
            terminal_id UUID,
            customer_id UUID,
            request_hash TEXT NOT NULL,
            request JSONB NOT NULL,
            status TEXT NOT NULL,
            outcome JSONB,
            code TEXT,
            detail TEXT,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            completed_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (chain_id, kind, operation_id)
        )""",
    ),
    (
        "sale_lines",
        """CREATE TABLE sale_lines (
            chain_id UUID NOT NULL,
            sale_id UUID NOT NULL,
            line_no INTEGER NOT NULL,
            sku TEXT,
            barcode TEXT,
            name TEXT NOT NULL,
            quantity NUMERIC(18, 6) NOT NULL,
            unit_price NUMERIC(18, 4) NOT NULL,
            discount NUMERIC(18, 4) NOT NULL,
            amount NUMERIC(18, 4) NOT NULL,
            returned_quantity NUMERIC(18, 6) DEFAULT '0' NOT NULL,
            PRIMARY KEY (chain_id, sale_id, line_no)
        )""",
    ),
    (
        "payments",
        """CREATE TABLE payments (
            payment_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            customer_id UUID,
            operation_kind TEXT NOT NULL,
            operation_id UUID NOT NULL,
            method TEXT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (payment_id)
        )""",
    ),
    (
        "idempotency_keys",
        """CREATE TABLE idempotency_keys (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            chain_id UUID,
            operation_kind TEXT,
            operation_id UUID,
            status_code INTEGER,
            response JSONB,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            PRIMARY KEY (scope, key)
        )""",
        "CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at)",
    ),
)


def upgrade() -> None:
    create_messaging_tables()
    for _, *statements in _TABLES:
        for statement in statements:
            op.execute(statement)


def downgrade() -> None:
    for name, *_ in reversed(_TABLES):
        op.drop_table(name)
    drop_messaging_tables()
