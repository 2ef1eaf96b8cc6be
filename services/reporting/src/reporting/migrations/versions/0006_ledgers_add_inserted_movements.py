"""The report sums' ledgers on `rm_movements` (`rm_credit_*`, `rm_bonus_*`, revision 0005) take
what the live projection inserts as additions: a customer who has a ledger and whose new
movements are not older than its first month gets them added to the rows they change (the
totals, the month starts after each movement's month, month starts appended up to the new
last one) instead of a recompute from every movement they ever had. Every other case
(no ledger yet, an older movement, an UPDATE or DELETE, a bulk statement, a rebuild's scratch
schema) is recomputed as before. The two trigger functions are written out here as
`reporting.adapters.credit_ledger` has them at this revision (docs/architecture.md,
"Migrations"); the recompute functions and the triggers stay 0005's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FUNCTION_0 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_credit_ledger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
    cid uuid;
    added uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows WHERE bonus_kind IS NULL;
        IF TG_TABLE_SCHEMA = 'public' AND cardinality(affected) <= 1000 THEN
            FOREACH cid IN ARRAY affected LOOP
                PERFORM pg_advisory_xact_lock(
                    hashtextextended('rm_credit_ledger:' || cid::text, 0));
            END LOOP;
            WITH d AS (
                SELECT m.chain_id, m.customer_id,
                       date_trunc('month', m.at AT TIME ZONE 'UTC') AS month,
                           min(m.at) AS first_at, sum(m.payments - m.goods) AS net,
                           sum(m.goods) AS goods, sum(m.payments) AS payments
                FROM new_rows m WHERE m.bonus_kind IS NULL
                GROUP BY 1, 2, 3
            ), t AS (
                SELECT x.* FROM public.rm_credit_totals x
                JOIN (SELECT chain_id, customer_id, min(month) AS first_month FROM d
                      GROUP BY 1, 2) f
                  ON f.chain_id = x.chain_id AND f.customer_id = x.customer_id
                WHERE (f.first_month + interval '1 month') AT TIME ZONE 'UTC' >= x.first_boundary
            ), dd AS (
                SELECT d.* FROM d
                JOIN t ON t.chain_id = d.chain_id AND t.customer_id = d.customer_id
            ), grown AS (
                UPDATE public.rm_credit_months x SET net = x.net + s.net,
                    goods = x.goods + s.goods, payments = x.payments + s.payments
                FROM (SELECT mo.chain_id, mo.boundary, mo.customer_id, sum(dd.net) AS net,
                    sum(dd.goods) AS goods, sum(dd.payments) AS payments
                      FROM public.rm_credit_months mo
                      JOIN dd ON dd.chain_id = mo.chain_id AND dd.customer_id = mo.customer_id
                       AND (dd.month + interval '1 month') AT TIME ZONE 'UTC' <= mo.boundary
                      GROUP BY 1, 2, 3) s
                WHERE x.chain_id = s.chain_id AND x.boundary = s.boundary
                  AND x.customer_id = s.customer_id
            ), e AS (
                SELECT t.chain_id, t.customer_id, g.b,
                    t.net + coalesce((SELECT sum(dd.net) FROM dd
                           WHERE dd.customer_id = t.customer_id
                             AND dd.month + interval '1 month' <= g.b), 0) AS net,
                       t.goods + coalesce((SELECT sum(dd.goods) FROM dd
                           WHERE dd.customer_id = t.customer_id
                             AND dd.month + interval '1 month' <= g.b), 0) AS goods,
                       t.payments + coalesce((SELECT sum(dd.payments) FROM dd
                           WHERE dd.customer_id = t.customer_id
                             AND dd.month + interval '1 month' <= g.b), 0) AS payments
                FROM t, generate_series(
                    (t.last_boundary AT TIME ZONE 'UTC') + interval '1 month',
                    (SELECT max(dd.month) FROM dd WHERE dd.customer_id = t.customer_id)
                        + interval '1 month',
                    interval '1 month') AS g(b)
            ), appended AS (
                INSERT INTO public.rm_credit_months
                    (chain_id, customer_id, boundary, net, goods, payments, vip)
                SELECT e.chain_id, e.customer_id, e.b AT TIME ZONE 'UTC', e.net, e.goods,
                    e.payments, coalesce(c.vip, false)
                FROM e LEFT JOIN public.rm_customers c ON c.customer_id = e.customer_id
            ), totalled AS (
                UPDATE public.rm_credit_totals x
                SET first_at = least(x.first_at, s.first_at),
                    last_boundary = greatest(x.last_boundary, s.last_b), net = x.net + s.net,
                    goods = x.goods + s.goods, payments = x.payments + s.payments
                FROM (SELECT chain_id, customer_id, min(first_at) AS first_at,
                             (max(month) + interval '1 month') AT TIME ZONE 'UTC' AS last_b,
                             sum(net) AS net, sum(goods) AS goods, sum(payments) AS payments
                      FROM dd GROUP BY 1, 2) s
                WHERE x.chain_id = s.chain_id AND x.customer_id = s.customer_id
                RETURNING x.customer_id
            )
            SELECT array_agg(customer_id) INTO added FROM totalled;
            affected := ARRAY(
                SELECT unnest(affected) EXCEPT SELECT unnest(coalesce(added, '{}'::uuid[]))
                ORDER BY 1);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM old_rows WHERE bonus_kind IS NULL;
    ELSE
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM (SELECT customer_id FROM old_rows WHERE bonus_kind IS NULL
              UNION ALL SELECT customer_id FROM new_rows WHERE bonus_kind IS NULL) x;
    END IF;
    PERFORM public.rm_refresh_credit_ledger_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""

_FUNCTION_1 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_bonus_ledger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
    cid uuid;
    added uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows WHERE bonus_kind IS NOT NULL;
        IF TG_TABLE_SCHEMA = 'public' AND cardinality(affected) <= 1000 THEN
            FOREACH cid IN ARRAY affected LOOP
                PERFORM pg_advisory_xact_lock(
                    hashtextextended('rm_bonus_ledger:' || cid::text, 0));
            END LOOP;
            WITH d AS (
                SELECT m.chain_id, m.customer_id,
                       date_trunc('month', m.at AT TIME ZONE 'UTC') AS month,
                           sum(m.bonus_change) AS balance
                FROM new_rows m WHERE m.bonus_kind IS NOT NULL
                GROUP BY 1, 2, 3
            ), t AS (
                SELECT x.* FROM public.rm_bonus_totals x
                JOIN (SELECT chain_id, customer_id, min(month) AS first_month FROM d
                      GROUP BY 1, 2) f
                  ON f.chain_id = x.chain_id AND f.customer_id = x.customer_id
                WHERE (f.first_month + interval '1 month') AT TIME ZONE 'UTC' >= x.first_boundary
            ), dd AS (
                SELECT d.* FROM d
                JOIN t ON t.chain_id = d.chain_id AND t.customer_id = d.customer_id
            ), grown AS (
                UPDATE public.rm_bonus_months x SET balance = x.balance + s.balance
                FROM (SELECT mo.chain_id, mo.boundary, mo.customer_id,
                    sum(dd.balance) AS balance
                      FROM public.rm_bonus_months mo
                      JOIN dd ON dd.chain_id = mo.chain_id AND dd.customer_id = mo.customer_id
                       AND (dd.month + interval '1 month') AT TIME ZONE 'UTC' <= mo.boundary
                      GROUP BY 1, 2, 3) s
                WHERE x.chain_id = s.chain_id AND x.boundary = s.boundary
                  AND x.customer_id = s.customer_id
            ), e AS (
                SELECT t.chain_id, t.customer_id, g.b,
                    t.balance + coalesce((SELECT sum(dd.balance) FROM dd
                           WHERE dd.customer_id = t.customer_id
                             AND dd.month + interval '1 month' <= g.b), 0) AS balance
                FROM t, generate_series(
                    (t.last_boundary AT TIME ZONE 'UTC') + interval '1 month',
                    (SELECT max(dd.month) FROM dd WHERE dd.customer_id = t.customer_id)
                        + interval '1 month',
                    interval '1 month') AS g(b)
            ), appended AS (
                INSERT INTO public.rm_bonus_months
                    (chain_id, customer_id, boundary, balance)
                SELECT e.chain_id, e.customer_id, e.b AT TIME ZONE 'UTC', e.balance
                FROM e
            ), totalled AS (
                UPDATE public.rm_bonus_totals x
                SET last_boundary = greatest(x.last_boundary, s.last_b),
                    balance = x.balance + s.balance
                FROM (SELECT chain_id, customer_id,
                             (max(month) + interval '1 month') AT TIME ZONE 'UTC' AS last_b,
                             sum(balance) AS balance
                      FROM dd GROUP BY 1, 2) s
                WHERE x.chain_id = s.chain_id AND x.customer_id = s.customer_id
                RETURNING x.customer_id
            )
            SELECT array_agg(customer_id) INTO added FROM totalled;
            affected := ARRAY(
                SELECT unnest(affected) EXCEPT SELECT unnest(coalesce(added, '{}'::uuid[]))
                ORDER BY 1);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM old_rows WHERE bonus_kind IS NOT NULL;
    ELSE
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM (SELECT customer_id FROM old_rows WHERE bonus_kind IS NOT NULL
              UNION ALL SELECT customer_id FROM new_rows WHERE bonus_kind IS NOT NULL) x;
    END IF;
    PERFORM public.rm_refresh_bonus_ledger_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""

#: the trigger functions this revision replaces, by name
_FUNCTIONS = {"rm_refresh_credit_ledger": _FUNCTION_0, "rm_refresh_bonus_ledger": _FUNCTION_1}


def upgrade() -> None:
    for function in _FUNCTIONS.values():
        op.execute(function)


def downgrade() -> None:
    # revision 0005's functions: a recompute of the customers a statement touched
    for name in _FUNCTIONS:
        ledger = name.removeprefix("rm_refresh_").removesuffix("_ledger")
        where = "bonus_kind IS NULL" if ledger == "credit" else "bonus_kind IS NOT NULL"
        op.execute(
            f"""
CREATE OR REPLACE FUNCTION public.{name}() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows WHERE {where};
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM old_rows WHERE {where};
    ELSE
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM (SELECT customer_id FROM old_rows WHERE {where}
              UNION ALL SELECT customer_id FROM new_rows WHERE {where}) x;
    END IF;
    PERFORM public.{name}_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""
        )
