"""Per-customer report sums kept by triggers, so a back-office page reads one page of customers
and not the whole chain (issue 15):

- `rm_open_debt`: open debt per customer, store and due date (Unpaid goods, Aging);
  `reporting.adapters.open_debt`;
- `rm_credit_totals`, `rm_credit_months`: Payment-Balance sums per customer, in total and at
  every UTC month start; `rm_bonus_totals`, `rm_bonus_months`: bonus balances the same way
  (Bonus statistics); `reporting.adapters.credit_ledger`;
- `rm_customers_chain_name`: customers in name order.

The tables are filled from the existing read models, so an existing database upgrades in place.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from alembic import op

from reporting.adapters import credit_ledger, open_debt

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 creates the read models (these tables and their triggers included) from the current
    # `adapters.tables` on a fresh database: every step here is IF NOT EXISTS or replaces.
    op.execute(
        """CREATE TABLE IF NOT EXISTS rm_open_debt (
               chain_id uuid NOT NULL, customer_id uuid NOT NULL, store_id uuid NOT NULL,
               due_date date NOT NULL, name text NOT NULL, vip boolean NOT NULL,
               owed numeric(18, 4) NOT NULL,
               CONSTRAINT rm_open_debt_pkey
                   PRIMARY KEY (chain_id, customer_id, store_id, due_date))"""
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_open_debt_page ON rm_open_debt (chain_id, name, customer_id)"
    )
    op.execute("CREATE INDEX IF NOT EXISTS rm_open_debt_customer ON rm_open_debt (customer_id)")
    op.execute(
        """CREATE TABLE IF NOT EXISTS rm_credit_totals (
               chain_id uuid NOT NULL, customer_id uuid NOT NULL,
               first_at timestamptz NOT NULL, first_boundary timestamptz NOT NULL,
               last_boundary timestamptz NOT NULL,
               net numeric NOT NULL, goods numeric NOT NULL, payments numeric NOT NULL,
               name_key text COLLATE "C" NOT NULL, vip boolean NOT NULL,
               CONSTRAINT rm_credit_totals_pkey PRIMARY KEY (chain_id, customer_id))"""
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_credit_totals_name ON rm_credit_totals "
        "(chain_id, name_key, customer_id)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_credit_totals_customer ON rm_credit_totals (customer_id)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_credit_totals_last ON rm_credit_totals "
        "(chain_id, last_boundary) INCLUDE (customer_id, net, goods, payments)"
    )
    op.execute(
        """CREATE TABLE IF NOT EXISTS rm_credit_months (
               chain_id uuid NOT NULL, boundary timestamptz NOT NULL, customer_id uuid NOT NULL,
               net numeric NOT NULL, goods numeric NOT NULL, payments numeric NOT NULL,
               vip boolean NOT NULL,
               CONSTRAINT rm_credit_months_pkey PRIMARY KEY (chain_id, boundary, customer_id)
                   INCLUDE (net, goods, payments, vip))"""
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_credit_months_customer ON rm_credit_months (customer_id)"
    )
    op.execute(
        """CREATE TABLE IF NOT EXISTS rm_bonus_totals (
               chain_id uuid NOT NULL, customer_id uuid NOT NULL,
               first_boundary timestamptz NOT NULL, last_boundary timestamptz NOT NULL,
               balance numeric NOT NULL,
               CONSTRAINT rm_bonus_totals_pkey PRIMARY KEY (chain_id, customer_id))"""
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_bonus_totals_customer ON rm_bonus_totals (customer_id)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_bonus_totals_last ON rm_bonus_totals "
        "(chain_id, last_boundary) INCLUDE (customer_id, balance)"
    )
    op.execute(
        """CREATE TABLE IF NOT EXISTS rm_bonus_months (
               chain_id uuid NOT NULL, boundary timestamptz NOT NULL, customer_id uuid NOT NULL,
               balance numeric NOT NULL,
               CONSTRAINT rm_bonus_months_pkey PRIMARY KEY (chain_id, boundary, customer_id)
                   INCLUDE (balance))"""
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_bonus_months_customer ON rm_bonus_months (customer_id)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS rm_customers_chain_name "
        "ON rm_customers (chain_id, name, customer_id)"
    )
    for module in (open_debt, credit_ledger):
        for function in module.FUNCTION_STATEMENTS:
            op.execute(function)
        for statement in module.drop_trigger_statements() + module.trigger_statements():
            op.execute(statement)
        op.execute(module.BACKFILL_SQL)


def downgrade() -> None:
    for module in (open_debt, credit_ledger):
        for statement in module.drop_trigger_statements():
            op.execute(statement)
    op.execute("DROP FUNCTION IF EXISTS public.rm_refresh_credit_ledger_customers()")
    for function in ("rm_refresh_open_debt", "rm_refresh_credit_ledger", "rm_refresh_bonus_ledger"):
        op.execute(f"DROP FUNCTION IF EXISTS public.{function}()")
        op.execute(f"DROP FUNCTION IF EXISTS public.{function}_of(text, uuid[])")
    op.execute("DROP INDEX IF EXISTS rm_customers_chain_name")
    for table in (
        "rm_bonus_months", "rm_bonus_totals", "rm_credit_months", "rm_credit_totals",
        "rm_open_debt",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
