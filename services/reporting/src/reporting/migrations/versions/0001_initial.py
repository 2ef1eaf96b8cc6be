"""Initial schema: outbox/inbox and the read-model tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

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
        "rm_chains",
        """CREATE TABLE rm_chains (
            chain_id UUID NOT NULL,
            name TEXT NOT NULL,
            timezone TEXT NOT NULL,
            currency TEXT NOT NULL,
            minor_units INTEGER NOT NULL,
            credit_mode TEXT NOT NULL,
            PRIMARY KEY (chain_id)
        )""",
    ),
    (
        "rm_stores",
        """CREATE TABLE rm_stores (
            store_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            code TEXT NOT NULL,
            name TEXT NOT NULL,
            PRIMARY KEY (store_id)
        )""",
    ),
    (
        "rm_customers",
        """CREATE TABLE rm_customers (
            customer_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            name TEXT NOT NULL,
            phone TEXT,
            vip BOOLEAN NOT NULL,
            card_number TEXT,
            name_key TEXT NOT NULL,
            PRIMARY KEY (customer_id)
        )""",
        "CREATE INDEX rm_customers_chain ON rm_customers (chain_id)",
    ),
    (
        "rm_balances",
        """CREATE TABLE rm_balances (
            customer_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            debt NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            advance NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            bonus_balance NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            PRIMARY KEY (customer_id)
        )""",
        "CREATE INDEX rm_balances_chain ON rm_balances (chain_id)",
    ),
    (
        "rm_sales",
        """CREATE TABLE rm_sales (
            sale_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            customer_id UUID NOT NULL,
            store_id UUID NOT NULL,
            sold_at TIMESTAMP WITH TIME ZONE NOT NULL,
            due_date DATE,
            total NUMERIC(18, 4) NOT NULL,
            discount_revoked NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            CONSTRAINT rm_sales_pkey PRIMARY KEY (chain_id, sale_id)
        )""",
        "CREATE INDEX rm_sales_customer ON rm_sales (customer_id)",
    ),
    (
        "rm_sale_lines",
        """CREATE TABLE rm_sale_lines (
            sale_id UUID NOT NULL,
            line_no INTEGER NOT NULL,
            chain_id UUID NOT NULL,
            customer_id UUID NOT NULL,
            sku TEXT,
            barcode TEXT,
            name TEXT NOT NULL,
            quantity NUMERIC(24, 6) NOT NULL,
            returned_quantity NUMERIC(24, 6) DEFAULT '0' NOT NULL,
            amount NUMERIC(18, 4) NOT NULL,
            owed NUMERIC(18, 4) NOT NULL,
            CONSTRAINT rm_sale_lines_pkey PRIMARY KEY (chain_id, sale_id, line_no)
        )""",
        "CREATE INDEX rm_sale_lines_open_chain ON rm_sale_lines (chain_id) WHERE owed > 0",
        "CREATE INDEX rm_sale_lines_open_customer ON rm_sale_lines (customer_id) WHERE owed > 0",
    ),
    (
        "rm_movements",
        """CREATE TABLE rm_movements (
            message_id UUID NOT NULL,
            seq INTEGER NOT NULL,
            chain_id UUID NOT NULL,
            customer_id UUID NOT NULL,
            store_id UUID,
            at TIMESTAMP WITH TIME ZONE NOT NULL,
            kind TEXT NOT NULL,
            sale_id UUID,
            payment_id UUID,
            description TEXT NOT NULL,
            goods NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            payments NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            debt_change NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            advance_change NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            bonus_change NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            bonus_kind TEXT,
            bonus_amount NUMERIC(18, 4) DEFAULT '0' NOT NULL,
            bonus_movement_id UUID,
            PRIMARY KEY (message_id, seq)
        )""",
        (
            "CREATE INDEX rm_movements_bonus_movement ON rm_movements (bonus_movement_id) WHERE "
            "bonus_movement_id IS NOT NULL"
        ),
        "CREATE INDEX rm_movements_chain_at ON rm_movements (chain_id, at)",
        "CREATE INDEX rm_movements_customer_at ON rm_movements (customer_id, at)",
        (
            "CREATE INDEX rm_movements_pb_customer ON rm_movements (chain_id, customer_id, at) "
            "INCLUDE (store_id, goods, payments) WHERE bonus_kind IS NULL"
        ),
        (
            "CREATE INDEX rm_movements_pb_store ON rm_movements (chain_id, store_id, customer_id, "
            "at) INCLUDE (goods, payments) WHERE bonus_kind IS NULL"
        ),
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
