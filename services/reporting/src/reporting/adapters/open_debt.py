"""`rm_open_debt`: every customer's open debt per store and due date, kept current by triggers,
and the Unpaid goods and Aging page queries that read it (issue 15: a page reads one page of
customers, not the whole chain).

The rows are derived from `rm_sale_lines` (owed > 0), `rm_sales` (store, due date) and
`rm_customers` (name, VIP), exactly as the reports join them: statement-level triggers on those
three tables recompute the rows of every customer a statement touched, in the same
transaction, so whatever writes the base rows (the projection's handlers, a rebuild replaying
the log into its scratch schema, a snapshot being copied back, a bulk load, a test inserting
rows) leaves the summary equal to what the reports would compute from the base tables. The
recompute is per customer (a few rows) and order-free: a line inserted before its sale is
counted when the sale arrives.

The trigger function lives in `public` and works on the schema of the table that fired it
(`TG_TABLE_SCHEMA`), so the triggers of a rebuild's scratch tables, which are swapped into
`public` by `ALTER TABLE ... SET SCHEMA`, keep working after the swap. `credit_ledger`'s
summaries are kept the same way, with the trigger helpers below.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import tables as t

#: the due date stored for a sale without one (a primary key column cannot be NULL); it is in
#: the `current` aging bucket, as a missing due date is, and never leaves this module's queries
NO_DUE_DATE = date(9999, 12, 31)


# --------------------------------------------------------------------------- summary triggers
# What every summary kept by triggers shares (`credit_ledger`'s too): the statement-level
# triggers on its source tables, the trigger function gathering the customers a statement
# touched, and the start of the function recomputing those customers' rows (locking them).

#: up to this many customers per statement each get an advisory lock, so two transactions
#: touching one customer (a masterdata batch renaming them, a credit batch changing their
#: lines) recompute one after the other and the later one sees the earlier one's rows; bulk
#: statements above it (loads, backfills) run alone
LOCK_AT_MOST = 1000

#: the statements a summary's triggers fire after, each with the transition tables it has
_TRANSITIONS = (
    ("INSERT", "NEW TABLE AS new_rows"),
    ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("DELETE", "OLD TABLE AS old_rows"),
)

_AFFECTED = "SELECT array_agg(DISTINCT customer_id ORDER BY customer_id) INTO affected"


def create_triggers(table: str, name: str, function: str) -> list[str]:
    """The statement-level triggers `<table>_<name>_<insert|update|delete>` on `table` calling
    `public.<function>()`, unqualified: they are created in the schema the table is in (the
    migration's `public`, a rebuild's scratch schema)."""
    return [
        f"CREATE TRIGGER {table}_{name}_{op.lower()} AFTER {op} ON {table} "
        f"REFERENCING {ref} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION public.{function}()"
        for op, ref in _TRANSITIONS
    ]


def drop_triggers(table: str, name: str) -> list[str]:
    """`create_triggers(table, name, ...)` undone."""
    return [
        f"DROP TRIGGER IF EXISTS {table}_{name}_{op.lower()} ON {table}" for op, _ in _TRANSITIONS
    ]


def trigger_function_sql(
    function: str,
    recompute: str,
    *,
    where: str | None = None,
    on_update: str | None = None,
    on_insert: str = "",
    declare: str = "",
) -> str:
    """`public.<function>()`, the function of a summary's triggers: the customers in the rows
    the statement inserted, deleted or updated (old and new), those matching `where` when
    given, are recomputed by `public.<recompute>(TG_TABLE_SCHEMA, affected)`. `on_update`: the
    query gathering them after an UPDATE instead (it fills `affected`). `on_insert`: statements
    run after an INSERT's customers are gathered (they may take some out of `affected`), with
    the variables `declare` declares."""
    only = f" WHERE {where}" if where else ""
    updated = on_update or (
        f"{_AFFECTED}\n"
        f"        FROM (SELECT customer_id FROM old_rows{only}\n"
        f"              UNION ALL SELECT customer_id FROM new_rows{only}) x;"
    )
    return f"""
