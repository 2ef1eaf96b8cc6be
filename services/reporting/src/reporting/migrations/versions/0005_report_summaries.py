"""Per-customer report sums kept by triggers, so a back-office page reads one page of customers
and not the whole chain (issue 15):

- `rm_open_debt`: open debt per customer, store and due date (Unpaid goods, Aging);
  `reporting.adapters.open_debt`;
- `rm_credit_totals`, `rm_credit_months`: Payment-Balance sums per customer, in total and at
  every UTC month start; `rm_bonus_totals`, `rm_bonus_months`: bonus balances the same way
  (Bonus statistics); `reporting.adapters.credit_ledger`;
- `rm_customers_chain_name`: customers in name order.

The tables are filled from the existing read models, so an existing database upgrades in place.
The functions and triggers are written out here as `reporting.adapters.open_debt` and
`credit_ledger` had them when this revision was made (docs/architecture.md, "Migrations"): a
later change to them comes with a revision of its own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# The recompute functions and their trigger functions (in `public`).

_FUNCTION_0 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_open_debt_of(target_schema text, affected uuid[])
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    cid uuid;
    pred text;
BEGIN
    IF affected IS NULL OR cardinality(affected) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(affected) <= 1000 THEN
        FOREACH cid IN ARRAY affected LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('rm_open_debt:' || cid::text, 0));
        END LOOP;
        -- a few customers: the open-lines index, customer by customer
        pred := 'l.customer_id = ANY($1)';
    ELSE
        -- a bulk statement: one hash join over the whole table
        pred := 'l.customer_id IN (SELECT unnest($1))';
    END IF;
    IF target_schema = 'public' AND cardinality(affected) <= 1000 THEN

        WITH fresh AS (
            SELECT l.chain_id, l.customer_id, s.store_id,
                   coalesce(s.due_date, date '9999-12-31') AS due_date,
                   coalesce(c.name, '') AS name, coalesce(c.vip, false) AS vip,
                   sum(l.owed) AS owed
            FROM public.rm_sale_lines l
            JOIN public.rm_sales s ON s.chain_id = l.chain_id AND s.sale_id = l.sale_id
            LEFT JOIN public.rm_customers c ON c.customer_id = l.customer_id
            WHERE l.owed > 0 AND l.customer_id = ANY(affected)
            GROUP BY 1, 2, 3, 4, 5, 6
        ), gone AS (
            DELETE FROM public.rm_open_debt d
            WHERE d.customer_id = ANY(affected) AND NOT EXISTS (
                SELECT 1 FROM fresh f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.store_id = d.store_id AND f.due_date = d.due_date)
        )
        INSERT INTO public.rm_open_debt AS d
            (chain_id, customer_id, store_id, due_date, name, vip, owed)
        SELECT * FROM fresh
        ON CONFLICT (chain_id, customer_id, store_id, due_date) DO UPDATE
            SET name = excluded.name, vip = excluded.vip, owed = excluded.owed
            WHERE (d.name, d.vip, d.owed) IS DISTINCT FROM
                  (excluded.name, excluded.vip, excluded.owed);
    ELSE
    EXECUTE format($q$
        WITH fresh AS (
            SELECT l.chain_id, l.customer_id, s.store_id,
                   coalesce(s.due_date, date '9999-12-31') AS due_date,
                   coalesce(c.name, '') AS name, coalesce(c.vip, false) AS vip,
                   sum(l.owed) AS owed
            FROM %1$I.rm_sale_lines l
            JOIN %1$I.rm_sales s ON s.chain_id = l.chain_id AND s.sale_id = l.sale_id
            LEFT JOIN %1$I.rm_customers c ON c.customer_id = l.customer_id
            WHERE l.owed > 0 AND %2$s
            GROUP BY 1, 2, 3, 4, 5, 6
        ), gone AS (
            DELETE FROM %1$I.rm_open_debt d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM fresh f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.store_id = d.store_id AND f.due_date = d.due_date)
        )
        INSERT INTO %1$I.rm_open_debt AS d
            (chain_id, customer_id, store_id, due_date, name, vip, owed)
        SELECT * FROM fresh
        ON CONFLICT (chain_id, customer_id, store_id, due_date) DO UPDATE
            SET name = excluded.name, vip = excluded.vip, owed = excluded.owed
            WHERE (d.name, d.vip, d.owed) IS DISTINCT FROM
                  (excluded.name, excluded.vip, excluded.owed)
    $q$, target_schema, pred) USING affected;
    END IF;
END
$fn$
"""

