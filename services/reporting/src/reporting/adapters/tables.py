"""The read-model tables of reporting, all rebuilt from the topics by `reporting.rebuild`.

Money is NUMERIC(18,4): the contracts allow currencies with up to 4 minor-unit digits, and
answers are rounded to the chain's own minor units when they are rendered. Every stored value
is a balance or one operation's amount, both below 10^13 (credit and loyalty refuse more:
`amount_out_of_range`); sums over periods and customers are computed in queries, unbounded.
Sales are keyed by (chain_id, sale_id): a POS chooses sale ids, unique within its chain only.
Every read-model table has a natural primary key (no sequences), so a rebuilt table can be
compared with the live one row by row whatever order the partitions were replayed in.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

MONEY = sa.Numeric(18, 4)
QUANTITY = sa.Numeric(24, 6)

metadata = sa.MetaData()

chains = sa.Table(
    "rm_chains",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("minor_units", sa.Integer, nullable=False),
    sa.Column("credit_mode", sa.Text, nullable=False),
)

stores = sa.Table(
    "rm_stores",
    metadata,
    sa.Column("store_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
)

customers = sa.Table(
    "rm_customers",
    metadata,
    sa.Column("customer_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("phone", sa.Text),
    sa.Column("vip", sa.Boolean, nullable=False),
    sa.Column("card_number", sa.Text),
    #: `name.casefold()`, the key of Payment-Balance's sort=name (compared in code-point order
    #: with COLLATE "C", as Python compares strings); set by the projection (migration 0002)
    sa.Column("name_key", sa.Text, nullable=False),
    sa.Index("rm_customers_chain", "chain_id"),
)

#: One row per customer with any money or bonus movement; debt/advance as credit last said.
balances = sa.Table(
    "rm_balances",
    metadata,
    sa.Column("customer_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("debt", MONEY, nullable=False, server_default="0"),
    sa.Column("advance", MONEY, nullable=False, server_default="0"),
    sa.Column("bonus_balance", MONEY, nullable=False, server_default="0"),
    sa.Index("rm_balances_chain", "chain_id"),
)

sales = sa.Table(
    "rm_sales",
    metadata,
    sa.Column("sale_id", UUID(as_uuid=True), nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("store_id", UUID(as_uuid=True), nullable=False),
    sa.Column("sold_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_date", sa.Date),
    sa.Column("total", MONEY, nullable=False),
    sa.Column("discount_revoked", MONEY, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("chain_id", "sale_id", name="rm_sales_pkey"),
    sa.Index("rm_sales_customer", "customer_id"),
)

#: Debt is kept per receipt line in every credit mode (credit's `lines_changed`).
sale_lines = sa.Table(
    "rm_sale_lines",
    metadata,
    sa.Column("sale_id", UUID(as_uuid=True), nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text),
    sa.Column("barcode", sa.Text),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("quantity", QUANTITY, nullable=False),
    sa.Column("returned_quantity", QUANTITY, nullable=False, server_default="0"),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("owed", MONEY, nullable=False),
    sa.PrimaryKeyConstraint("chain_id", "sale_id", "line_no", name="rm_sale_lines_pkey"),
    sa.Index("rm_sale_lines_open_customer", "customer_id", postgresql_where=sa.text("owed > 0")),
    sa.Index("rm_sale_lines_open_chain", "chain_id", postgresql_where=sa.text("owed > 0")),
)

#: Every money and bonus movement of a customer (statement, payment-balance, bonus stats).
#: `goods` and `payments` are the movement's share of the Payment-Balance report, so that
#: payments - goods is the change of (advance - debt); `*_change` are the statement columns.
movements = sa.Table(
    "rm_movements",
    metadata,
    sa.Column("message_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("store_id", UUID(as_uuid=True)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("sale_id", UUID(as_uuid=True)),
    sa.Column("payment_id", UUID(as_uuid=True)),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("goods", MONEY, nullable=False, server_default="0"),
    sa.Column("payments", MONEY, nullable=False, server_default="0"),
    sa.Column("debt_change", MONEY, nullable=False, server_default="0"),
    sa.Column("advance_change", MONEY, nullable=False, server_default="0"),
    sa.Column("bonus_change", MONEY, nullable=False, server_default="0"),
    #: the bonus ledger's movement kind (accrued, spent, ...) for bonus movements
    sa.Column("bonus_kind", sa.Text),
    sa.Column("bonus_amount", MONEY, nullable=False, server_default="0"),
    #: loyalty's movement id (bonus movements): loyalty.BonusesVoided names the ones to drop
    sa.Column("bonus_movement_id", UUID(as_uuid=True)),
    sa.Index("rm_movements_customer_at", "customer_id", "at"),
    sa.Index(
        "rm_movements_bonus_movement",
        "bonus_movement_id",
        postgresql_where=sa.text("bonus_movement_id IS NOT NULL"),
    ),
    sa.Index("rm_movements_chain_at", "chain_id", "at"),
    # Payment-Balance (migration 0002): the credit movements of a chain in customer order with
    # the summed columns included, so the per-customer sums are one index-only scan and a
    # streaming GroupAggregate (no sort, no heap visits)
    sa.Index(
        "rm_movements_pb_customer",
        "chain_id",
        "customer_id",
        "at",
        postgresql_include=["store_id", "goods", "payments"],
        postgresql_where=sa.text("bonus_kind IS NULL"),
    ),
    sa.Index(
        "rm_movements_pb_store",
        "chain_id",
        "store_id",
        "customer_id",
        "at",
        postgresql_include=["goods", "payments"],
        postgresql_where=sa.text("bonus_kind IS NULL"),
    ),
)

#: Open debt per customer, store and due date (`reporting.adapters.open_debt`): derived from
#: rm_sale_lines, rm_sales and rm_customers by triggers on them, so that Unpaid goods and Aging
#: read one page of customers in name order (`rm_open_debt_page`) and totals per due date.
open_debt = sa.Table(
    "rm_open_debt",
    metadata,
    sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
    sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("store_id", UUID(as_uuid=True), nullable=False),
    #: the sale's due date, `open_debt.NO_DUE_DATE` for a sale without one
    sa.Column("due_date", sa.Date, nullable=False),
    #: `coalesce(rm_customers.name, '')` and `coalesce(rm_customers.vip, false)`
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("vip", sa.Boolean, nullable=False),
    sa.Column("owed", MONEY, nullable=False),
    sa.PrimaryKeyConstraint(
        "chain_id", "customer_id", "store_id", "due_date", name="rm_open_debt_pkey"
    ),
    sa.Index("rm_open_debt_page", "chain_id", "name", "customer_id"),
    sa.Index("rm_open_debt_customer", "customer_id"),
)


def _sum(name: str) -> sa.Column[Any]:
    """A ledger's sum (unbounded: sums over all time)."""
    return sa.Column(name, sa.Numeric, nullable=False)