CREATE OR REPLACE FUNCTION public.{function}() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    affected uuid[];
{declare}BEGIN
    IF TG_OP = 'INSERT' THEN
        {_AFFECTED}
        FROM new_rows{only};{on_insert}
    ELSIF TG_OP = 'DELETE' THEN
        {_AFFECTED}
        FROM old_rows{only};
    ELSE
        {updated}
    END IF;
    PERFORM public.{recompute}(TG_TABLE_SCHEMA, affected);
    RETURN NULL;
END
$fn$
"""


def recompute_function_start(
    function: str, lock_name: str, alias: str, *, notes: tuple[str, str] | None = None
) -> str:
    """The start of `public.<function>(target_schema, affected)`, which recomputes a summary's
    rows of the customers `affected`: nothing for none; up to `LOCK_AT_MOST` customers each
    get the advisory lock `<lock_name>:<customer id>` and are found customer by customer
    (`pred`: `<alias>.customer_id = ANY($1)`), more by one hash join. The body that follows
    uses `pred` as its `%2$s`. `notes`: SQL comments on the two ways (few, bulk), where the
    function has them as its migration wrote it out (test_summary_functions_migrated)."""
    few, bulk = ("", "") if notes is None else (f"        -- {n}\n" for n in notes)
    return f"""
CREATE OR REPLACE FUNCTION public.{function}(target_schema text, affected uuid[])
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    cid uuid;
    pred text;
BEGIN
    IF affected IS NULL OR cardinality(affected) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(affected) <= {LOCK_AT_MOST} THEN
        FOREACH cid IN ARRAY affected LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('{lock_name}:' || cid::text, 0));
        END LOOP;
{few}        pred := '{alias}.customer_id = ANY($1)';
    ELSE
{bulk}        pred := '{alias}.customer_id IN (SELECT unnest($1))';
    END IF;