_FUNCTION_1 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_open_debt() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM (SELECT customer_id FROM old_rows UNION ALL SELECT customer_id FROM new_rows) x;
    END IF;
    PERFORM public.rm_refresh_open_debt_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""

_FUNCTION_2 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_credit_ledger_of(target_schema text,
    affected uuid[])
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    cid uuid;
    pred text;
BEGIN
    IF affected IS NULL OR cardinality(affected) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(affected) <= 1000 THEN
        FOREACH cid IN ARRAY affected LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('rm_credit_ledger:' || cid::text,
                0));
        END LOOP;
        pred := 'm.customer_id = ANY($1)';
    ELSE
        pred := 'm.customer_id IN (SELECT unnest($1))';
    END IF;
    -- month arithmetic on `timestamp` in UTC: on timestamptz it would follow the session's
    -- time zone (and its DST changes)
    IF target_schema = 'public' AND cardinality(affected) <= 1000 THEN

        WITH mv AS (
            SELECT m.chain_id, m.customer_id, m.at, m.payments - m.goods AS net,
                m.goods AS goods, m.payments AS payments,
                   date_trunc('month', m.at AT TIME ZONE 'UTC') AS month
            FROM public.rm_movements m
            WHERE m.bonus_kind IS NULL AND m.customer_id = ANY(affected)
        ), totals AS (
            SELECT chain_id, customer_id, min(at) AS first_at,
                   min(month) + interval '1 month' AS first_b,
                   max(month) + interval '1 month' AS last_b, sum(net) AS net,
                       sum(goods) AS goods, sum(payments) AS payments
            FROM mv GROUP BY chain_id, customer_id
        ), per_month AS (
            SELECT customer_id, month, sum(net) AS net, sum(goods) AS goods,
                sum(payments) AS payments
            FROM mv GROUP BY customer_id, month
        ), months AS (
            SELECT g.chain_id, g.customer_id, (g.b AT TIME ZONE 'UTC') AS boundary,
                sum(coalesce(p.net, 0)) OVER w AS net, sum(coalesce(p.goods,
                    0)) OVER w AS goods, sum(coalesce(p.payments, 0)) OVER w AS payments
            FROM (SELECT tt.chain_id, tt.customer_id, b
                  FROM totals tt, generate_series(tt.first_b, tt.last_b, interval '1 month') b
                 ) g
            LEFT JOIN per_month p
                ON p.customer_id = g.customer_id AND p.month = g.b - interval '1 month'
            WINDOW w AS (PARTITION BY g.customer_id ORDER BY g.b)
        ), gone_months AS (
            DELETE FROM public.rm_credit_months d
            WHERE d.customer_id = ANY(affected) AND NOT EXISTS (
                SELECT 1 FROM months f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.boundary = d.boundary)
        ), gone_totals AS (
            DELETE FROM public.rm_credit_totals d
            WHERE d.customer_id = ANY(affected) AND NOT EXISTS (
                SELECT 1 FROM totals f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id)
        ), put_totals AS (
            INSERT INTO public.rm_credit_totals AS d
                (chain_id, customer_id, first_at, first_boundary, last_boundary, net, goods,
                    payments
                 , name_key, vip)
            SELECT x.chain_id, x.customer_id, x.first_at,
                   x.first_b AT TIME ZONE 'UTC', x.last_b AT TIME ZONE 'UTC', x.net, x.goods,
                       x.payments
                   , coalesce(c.name_key, ''), coalesce(c.vip, false)
            FROM totals x LEFT JOIN public.rm_customers c ON c.customer_id = x.customer_id
            ON CONFLICT (chain_id, customer_id) DO UPDATE
                SET first_at = excluded.first_at, first_boundary = excluded.first_boundary,
                    last_boundary = excluded.last_boundary, net = excluded.net,
                        goods = excluded.goods, payments = excluded.payments,
                            name_key = excluded.name_key, vip = excluded.vip
                WHERE (d.first_at, d.first_boundary, d.last_boundary, d.net, d.goods,
                    d.payments, d.name_key, d.vip)
                      IS DISTINCT FROM
                      (excluded.first_at, excluded.first_boundary, excluded.last_boundary,
                          excluded.net, excluded.goods, excluded.payments
                       , excluded.name_key, excluded.vip)
        )
        INSERT INTO public.rm_credit_months AS d
            (chain_id, customer_id, boundary, net, goods, payments, vip)
        SELECT x.chain_id, x.customer_id, x.boundary, x.net, x.goods, x.payments,
            coalesce(c.vip, false)
        FROM months x LEFT JOIN public.rm_customers c ON c.customer_id = x.customer_id
        ON CONFLICT (chain_id, boundary, customer_id) DO UPDATE
            SET net = excluded.net, goods = excluded.goods, payments = excluded.payments,
                vip = excluded.vip
            WHERE (d.net, d.goods, d.payments, d.vip) IS DISTINCT FROM (excluded.net,
                excluded.goods, excluded.payments, excluded.vip);
    ELSE
    EXECUTE format($q$
        WITH mv AS (
            SELECT m.chain_id, m.customer_id, m.at, m.payments - m.goods AS net,
                m.goods AS goods, m.payments AS payments,
                   date_trunc('month', m.at AT TIME ZONE 'UTC') AS month
            FROM %1$I.rm_movements m
            WHERE m.bonus_kind IS NULL AND %2$s
        ), totals AS (
            SELECT chain_id, customer_id, min(at) AS first_at,
                   min(month) + interval '1 month' AS first_b,
                   max(month) + interval '1 month' AS last_b, sum(net) AS net,
                       sum(goods) AS goods, sum(payments) AS payments
            FROM mv GROUP BY chain_id, customer_id
        ), per_month AS (
            SELECT customer_id, month, sum(net) AS net, sum(goods) AS goods,
                sum(payments) AS payments
            FROM mv GROUP BY customer_id, month
        ), months AS (
            SELECT g.chain_id, g.customer_id, (g.b AT TIME ZONE 'UTC') AS boundary,
                sum(coalesce(p.net, 0)) OVER w AS net, sum(coalesce(p.goods,
                    0)) OVER w AS goods, sum(coalesce(p.payments, 0)) OVER w AS payments
            FROM (SELECT tt.chain_id, tt.customer_id, b
                  FROM totals tt, generate_series(tt.first_b, tt.last_b, interval '1 month') b
                 ) g
            LEFT JOIN per_month p
                ON p.customer_id = g.customer_id AND p.month = g.b - interval '1 month'
            WINDOW w AS (PARTITION BY g.customer_id ORDER BY g.b)
        ), gone_months AS (
            DELETE FROM %1$I.rm_credit_months d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM months f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.boundary = d.boundary)
        ), gone_totals AS (
            DELETE FROM %1$I.rm_credit_totals d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM totals f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id)
        ), put_totals AS (
            INSERT INTO %1$I.rm_credit_totals AS d
                (chain_id, customer_id, first_at, first_boundary, last_boundary, net, goods,
                    payments
                 , name_key, vip)
            SELECT x.chain_id, x.customer_id, x.first_at,
                   x.first_b AT TIME ZONE 'UTC', x.last_b AT TIME ZONE 'UTC', x.net, x.goods,
                       x.payments
                   , coalesce(c.name_key, ''), coalesce(c.vip, false)
            FROM totals x LEFT JOIN %1$I.rm_customers c ON c.customer_id = x.customer_id
            ON CONFLICT (chain_id, customer_id) DO UPDATE
                SET first_at = excluded.first_at, first_boundary = excluded.first_boundary,
                    last_boundary = excluded.last_boundary, net = excluded.net,
                        goods = excluded.goods, payments = excluded.payments,
                            name_key = excluded.name_key, vip = excluded.vip
                WHERE (d.first_at, d.first_boundary, d.last_boundary, d.net, d.goods,
                    d.payments, d.name_key, d.vip)
                      IS DISTINCT FROM
                      (excluded.first_at, excluded.first_boundary, excluded.last_boundary,
                          excluded.net, excluded.goods, excluded.payments
                       , excluded.name_key, excluded.vip)
        )
        INSERT INTO %1$I.rm_credit_months AS d
            (chain_id, customer_id, boundary, net, goods, payments, vip)
        SELECT x.chain_id, x.customer_id, x.boundary, x.net, x.goods, x.payments,
            coalesce(c.vip, false)
        FROM months x LEFT JOIN %1$I.rm_customers c ON c.customer_id = x.customer_id
        ON CONFLICT (chain_id, boundary, customer_id) DO UPDATE
            SET net = excluded.net, goods = excluded.goods, payments = excluded.payments,
                vip = excluded.vip
            WHERE (d.net, d.goods, d.payments, d.vip) IS DISTINCT FROM (excluded.net,
                excluded.goods, excluded.payments, excluded.vip)
    $q$, target_schema, pred) USING affected;
    END IF;
