"""Initial schema: outbox/inbox, tasks, the overdue mirror and webhooks.

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
        "nt_chains",
        """CREATE TABLE nt_chains (
            chain_id UUID NOT NULL,
            timezone TEXT NOT NULL,
            minor_units INTEGER NOT NULL,
            reminder_repeat_days INTEGER NOT NULL,
            overdue_discount TEXT NOT NULL,
            reminder_email TEXT,
            name TEXT,
            currency TEXT,
            PRIMARY KEY (chain_id)
        )""",
    ),
    (
        "nt_customers",
        """CREATE TABLE nt_customers (
            customer_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            name TEXT DEFAULT '' NOT NULL,
            phone TEXT,
            PRIMARY KEY (customer_id)
        )""",
    ),
    (
        "nt_overdue_sales",
        """CREATE TABLE nt_overdue_sales (
            sale_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            customer_id UUID NOT NULL,
            sold_at TIMESTAMP WITH TIME ZONE NOT NULL,
            due_date DATE NOT NULL,
            discount NUMERIC(18, 4) NOT NULL,
            discount_revoked BOOLEAN NOT NULL,
            settled BOOLEAN DEFAULT false NOT NULL,
            CONSTRAINT nt_overdue_sales_pkey PRIMARY KEY (chain_id, sale_id)
        )""",
        "CREATE INDEX nt_overdue_sales_customer ON nt_overdue_sales (customer_id)",
    ),
    (
        "nt_overdue_lines",
        """CREATE TABLE nt_overdue_lines (
            sale_id UUID NOT NULL,
            line_no INTEGER NOT NULL,
            owed NUMERIC(18, 4) NOT NULL,
            chain_id UUID NOT NULL,
            CONSTRAINT nt_overdue_lines_pkey PRIMARY KEY (chain_id, sale_id, line_no)
        )""",
    ),
    (
        "nt_tasks",
        """CREATE TABLE nt_tasks (
            task_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            customer_id UUID NOT NULL,
            level INTEGER NOT NULL,
            status TEXT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            raised_at TIMESTAMP WITH TIME ZONE NOT NULL,
            closed_at TIMESTAMP WITH TIME ZONE,
            closed_reason TEXT,
            outcome TEXT,
            note TEXT,
            completed_by_user_id UUID,
            completed_by_name TEXT,
            sales JSONB DEFAULT '[]'::jsonb NOT NULL,
            PRIMARY KEY (task_id),
            CONSTRAINT nt_tasks_status CHECK (status IN ('open', 'done'))
        )""",
        "CREATE INDEX nt_tasks_customer ON nt_tasks (customer_id, raised_at)",
        "CREATE INDEX nt_tasks_list ON nt_tasks (chain_id, status, created_at, task_id)",
        (
            "CREATE UNIQUE INDEX nt_tasks_one_open_per_customer ON nt_tasks (customer_id) WHERE "
            "status = 'open'"
        ),
    ),
    (
        "nt_webhooks",
        """CREATE TABLE nt_webhooks (
            chain_id UUID NOT NULL,
            url TEXT NOT NULL,
            secret TEXT NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
            PRIMARY KEY (chain_id)
        )""",
    ),
    (
        "nt_webhook_deliveries",
        """CREATE TABLE nt_webhook_deliveries (
            delivery_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            task_id UUID NOT NULL,
            event_type TEXT NOT NULL,
            body BYTEA NOT NULL,
            status TEXT DEFAULT 'pending' NOT NULL,
            attempts INTEGER DEFAULT '0' NOT NULL,
            next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
            last_error TEXT,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            delivered_at TIMESTAMP WITH TIME ZONE,
            PRIMARY KEY (delivery_id)
        )""",
        (
            "CREATE INDEX nt_webhook_deliveries_due ON nt_webhook_deliveries (next_attempt_at) "
            "WHERE status = 'pending'"
        ),
    ),
    (
        "nt_webhook_dead_letters",
        """CREATE TABLE nt_webhook_dead_letters (
            delivery_id UUID NOT NULL,
            chain_id UUID NOT NULL,
            task_id UUID NOT NULL,
            url TEXT NOT NULL,
            body BYTEA NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT NOT NULL,
            failed_at TIMESTAMP WITH TIME ZONE NOT NULL,
            PRIMARY KEY (delivery_id)
        )""",
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