"""


def with_static_public(function_sql: str, alias: str, small: int = LOCK_AT_MOST) -> str:
    """The recompute function with its dynamic statement also written out for `public` and a
    few customers (the live projection's case): PL/pgSQL keeps the plan of a static statement
    for the session, while `EXECUTE` plans the whole statement again on every call."""
    start = function_sql.index("    EXECUTE format($q$")
    end = function_sql.index("    $q$, target_schema, pred) USING affected;")
    tail = "    $q$, target_schema, pred) USING affected;\n"
    body = function_sql[start + len("    EXECUTE format($q$") : end]
    static = (
        body.replace("%1$I.", "public.")
        .replace("%2$s", f"{alias}.customer_id = ANY(affected)")
        .replace("$1", "affected")
        .rstrip()
        + ";\n"
    )
    dynamic = function_sql[start:end] + tail
    return (
        function_sql[:start]
        + f"    IF target_schema = 'public' AND cardinality(affected) <= {small} THEN\n"
        + static
        + "    ELSE\n"
        + dynamic
        + "    END IF;\n"
        + function_sql[end + len(tail) :]
    )


# --------------------------------------------------------------------------- rm_open_debt


_RECOMPUTE_SQL = recompute_function_start(
    "rm_refresh_open_debt_of",
    "rm_open_debt",
    "l",
    notes=(
        "a few customers: the open-lines index, customer by customer",
        "a bulk statement: one hash join over the whole table",
    ),
) + (
    f"""\
    EXECUTE format($q$
        WITH fresh AS (
            SELECT l.chain_id, l.customer_id, s.store_id,
                   coalesce(s.due_date, date '{NO_DUE_DATE.isoformat()}') AS due_date,
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
END
$fn$
"""
)

# A row of the source tables changes a customer's open debt only through open lines (owed > 0)
# (migration 0007): the trigger of each table recomputes the customers whose rows can have
# changed it, and passes over the others. Most sales are paid in full: their lines owe
# nothing, so the sale's statement recomputes nobody, where it used to recompute its customer
# once for the sale and once for the lines. A sale on account is recomputed once, by its
# lines' trigger (migration 0008).

#: `rm_sale_lines`: a line that owes nothing before and after the statement counts for
#: nothing (a line paid in full, a return of such a line)
_LINES_TRIGGER_SQL = trigger_function_sql(
    "rm_refresh_open_debt_lines", "rm_refresh_open_debt_of", where="owed > 0"
)

#: an updated sale's customers, when its customer, store or due date changed: the two sides
#: paired by the sale's key (a side without its pair, a key that changed, counts as changed)
_SALES_MOVED = """SELECT array_agg(DISTINCT c.customer_id ORDER BY c.customer_id) INTO affected
        FROM (SELECT o.customer_id, n.customer_id AS new_customer_id
              FROM old_rows o FULL JOIN new_rows n
                ON n.chain_id = o.chain_id AND n.sale_id = o.sale_id
              WHERE (o.customer_id, o.store_id, o.due_date)
                    IS DISTINCT FROM (n.customer_id, n.store_id, n.due_date)) x,
             LATERAL (VALUES (x.customer_id), (x.new_customer_id)) AS c(customer_id)
        WHERE c.customer_id IS NOT NULL;"""

#: `rm_sales`: an inserted sale counts only if it has open lines that an earlier statement
#: stored (lines stored before their sale are counted when it comes), checked in `public` (a
#: rebuild's scratch schema recomputes every customer it inserts a sale of); an updated sale
#: only if its customer, store or due date changed (not for a revoked discount). Open lines
#: written by the sale's own statement (the projection stores a sale and its lines in one) are
#: the lines' trigger's to count (migration 0008): those rows carry the sale row's transaction
#: and command ids (`xmin`, `cmin`), as every part of one statement shares its command id. The
#: sale's row and then its lines are looked up by its key, per inserted sale, in scalar
#: subqueries (never turned into joins): a test of `owed > 0` in the lines' WHERE would let the
#: planner walk the chain's open lines (`rm_sale_lines_open_chain`) instead, and a join of the
#: inserted rows with `rm_sales` a scan of the whole table (seen with stale statistics).
_SALES_TRIGGER_SQL = trigger_function_sql(
    "rm_refresh_open_debt_sales",
    "rm_refresh_open_debt_of",
    on_insert="""
        IF TG_TABLE_SCHEMA = 'public' THEN
            SELECT array_agg(DISTINCT n.customer_id ORDER BY n.customer_id) INTO affected
            FROM new_rows n
            WHERE (SELECT (SELECT bool_or(l.owed > 0 AND NOT (l.xmin = s.xmin AND l.cmin = s.cmin))
                           FROM public.rm_sale_lines l
                           WHERE l.chain_id = n.chain_id AND l.sale_id = n.sale_id)
                   FROM public.rm_sales s
                   WHERE s.chain_id = n.chain_id AND s.sale_id = n.sale_id);
        END IF;""",
    on_update=_SALES_MOVED,
)

#: the functions (in `public`; the triggers of every schema call them), one statement each;
#: `rm_refresh_open_debt` serves `rm_customers` (a customer's name and VIP flag are on every
#: row of theirs)
FUNCTION_STATEMENTS: tuple[str, ...] = (
    with_static_public(_RECOMPUTE_SQL, "l"),
    trigger_function_sql("rm_refresh_open_debt", "rm_refresh_open_debt_of"),
    _LINES_TRIGGER_SQL,
    _SALES_TRIGGER_SQL,
)

#: the source tables and the trigger function of each
_SOURCES = {
    "rm_sale_lines": "rm_refresh_open_debt_lines",
    "rm_sales": "rm_refresh_open_debt_sales",
    "rm_customers": "rm_refresh_open_debt",
}


def trigger_statements() -> list[str]:
    """The triggers on the three source tables, unqualified: they are created in the schema
    the tables are in (the migration's `public`, a rebuild's scratch schema)."""
    return [
        statement
        for table, function in _SOURCES.items()
        for statement in create_triggers(table, "open_debt", function)
    ]


def drop_trigger_statements() -> list[str]:
    return [statement for table in _SOURCES for statement in drop_triggers(table, "open_debt")]


#: every customer's rows from scratch, in the current schema (the migration's backfill, a bulk
#: load's: `make bench-backoffice`)
BACKFILL_SQL = (
    "SELECT public.rm_refresh_open_debt_of(current_schema(), "
    "(SELECT array_agg(DISTINCT customer_id) FROM rm_sale_lines WHERE owed > 0))"
)


# --------------------------------------------------------------------------- page queries


def _filtered(chain_id: UUID, store_id: UUID | None, vip_only: bool) -> list[Any]:
    d = t.open_debt.c
    conds: list[Any] = [d.chain_id == chain_id]
    if store_id is not None:
        conds.append(d.store_id == store_id)
    if vip_only:
        conds.append(d.vip.is_(True))
    return conds


def bucket_conditions(today: date, due: Any = t.open_debt.c.due_date) -> dict[str, Any]:
    """`aging_bucket(days_past_due(due, today))` per bucket over a due date column
    (`rm_open_debt.due_date` unless told; `NO_DUE_DATE` is far in the future: `current`, as a
    missing due date is)."""
    days = sa.literal(today, sa.Date) - due  # whole days (date - date is an integer)
    return {
        "current": days <= 0,
        "d1_30": sa.and_(days > 0, days <= 30),
        "d31_60": sa.and_(days > 30, days <= 60),
        "d61_90": sa.and_(days > 60, days <= 90),
        "d90_plus": days > 90,
    }


def _customers_by_name(
    columns: list[Any],
    chain_id: UUID,
    store_id: UUID | None,
    vip_only: bool,
    position: tuple[str, UUID] | None,
    limit: int,
    *,
    from_position: bool,
) -> sa.Select[Any]:
    """`columns` grouped per customer, the first `limit` customers in (name, id) order after
    `position` (from it, included, with `from_position`): a walk of `rm_open_debt_page` that
    stops after the page (a streaming group per customer)."""
    d = t.open_debt.c
    stmt = (
        sa.select(*columns)
        .where(*_filtered(chain_id, store_id, vip_only))
        .group_by(d.chain_id, d.name, d.customer_id)
        .order_by(d.chain_id, d.name, d.customer_id)
        .limit(limit)
    )
    if position is not None:
        key = sa.tuple_(d.name, d.customer_id)
        at = sa.tuple_(
            sa.literal(position[0], sa.Text), sa.literal(position[1], d.customer_id.type)
        )
        stmt = stmt.where(key >= at if from_position else key > at)
    return stmt


def page_customers_query(
    chain_id: UUID,
    store_id: UUID | None,
    vip_only: bool,
    from_: tuple[str, UUID] | None,
    limit: int,
) -> sa.Select[Any]:
    """The ids of the first `limit` customers with open debt in (name, id) order from `from_`
    (included): every one has at least one open line under these filters, so the first
    `limit` lines of Unpaid goods from there belong to these customers."""
    d = t.open_debt.c
    return _customers_by_name(
        [d.customer_id], chain_id, store_id, vip_only, from_, limit, from_position=True
    )


class OpenDebt:
    """Aging's page statements, in the caller's session and transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def aging_rows(
        self,
        chain_id: UUID,
        store_id: UUID | None,
        vip_only: bool,
        today: date,
        after: tuple[str, UUID] | None,
        limit: int,
    ) -> Sequence[Any]:
        """Up to `limit` customers in (name, id) order after `after`, with their buckets:
        (customer_id, name, one column per bucket, total)."""
        d = t.open_debt.c
        zero = sa.literal(0, t.MONEY)
        columns = [
            d.customer_id,
            d.name,
            *[
                sa.func.coalesce(sa.func.sum(d.owed).filter(cond), zero).label(bucket)
                for bucket, cond in bucket_conditions(today).items()
            ],
            sa.func.sum(d.owed).label("total"),
        ]
        query = _customers_by_name(
            columns, chain_id, store_id, vip_only, after, limit, from_position=False
        )
        rows: Sequence[Any] = (await self.session.execute(query)).all()
        return rows

    async def aging_totals(
        self, chain_id: UUID, store_id: UUID | None, vip_only: bool, today: date
    ) -> Any:
        """The whole report's column totals (one column per bucket, total): the summary
        grouped by due date first (a few hundred dates), then bucketed."""
        d = t.open_debt.c
        per_day = (
            sa.select(d.due_date, sa.func.sum(d.owed).label("owed"))
            .where(*_filtered(chain_id, store_id, vip_only))
            .group_by(d.due_date)
            .subquery("per_day")
        )
        zero = sa.literal(0, t.MONEY)
        query = sa.select(
            *[
                sa.func.coalesce(sa.func.sum(per_day.c.owed).filter(cond), zero).label(bucket)
                for bucket, cond in bucket_conditions(today, per_day.c.due_date).items()
            ],
            sa.func.coalesce(sa.func.sum(per_day.c.owed), zero).label("total"),
        )
        return (await self.session.execute(query)).one()