END
$fn$
"""

_FUNCTION_3 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_credit_ledger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows WHERE bonus_kind IS NULL;
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

_FUNCTION_4 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_credit_ledger_customers() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT n.customer_id ORDER BY n.customer_id) INTO affected
        FROM new_rows n LEFT JOIN old_rows o ON o.customer_id = n.customer_id
        WHERE o.customer_id IS NULL OR o.name_key IS DISTINCT FROM n.name_key
           OR o.vip IS DISTINCT FROM n.vip;
    END IF;
    PERFORM public.rm_refresh_credit_ledger_of(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""

_FUNCTION_5 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_bonus_ledger_of(target_schema text,
    affected uuid[])
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    cid uuid;
    pred text;
BEGIN
    IF affected IS NULL OR cardinality(affected) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(affected) <= 1000 THEN
        FOREACH cid IN ARRAY affected LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('rm_bonus_ledger:' || cid::text, 0));
        END LOOP;
        pred := 'm.customer_id = ANY($1)';
    ELSE
        pred := 'm.customer_id IN (SELECT unnest($1))';
    END IF;
    -- month arithmetic on `timestamp` in UTC: on timestamptz it would follow the session's
    -- time zone (and its DST changes)
    IF target_schema = 'public' AND cardinality(affected) <= 1000 THEN

        WITH mv AS (
            SELECT m.chain_id, m.customer_id, m.at, m.bonus_change AS balance,
                   date_trunc('month', m.at AT TIME ZONE 'UTC') AS month
            FROM public.rm_movements m
            WHERE m.bonus_kind IS NOT NULL AND m.customer_id = ANY(affected)
        ), totals AS (
            SELECT chain_id, customer_id,
                   min(month) + interval '1 month' AS first_b,
                   max(month) + interval '1 month' AS last_b, sum(balance) AS balance
            FROM mv GROUP BY chain_id, customer_id
        ), per_month AS (
            SELECT customer_id, month, sum(balance) AS balance
            FROM mv GROUP BY customer_id, month
        ), months AS (
            SELECT g.chain_id, g.customer_id, (g.b AT TIME ZONE 'UTC') AS boundary,
                sum(coalesce(p.balance, 0)) OVER w AS balance
            FROM (SELECT tt.chain_id, tt.customer_id, b
                  FROM totals tt, generate_series(tt.first_b, tt.last_b, interval '1 month') b
                 ) g
            LEFT JOIN per_month p
                ON p.customer_id = g.customer_id AND p.month = g.b - interval '1 month'
            WINDOW w AS (PARTITION BY g.customer_id ORDER BY g.b)
        ), gone_months AS (
            DELETE FROM public.rm_bonus_months d
            WHERE d.customer_id = ANY(affected) AND NOT EXISTS (
                SELECT 1 FROM months f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.boundary = d.boundary)
        ), gone_totals AS (
            DELETE FROM public.rm_bonus_totals d
            WHERE d.customer_id = ANY(affected) AND NOT EXISTS (
                SELECT 1 FROM totals f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id)
        ), put_totals AS (
            INSERT INTO public.rm_bonus_totals AS d
                (chain_id, customer_id, first_boundary, last_boundary, balance
                 )
            SELECT x.chain_id, x.customer_id,
                   x.first_b AT TIME ZONE 'UTC', x.last_b AT TIME ZONE 'UTC', x.balance

            FROM totals x
            ON CONFLICT (chain_id, customer_id) DO UPDATE
                SET first_boundary = excluded.first_boundary,
                    last_boundary = excluded.last_boundary, balance = excluded.balance
                WHERE (d.first_boundary, d.last_boundary, d.balance)
                      IS DISTINCT FROM
                      (excluded.first_boundary, excluded.last_boundary, excluded.balance
                       )
        )
        INSERT INTO public.rm_bonus_months AS d
            (chain_id, customer_id, boundary, balance)
        SELECT x.chain_id, x.customer_id, x.boundary, x.balance
        FROM months x
        ON CONFLICT (chain_id, boundary, customer_id) DO UPDATE
            SET balance = excluded.balance
            WHERE (d.balance) IS DISTINCT FROM (excluded.balance);
    ELSE
    EXECUTE format($q$
        WITH mv AS (
            SELECT m.chain_id, m.customer_id, m.at, m.bonus_change AS balance,
                   date_trunc('month', m.at AT TIME ZONE 'UTC') AS month
            FROM %1$I.rm_movements m
            WHERE m.bonus_kind IS NOT NULL AND %2$s
        ), totals AS (
            SELECT chain_id, customer_id,
                   min(month) + interval '1 month' AS first_b,
                   max(month) + interval '1 month' AS last_b, sum(balance) AS balance
            FROM mv GROUP BY chain_id, customer_id
        ), per_month AS (
            SELECT customer_id, month, sum(balance) AS balance
            FROM mv GROUP BY customer_id, month
        ), months AS (
            SELECT g.chain_id, g.customer_id, (g.b AT TIME ZONE 'UTC') AS boundary,
                sum(coalesce(p.balance, 0)) OVER w AS balance
            FROM (SELECT tt.chain_id, tt.customer_id, b
                  FROM totals tt, generate_series(tt.first_b, tt.last_b, interval '1 month') b
                 ) g
            LEFT JOIN per_month p
                ON p.customer_id = g.customer_id AND p.month = g.b - interval '1 month'
            WINDOW w AS (PARTITION BY g.customer_id ORDER BY g.b)
        ), gone_months AS (
            DELETE FROM %1$I.rm_bonus_months d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM months f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.boundary = d.boundary)
        ), gone_totals AS (
            DELETE FROM %1$I.rm_bonus_totals d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM totals f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id)
        ), put_totals AS (
            INSERT INTO %1$I.rm_bonus_totals AS d
                (chain_id, customer_id, first_boundary, last_boundary, balance
                 )
            SELECT x.chain_id, x.customer_id,
                   x.first_b AT TIME ZONE 'UTC', x.last_b AT TIME ZONE 'UTC', x.balance

            FROM totals x
            ON CONFLICT (chain_id, customer_id) DO UPDATE
                SET first_boundary = excluded.first_boundary,
                    last_boundary = excluded.last_boundary, balance = excluded.balance
                WHERE (d.first_boundary, d.last_boundary, d.balance)
                      IS DISTINCT FROM
                      (excluded.first_boundary, excluded.last_boundary, excluded.balance
                       )
        )
        INSERT INTO %1$I.rm_bonus_months AS d
            (chain_id, customer_id, boundary, balance)
        SELECT x.chain_id, x.customer_id, x.boundary, x.balance
        FROM months x
        ON CONFLICT (chain_id, boundary, customer_id) DO UPDATE
            SET balance = excluded.balance
            WHERE (d.balance) IS DISTINCT FROM (excluded.balance)
    $q$, target_schema, pred) USING affected;
    END IF;
END
$fn$
"""