def _ledger_totals(name: str, *columns: sa.Column[Any] | sa.Index, sums: list[str]) -> sa.Table:
    """A ledger's row per customer, keyed by chain and customer: its `columns`, among them
    `_boundaries` (the first and last month start its `_ledger_months` table has a row for)
    and its `sums` in total."""
    return sa.Table(
        name,
        metadata,
        sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
        sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
        *columns,
        sa.PrimaryKeyConstraint("chain_id", "customer_id", name=f"{name}_pkey"),
        sa.Index(f"{name}_customer", "customer_id"),
        # the report's totals: the customers whose last month start is before a given one
        sa.Index(
            f"{name}_last",
            "chain_id",
            "last_boundary",
            postgresql_include=["customer_id", *sums],
        ),
    )


def _boundaries() -> tuple[sa.Column[Any], sa.Column[Any]]:
    """`first_boundary` and `last_boundary` of a `_ledger_totals` table."""
    return (
        sa.Column("first_boundary", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_boundary", sa.DateTime(timezone=True), nullable=False),
    )


def _ledger_months(name: str, *columns: sa.Column[Any]) -> sa.Table:
    """A ledger's `columns` per customer before each UTC month start `boundary`, for every
    month start from first_boundary to last_boundary of the customer (dense)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("chain_id", UUID(as_uuid=True), nullable=False),
        sa.Column("boundary", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", UUID(as_uuid=True), nullable=False),
        *columns,
        # a page reads one month start's rows of the whole chain: index-only, in customer order
        sa.PrimaryKeyConstraint(
            "chain_id",
            "boundary",
            "customer_id",
            name=f"{name}_pkey",
            postgresql_include=[c.name for c in columns],
        ),
        sa.Index(f"{name}_customer", "customer_id"),
    )


#: Payment-Balance sums per customer (`reporting.adapters.credit_ledger`), derived from the
#: credit movements (bonus_kind IS NULL) of rm_movements by a trigger on it: the totals, the
#: first movement and the first and last month start `rm_credit_months` has a row for.
credit_totals = _ledger_totals(
    "rm_credit_totals",
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    *_boundaries(),
    #: sums of payments - goods, goods, payments
    _sum("net"),
    _sum("goods"),
    _sum("payments"),
    #: `coalesce(rm_customers.name_key, '')` (compared in code-point order, as sort=name does)
    #: and `coalesce(rm_customers.vip, false)`: a page walks and filters these rows alone
    sa.Column("name_key", sa.Text(collation="C"), nullable=False),
    sa.Column("vip", sa.Boolean, nullable=False),
    sa.Index("rm_credit_totals_name", "chain_id", "name_key", "customer_id"),
    sums=["net", "goods", "payments"],
)

#: The same sums over the credit movements before each UTC month start (`_ledger_months`).
credit_months = _ledger_months(
    "rm_credit_months",
    _sum("net"),
    _sum("goods"),
    _sum("payments"),
    sa.Column("vip", sa.Boolean, nullable=False),
)

#: Bonus statistics' balances per customer (`credit_ledger`, the bonus ledger): the sum of
#: bonus_change of the bonus movements (bonus_kind IS NOT NULL), in total and before each UTC
#: month start from first_boundary to last_boundary (dense), as for the credit ledger.
bonus_totals = _ledger_totals("rm_bonus_totals", *_boundaries(), _sum("balance"), sums=["balance"])

bonus_months = _ledger_months("rm_bonus_months", _sum("balance"))

#: Derived tables: recomputed by triggers from the others, so a snapshot's copy of them is not
#: inserted back (the copied base rows fire the triggers); compared by a rebuild like the rest.
DERIVED_TABLES: tuple[sa.Table, ...] = (
    open_debt,
    credit_totals,
    credit_months,
    bonus_totals,
    bonus_months,
)

READ_MODEL_TABLES: tuple[sa.Table, ...] = (
    chains,
    stores,
    customers,
    balances,
    sales,
    sale_lines,
    movements,
    open_debt,
    credit_totals,
    credit_months,
    bonus_totals,
    bonus_months,
)

# Pages walk customers in name order (migration 0005).
sa.Index("rm_customers_chain_name", customers.c.chain_id, customers.c.name, customers.c.customer_id)


def _create_summary_triggers(target: sa.Table, connection: sa.Connection, **_: object) -> None:
    """Tables made by `create_all` (migration 0001 on a fresh database, a rebuild's scratch
    schema) get the triggers migration 0005 gave the live ones: a rebuild's tables are swapped
    into `public` with their triggers."""
    from reporting.adapters import credit_ledger, open_debt

    for module in (open_debt, credit_ledger):
        for function in module.FUNCTION_STATEMENTS:
            connection.execute(sa.text(function))
        for statement in module.trigger_statements():
            if f" ON {target.name} " in statement:
                connection.execute(sa.text(statement))


for _source in (sale_lines, sales, customers, movements):
    sa.event.listen(_source, "after_create", _create_summary_triggers)
