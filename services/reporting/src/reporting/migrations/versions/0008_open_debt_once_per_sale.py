"""A sale stored with its open lines in one statement (the projection's `SaleCompleted` on
account) recomputes its customer's open debt once, by the lines' trigger, instead of twice:
`rm_refresh_open_debt_sales` (revision 0007) passes over an inserted sale whose open lines were
all written by the sale's own statement. Such rows carry the sale row's transaction and command
ids (`xmin`, `cmin`): every part of one statement shares its command id. Lines stored by an
earlier statement (before their sale) are still counted when it comes. The sale's row and then
its lines are looked up by its key, per inserted sale, in scalar subqueries (a join of the
inserted rows with `rm_sales` let the planner scan the whole table with stale statistics). The
function is written out here as `reporting.adapters.open_debt` has it at this revision
(docs/architecture.md, "Migrations"); the triggers stay 0007's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SALES_FUNCTION = """
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
            WHERE {open_lines};
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
    "rm_refresh_open_debt_sales": _SALES_FUNCTION.format(
        open_lines="""(SELECT (SELECT bool_or(l.owed > 0
                                         AND NOT (l.xmin = s.xmin AND l.cmin = s.cmin))
                           FROM public.rm_sale_lines l
                           WHERE l.chain_id = n.chain_id AND l.sale_id = n.sale_id)
                   FROM public.rm_sales s
                   WHERE s.chain_id = n.chain_id AND s.sale_id = n.sale_id)"""
    ),
}


def upgrade() -> None:
    for function in _FUNCTIONS.values():
        op.execute(function)


def downgrade() -> None:
    # revision 0007's: an inserted sale counts if it has any open line
    op.execute(
        _SALES_FUNCTION.format(
            open_lines="""(SELECT bool_or(l.owed > 0) FROM public.rm_sale_lines l
                   WHERE l.chain_id = n.chain_id AND l.sale_id = n.sale_id)"""
        )
    )