_FUNCTION_6 = """
CREATE OR REPLACE FUNCTION public.rm_refresh_bonus_ledger() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected
        FROM new_rows WHERE bonus_kind IS NOT NULL;
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

_FUNCTIONS = (
    _FUNCTION_0,
    _FUNCTION_1,
    _FUNCTION_2,
    _FUNCTION_3,
    _FUNCTION_4,
    _FUNCTION_5,
    _FUNCTION_6,
)

_OPS = (
    ("insert", "NEW TABLE AS new_rows"),
    ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "OLD TABLE AS old_rows"),
)
#: (trigger name without the operation, table, trigger function)
_TRIGGERS = (
    ("rm_sale_lines_open_debt", "rm_sale_lines", "rm_refresh_open_debt"),
    ("rm_sales_open_debt", "rm_sales", "rm_refresh_open_debt"),
    ("rm_customers_open_debt", "rm_customers", "rm_refresh_open_debt"),
    ("rm_movements_credit_ledger", "rm_movements", "rm_refresh_credit_ledger"),
    ("rm_movements_bonus_ledger", "rm_movements", "rm_refresh_bonus_ledger"),
    ("rm_customers_credit_ledger", "rm_customers", "rm_refresh_credit_ledger_customers"),
)
#: every customer's rows from scratch
_BACKFILL = (
    "SELECT public.rm_refresh_open_debt_of(current_schema(), "
    "(SELECT array_agg(DISTINCT customer_id) FROM rm_sale_lines WHERE owed > 0))",
    "SELECT public.rm_refresh_credit_ledger_of(current_schema(), "
    "(SELECT array_agg(DISTINCT customer_id) FROM rm_movements WHERE bonus_kind IS NULL))",
    "SELECT public.rm_refresh_bonus_ledger_of(current_schema(), "
    "(SELECT array_agg(DISTINCT customer_id) FROM rm_movements WHERE bonus_kind IS NOT NULL))",
)


def _drop_triggers() -> None:
    for name, table, _ in _TRIGGERS:
        for op_name, _ in _OPS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{op_name} ON {table}")


def upgrade() -> None:
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
    for function in _FUNCTIONS:
        op.execute(function)
    _drop_triggers()
    for name, table, function in _TRIGGERS:
        for op_name, ref in _OPS:
            op.execute(
                f"CREATE TRIGGER {name}_{op_name} AFTER {op_name.upper()} ON {table} "
                f"REFERENCING {ref} FOR EACH STATEMENT EXECUTE FUNCTION public.{function}()"
            )
    for statement in _BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    _drop_triggers()
    op.execute("DROP FUNCTION IF EXISTS public.rm_refresh_credit_ledger_customers()")
    for function in ("rm_refresh_open_debt", "rm_refresh_credit_ledger", "rm_refresh_bonus_ledger"):
        op.execute(f"DROP FUNCTION IF EXISTS public.{function}()")
        op.execute(f"DROP FUNCTION IF EXISTS public.{function}_of(text, uuid[])")
    op.execute("DROP INDEX IF EXISTS rm_customers_chain_name")
    for table in (
        "rm_bonus_months",
        "rm_bonus_totals",
        "rm_credit_months",
        "rm_credit_totals",
        "rm_open_debt",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
