"""Open debt (`rm_open_debt`, revision 0005) is recomputed only for the customers whose rows
can have changed it: a row changes a customer's open debt only through open lines
(`owed > 0`). `rm_sale_lines` gets a trigger function of its own that passes over lines owing
nothing before and after the statement (a sale paid in full, a return of such a line);
`rm_sales` one that passes over an inserted sale without open lines in `public` (its lines,
inserted by the same statement, are counted by the lines' trigger) and an updated sale whose
customer, store and due date stayed (a revoked discount). `rm_customers` keeps 0005's. The
two functions are written out here as `reporting.adapters.open_debt` has them at this revision
(docs/architecture.md, "Migrations"); 0005's `rm_refresh_open_debt` stays for `rm_customers`
(and for a rebuild started by a reporting instance that runs the code before this revision).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FUNCTION_0 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_open_debt_lines() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows WHERE owed > 0;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM old_rows WHERE owed > 0;
    ELSE
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM (SELECT customer_id FROM old_rows WHERE owed > 0
              UNION ALL SELECT customer_id FROM new_rows WHERE owed > 0) x;
    END IF;
    PERFORM public.rm_refresh_open_debt_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""

_FUNCTION_1 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_open_debt_sales() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows;
        IF TG_TABLE_SCHEMA = 'public' THEN
            SELECT array_agg(DISTINCT n.customer_id ORDER BY n.customer_id) INTO affected
            FROM new_rows n
            WHERE (SELECT bool_or(l.owed > 0) FROM public.rm_sale_lines l
                   WHERE l.chain_id = n.chain_id AND l.sale_id = n.sale_id);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT c.customer_id ORDER BY c.customer_id) INTO affected
        FROM (SELECT o.customer_id, n.customer_id AS new_customer_id
              FROM old_rows o FULL JOIN new_rows n
                ON n.chain_id = o.chain_id AND n.sale_id = o.sale_id
              WHERE (o.customer_id, o.store_id, o.due_date)
                    IS DISTINCT FROM (n.customer_id, n.store_id, n.due_date)) x,
             LATERAL (VALUES (x.customer_id), (x.new_customer_id)) AS c(customer_id)
        WHERE c.customer_id IS NOT NULL;
    END IF;
    PERFORM public.rm_refresh_open_debt_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""

_FUNCTIONS = {
    "rm_refresh_open_debt_lines": _FUNCTION_0,
    "rm_refresh_open_debt_sales": _FUNCTION_1,
}

_OPS = (
    ("insert", "NEW TABLE AS new_rows"),
    ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "OLD TABLE AS old_rows"),
)

#: (trigger name prefix, table, its function from this revision on)
_TRIGGERS = (
    ("rm_sale_lines_open_debt", "rm_sale_lines", "rm_refresh_open_debt_lines"),
    ("rm_sales_open_debt", "rm_sales", "rm_refresh_open_debt_sales"),
)


def _point_triggers(function_of: dict[str, str]) -> None:
    for name, table, _ in _TRIGGERS:
        for op_name, ref in _OPS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{op_name} ON {table}")
            op.execute(
                f"CREATE TRIGGER {name}_{op_name} AFTER {op_name.upper()} ON {table} "
                f"REFERENCING {ref} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION public.{function_of[table]}()"
            )


def upgrade() -> None:
    for function in _FUNCTIONS.values():
        op.execute(function)
    _point_triggers({table: function for _, table, function in _TRIGGERS})


def downgrade() -> None:
    # revision 0005's: one function recomputing every customer a statement touched
    _point_triggers({table: "rm_refresh_open_debt" for _, table, _ in _TRIGGERS})
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS public.{name}()")
