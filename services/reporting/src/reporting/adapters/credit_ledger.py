"""`rm_credit_totals` and `rm_credit_months`: every customer's Payment-Balance sums (payments -
goods, goods, payments of the credit movements) in total and as running sums at each UTC month
start, kept current by a trigger on `rm_movements`, and the per-customer sums of a period read
from them (issue 15: Payment-Balance without summing every movement of the chain).

For a customer and an instant T, "the sums of the movements before T" are read at the UTC month
start B nearest to T, then corrected by the movements between B and T (at most half a month of
the chain's movements, a few hours for a period of whole local months). At B:
- `rm_credit_months` has a row for every month start from the one after the customer's first
  movement's month to the one after their last movement's month (dense, so a page joins on
  equality at B instead of looking for each customer's latest row);
- before the first of those the sums are 0, after the last they are the totals.

A period's opening is the sums before its start; goods and payments are the sums before its end
minus those before its start; NUMERIC arithmetic is exact, so the figures equal summing the
movements as the report did (services/reporting/tests/integration/test_ledger_equals_reports.py).

The trigger recomputes the rows of every customer a statement touched (a few rows; one hash
join for a bulk statement), in the schema of the table that fired it, like `open_debt`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from reporting.adapters import tables as t
from reporting.adapters.open_debt import (
    LOCK_AT_MOST,
    create_triggers,
    drop_triggers,
    recompute_function_start,
    trigger_function_sql,
    with_static_public,
)


def _recompute_sql(ledger: str, where: str, columns: dict[str, str], first_at: bool) -> str:
    """The function recomputing one ledger's two tables (`rm_<ledger>_totals`,
    `rm_<ledger>_months`) for the customers given, from their movements matching `where`;
    `columns` the sums kept (name -> expression over a movement). The credit ledger
    (`first_at`) also keeps the customer's `name_key` and `vip` (from `rm_customers`, as the
    report joins them: '' and false without a row) on its rows, so pages filter and walk
    them without joining every customer."""
    names = list(columns)
    tot_attrs = {"name_key": "coalesce(c.name_key, '')", "vip": "coalesce(c.vip, false)"}
    month_attrs = {"vip": "coalesce(c.vip, false)"}
    if not first_at:
        tot_attrs, month_attrs = {}, {}
    join_c = "LEFT JOIN %1$I.rm_customers c ON c.customer_id = x.customer_id" if first_at else ""
    t_attr_cols = "".join(f", {n}" for n in tot_attrs)
    t_attr_vals = "".join(f", {e}" for e in tot_attrs.values())
    t_attr_set = "".join(f", {n} = excluded.{n}" for n in tot_attrs)
    t_attr_d = "".join(f", d.{n}" for n in tot_attrs)
    t_attr_x = "".join(f", excluded.{n}" for n in tot_attrs)
    m_attr_cols = "".join(f", {n}" for n in month_attrs)
    m_attr_vals = "".join(f", {e}" for e in month_attrs.values())
    m_attr_set = "".join(f", {n} = excluded.{n}" for n in month_attrs)
    m_attr_d = "".join(f", d.{n}" for n in month_attrs)
    m_attr_x = "".join(f", excluded.{n}" for n in month_attrs)
    x_plain = ", ".join(f"x.{n}" for n in names)
    x_first_col = "x.first_at, " if first_at else ""
    mv_cols = ", ".join(f"{expr} AS {name}" for name, expr in columns.items())
    sums = ", ".join(f"sum({n}) AS {n}" for n in names)
    running = ", ".join(f"sum(coalesce(p.{n}, 0)) OVER w AS {n}" for n in names)
    plain = ", ".join(names)
    set_ = ", ".join(f"{n} = excluded.{n}" for n in names)
    d_cols = ", ".join(f"d.{n}" for n in names)
    x_cols = ", ".join(f"excluded.{n}" for n in names)
    first = "min(at) AS first_at, " if first_at else ""
    first_col = "first_at, " if first_at else ""
    first_set = "first_at = excluded.first_at, " if first_at else ""
    d_first = "d.first_at, " if first_at else ""
    x_first = "excluded.first_at, " if first_at else ""
    start = recompute_function_start(f"rm_refresh_{ledger}_ledger_of", f"rm_{ledger}_ledger", "m")
    return with_static_public(
        start
        + f"""\
    -- month arithmetic on `timestamp` in UTC: on timestamptz it would follow the session's
    -- time zone (and its DST changes)
    EXECUTE format($q$
        WITH mv AS (
            SELECT m.chain_id, m.customer_id, m.at, {mv_cols},
                   date_trunc('month', m.at AT TIME ZONE 'UTC') AS month
            FROM %1$I.rm_movements m
            WHERE {where} AND %2$s
        ), totals AS (
            SELECT chain_id, customer_id, {first}
                   min(month) + interval '1 month' AS first_b,
                   max(month) + interval '1 month' AS last_b, {sums}
            FROM mv GROUP BY chain_id, customer_id
        ), per_month AS (
            SELECT customer_id, month, {sums}
            FROM mv GROUP BY customer_id, month
        ), months AS (
            SELECT g.chain_id, g.customer_id, (g.b AT TIME ZONE 'UTC') AS boundary, {running}
            FROM (SELECT tt.chain_id, tt.customer_id, b
                  FROM totals tt, generate_series(tt.first_b, tt.last_b, interval '1 month') b
                 ) g
            LEFT JOIN per_month p
                ON p.customer_id = g.customer_id AND p.month = g.b - interval '1 month'
            WINDOW w AS (PARTITION BY g.customer_id ORDER BY g.b)
        ), gone_months AS (
            DELETE FROM %1$I.rm_{ledger}_months d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM months f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id
                  AND f.boundary = d.boundary)
        ), gone_totals AS (
            DELETE FROM %1$I.rm_{ledger}_totals d
            WHERE d.customer_id = ANY($1) AND NOT EXISTS (
                SELECT 1 FROM totals f
                WHERE f.chain_id = d.chain_id AND f.customer_id = d.customer_id)
        ), put_totals AS (
            INSERT INTO %1$I.rm_{ledger}_totals AS d
                (chain_id, customer_id, {first_col}first_boundary, last_boundary, {plain}
                 {t_attr_cols})
            SELECT x.chain_id, x.customer_id, {x_first_col}
                   x.first_b AT TIME ZONE 'UTC', x.last_b AT TIME ZONE 'UTC', {x_plain}
                   {t_attr_vals}
            FROM totals x {join_c}
            ON CONFLICT (chain_id, customer_id) DO UPDATE
                SET {first_set}first_boundary = excluded.first_boundary,
                    last_boundary = excluded.last_boundary, {set_}{t_attr_set}
                WHERE ({d_first}d.first_boundary, d.last_boundary, {d_cols}{t_attr_d})
                      IS DISTINCT FROM
                      ({x_first}excluded.first_boundary, excluded.last_boundary, {x_cols}
                       {t_attr_x})
        )
        INSERT INTO %1$I.rm_{ledger}_months AS d
            (chain_id, customer_id, boundary, {plain}{m_attr_cols})
        SELECT x.chain_id, x.customer_id, x.boundary, {x_plain}{m_attr_vals}
        FROM months x {join_c}
        ON CONFLICT (chain_id, boundary, customer_id) DO UPDATE
            SET {set_}{m_attr_set}
            WHERE ({d_cols}{m_attr_d}) IS DISTINCT FROM ({x_cols}{m_attr_x})
    $q$, target_schema, pred) USING affected;
END
$fn$
""",
        "m",
    )


def _trigger_sql(ledger: str, where: str, columns: dict[str, str], first_at: bool) -> str:
    """The trigger function of a ledger on `rm_movements`: `trigger_function_sql`'s, with a
    fast path for the live projection's statements (an INSERT in `public` of a few customers'
    movements). A customer who has a ledger and whose new movements are not older than its
    first month gets them added to the rows they change: the totals, the month starts after
    each movement's month, and month starts appended up to the new last one. What that costs
    does not grow with the customer's history (the recompute reads every movement they ever
    had, and plans a statement of five parts, ~1.5 ms a sale even for a short history). The
    other customers of the statement (no ledger yet, a movement before the first month) and
    every UPDATE, DELETE, bulk statement or scratch schema are recomputed as before. Under the
    same advisory locks as the recompute, taken in the same order."""
    names = list(columns)
    at_least = "least(x.first_at, s.first_at), " if first_at else ""
    first_set = f"first_at = {at_least}" if first_at else ""
    first_sum = "min(m.at) AS first_at, " if first_at else ""
    first_s = "min(first_at) AS first_at, " if first_at else ""
    vip_col = ", vip" if first_at else ""
    vip_val = ", coalesce(c.vip, false)" if first_at else ""
    join_c = "LEFT JOIN public.rm_customers c ON c.customer_id = e.customer_id" if first_at else ""
    d_cols = ", ".join(f"sum({expr}) AS {name}" for name, expr in columns.items())
    dd_sums = ", ".join(f"sum(dd.{n}) AS {n}" for n in names)
    s_sums = ", ".join(f"sum({n}) AS {n}" for n in names)
    add = ", ".join(f"{n} = x.{n} + s.{n}" for n in names)
    ext = ",\n                       ".join(
        f"t.{n} + coalesce((SELECT sum(dd.{n}) FROM dd\n"
        "                           WHERE dd.customer_id = t.customer_id\n"
        f"                             AND dd.month + interval '1 month' <= g.b), 0) AS {n}"
        for n in names
    )
    e_cols = ", ".join(f"e.{n}" for n in names)
    plain = ", ".join(names)
    fast = f"""
        IF TG_TABLE_SCHEMA = 'public' AND cardinality(affected) <= {LOCK_AT_MOST} THEN
            FOREACH cid IN ARRAY affected LOOP
                PERFORM pg_advisory_xact_lock(
                    hashtextextended('rm_{ledger}_ledger:' || cid::text, 0));
            END LOOP;
            WITH d AS (
                SELECT m.chain_id, m.customer_id,
                       date_trunc('month', m.at AT TIME ZONE 'UTC') AS month, {first_sum}{d_cols}
                FROM new_rows m WHERE m.{where}
                GROUP BY 1, 2, 3
            ), t AS (
                SELECT x.* FROM public.rm_{ledger}_totals x
                JOIN (SELECT chain_id, customer_id, min(month) AS first_month FROM d
                      GROUP BY 1, 2) f
                  ON f.chain_id = x.chain_id AND f.customer_id = x.customer_id
                WHERE (f.first_month + interval '1 month') AT TIME ZONE 'UTC' >= x.first_boundary
            ), dd AS (
                SELECT d.* FROM d
                JOIN t ON t.chain_id = d.chain_id AND t.customer_id = d.customer_id
            ), grown AS (
                UPDATE public.rm_{ledger}_months x SET {add}
                FROM (SELECT mo.chain_id, mo.boundary, mo.customer_id, {dd_sums}
                      FROM public.rm_{ledger}_months mo
                      JOIN dd ON dd.chain_id = mo.chain_id AND dd.customer_id = mo.customer_id
                       AND (dd.month + interval '1 month') AT TIME ZONE 'UTC' <= mo.boundary
                      GROUP BY 1, 2, 3) s
                WHERE x.chain_id = s.chain_id AND x.boundary = s.boundary
                  AND x.customer_id = s.customer_id
            ), e AS (
                SELECT t.chain_id, t.customer_id, g.b, {ext}
                FROM t, generate_series(
                    (t.last_boundary AT TIME ZONE 'UTC') + interval '1 month',
                    (SELECT max(dd.month) FROM dd WHERE dd.customer_id = t.customer_id)
                        + interval '1 month',
                    interval '1 month') AS g(b)
            ), appended AS (
                INSERT INTO public.rm_{ledger}_months
                    (chain_id, customer_id, boundary, {plain}{vip_col})
                SELECT e.chain_id, e.customer_id, e.b AT TIME ZONE 'UTC', {e_cols}{vip_val}
                FROM e {join_c}
            ), totalled AS (
                UPDATE public.rm_{ledger}_totals x
                SET {first_set}last_boundary = greatest(x.last_boundary, s.last_b), {add}
                FROM (SELECT chain_id, customer_id, {first_s}
                             (max(month) + interval '1 month') AT TIME ZONE 'UTC' AS last_b,
                             {s_sums}
                      FROM dd GROUP BY 1, 2) s
                WHERE x.chain_id = s.chain_id AND x.customer_id = s.customer_id
                RETURNING x.customer_id
            )
            SELECT array_agg(customer_id) INTO added FROM totalled;
            affected := ARRAY(
                SELECT unnest(affected) EXCEPT SELECT unnest(coalesce(added, '{{}}'::uuid[]))
                ORDER BY 1);
        END IF;"""
    return trigger_function_sql(
        f"rm_refresh_{ledger}_ledger",
        f"rm_refresh_{ledger}_ledger_of",
        where=where,
        on_insert=fast,
        declare="    cid uuid;\n    added uuid[];\n",
    )


#: a customer's name or VIP flag changed (or their row arrived): their credit ledger rows
#: carry both
_CUSTOMERS_TRIGGER_SQL = trigger_function_sql(
    "rm_refresh_credit_ledger_customers",
    "rm_refresh_credit_ledger_of",
    on_update="""SELECT array_agg(DISTINCT n.customer_id ORDER BY n.customer_id) INTO affected
        FROM new_rows n LEFT JOIN old_rows o ON o.customer_id = n.customer_id
        WHERE o.customer_id IS NULL OR o.name_key IS DISTINCT FROM n.name_key
           OR o.vip IS DISTINCT FROM n.vip;""",
)

_CREDIT = "bonus_kind IS NULL"
_BONUS = "bonus_kind IS NOT NULL"
#: the sums each ledger keeps (name -> expression over a movement `m`)
_CREDIT_SUMS = {"net": "m.payments - m.goods", "goods": "m.goods", "payments": "m.payments"}
_BONUS_SUMS = {"balance": "m.bonus_change"}

#: the functions (in `public`; the triggers of every schema call them), one statement each:
#: the credit ledger (Payment-Balance) and the bonus ledger (Bonus statistics' balances)
FUNCTION_STATEMENTS: tuple[str, ...] = (
    _recompute_sql("credit", "m." + _CREDIT, _CREDIT_SUMS, first_at=True),
    _trigger_sql("credit", _CREDIT, _CREDIT_SUMS, first_at=True),
    _CUSTOMERS_TRIGGER_SQL,
    _recompute_sql("bonus", "m." + _BONUS, _BONUS_SUMS, first_at=False),
    _trigger_sql("bonus", _BONUS, _BONUS_SUMS, first_at=False),
)


def trigger_statements() -> list[str]:
    """The triggers on `rm_movements` and `rm_customers`, unqualified (created in the
    table's own schema)."""
    return [
        statement
        for ledger in ("credit", "bonus")
        for statement in create_triggers(
            "rm_movements", f"{ledger}_ledger", f"rm_refresh_{ledger}_ledger"
        )
    ] + create_triggers("rm_customers", "credit_ledger", "rm_refresh_credit_ledger_customers")


def drop_trigger_statements() -> list[str]:
    return [
        statement
        for ledger in ("credit", "bonus")
        for statement in drop_triggers("rm_movements", f"{ledger}_ledger")
    ] + drop_triggers("rm_customers", "credit_ledger")


#: every customer's rows from scratch, in the current schema (the migration's backfill, a
#: test's recompute)
BACKFILL_SQL = (
    "SELECT public.rm_refresh_credit_ledger_of(current_schema(), "
    "(SELECT array_agg(DISTINCT customer_id) FROM rm_movements WHERE bonus_kind IS NULL)), "
    "public.rm_refresh_bonus_ledger_of(current_schema(), "
    "(SELECT array_agg(DISTINCT customer_id) FROM rm_movements WHERE bonus_kind IS NOT NULL))"
)


# --------------------------------------------------------------------------- reading


def _month_start(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def nearest_boundary(moment: datetime) -> datetime:
    """The UTC month start nearest to `moment` (the earlier one on a tie)."""
    floor = _month_start(moment)
    ceiling = _next_month(floor)
    return floor if moment - floor <= ceiling - moment else ceiling


def _at(chain_id: UUID, moment: datetime, name: str) -> tuple[Any, Any, int, datetime]:
    """The month-start rows nearest to `moment` and the per-customer sums of the movements
    between that month start and `moment` (added when `moment` is later, else subtracted)."""
    b = nearest_boundary(moment)
    cm = t.credit_months.c
    months = (
        sa.select(cm.customer_id, cm.net, cm.goods, cm.payments)
        .where(cm.chain_id == chain_id, cm.boundary == b)
        .subquery(f"{name}_months")
    )
    m = t.movements.c
    low, high, sign = (b, moment, 1) if moment > b else (moment, b, -1)
    edge = (
        sa.select(
            m.customer_id,
            sa.func.sum(m.payments - m.goods).label("net"),
            sa.func.sum(m.goods).label("goods"),
            sa.func.sum(m.payments).label("payments"),
        )
        .where(m.chain_id == chain_id, m.bonus_kind.is_(None), m.at >= low, m.at < high)
        .group_by(m.customer_id)
        .subquery(f"{name}_edge")
    )
    return months, edge, sign, b


def period_sums(
    chain_id: UUID,
    lower: datetime | None,
    upper: datetime | None,
    customer_ids: list[UUID] | None = None,
) -> sa.Select[Any]:
    """(customer_id, opening, goods, payments) of every customer with a credit movement before
    `upper`, exactly as summing their movements gives them (all stores): one pass over the
    chain's `rm_credit_totals`, joined to the two month starts' rows and the edges."""
    tot = t.credit_totals.c
    zero = sa.literal(0, sa.Numeric)
    froms: sa.FromClause = t.credit_totals

    def before(moment: datetime | None, name: str) -> dict[str, sa.ColumnElement[Any]]:
        nonlocal froms
        if moment is None:
            return dict.fromkeys(("net", "goods", "payments"), zero)
        months, edge, sign, b = _at(chain_id, moment, name)
        froms = froms.outerjoin(months, months.c.customer_id == tot.customer_id).outerjoin(
            edge, edge.c.customer_id == tot.customer_id
        )
        after_last = sa.literal(b, tot.last_boundary.type) >= tot.last_boundary
        return {
            col: sa.func.coalesce(months.c[col], sa.case((after_last, tot[col]), else_=zero))
            + sign * sa.func.coalesce(edge.c[col], zero)
            for col in ("net", "goods", "payments")
        }

    start = before(lower, "lo")
    end = (
        before(upper, "hi")
        if upper is not None
        else {col: tot[col] for col in ("net", "goods", "payments")}
    )
    stmt = (
        sa.select(
            tot.customer_id,
            start["net"].label("opening"),
            (end["goods"] - start["goods"]).label("goods"),
            (end["payments"] - start["payments"]).label("payments"),
        )
        .select_from(froms)
        .where(tot.chain_id == chain_id)
    )
    if upper is not None:
        stmt = stmt.where(tot.first_at < upper)
    if customer_ids is not None:
        stmt = stmt.where(tot.customer_id.in_(customer_ids))
    return stmt


def _moved_near(chain_id: UUID, upper: datetime, b: datetime) -> sa.Subquery:
    """The customers with credit movements between the month start `b` and `upper`: the net
    of those movements (added when `upper` is later, else subtracted) and their
    `rm_credit_totals` figures."""
    tot = t.credit_totals.c
    m = t.movements.c
    low, high, sign = (b, upper, 1) if upper > b else (upper, b, -1)
    moved = (
        sa.select(m.customer_id, sa.func.sum(m.payments - m.goods).label("net"))
        .where(m.chain_id == chain_id, m.bonus_kind.is_(None), m.at >= low, m.at < high)
        .group_by(m.customer_id)
        .subquery("moved")
    )
    return (
        sa.select(
            moved.c.customer_id,
            (sign * moved.c.net).label("net"),
            tot.first_at,
            tot.first_boundary,
            tot.vip,
        )
        .select_from(
            moved.join(
                t.credit_totals,
                sa.and_(tot.chain_id == chain_id, tot.customer_id == moved.c.customer_id),
            )
        )
        .subquery("edge")
    )


def _closings_at(
    chain_id: UUID, upper: datetime, b: datetime, edge: sa.Subquery, vip_only: bool
) -> sa.Select[Any]:
    """The customers with a row at `b`: that row, corrected by their movements up to `upper`
    (those whose first movement is at or after `upper` have none before it)."""
    cm = t.credit_months.c
    at_b = (
        sa.select(
            cm.customer_id,
            sa.case((edge.c.customer_id.is_(None), cm.net), else_=cm.net + edge.c.net).label(
                "closing"
            ),
        )
        .select_from(t.credit_months.outerjoin(edge, edge.c.customer_id == cm.customer_id))
        .where(
            cm.chain_id == chain_id,
            cm.boundary == b,
            sa.or_(edge.c.customer_id.is_(None), edge.c.first_at < upper),
        )
    )
    return at_b.where(cm.vip.is_(True)) if vip_only else at_b


def _closings_totals(
    chain_id: UUID, vip_only: bool, *, last_before: datetime | None = None
) -> sa.Select[Any]:
    """The customers' totals (`last_before`: only of those whose last month is before it)."""
    tot = t.credit_totals.c
    stmt = sa.select(tot.customer_id, tot.net.label("closing")).where(tot.chain_id == chain_id)
    if last_before is not None:
        stmt = stmt.where(tot.last_boundary < last_before)
    return stmt.where(tot.vip.is_(True)) if vip_only else stmt


def _closings_before_first(
    upper: datetime, b: datetime, edge: sa.Subquery, vip_only: bool
) -> sa.Select[Any]:
    """The customers whose first month is after `b`: only their movements up to `upper`."""
    before = sa.select(edge.c.customer_id, edge.c.net.label("closing")).where(
        edge.c.first_boundary > b, edge.c.first_at < upper
    )
    return before.where(edge.c.vip.is_(True)) if vip_only else before


def closings(
    chain_id: UUID, upper: datetime | None, vip_only: bool = False
) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """(customer_id, closing) of every customer with a credit movement before `upper`: the
    sums before `upper` only (opening + payments - goods is payments - goods before the end).

    Three disjoint parts by where the month start B nearest to `upper` falls for a customer,
    so the chain's rows are read once without joining two 100,000-row sets: the customers
    with a row at B (that row, corrected by their movements between B and `upper`), those
    whose last month is before B (their totals), and those whose first month is after B (only
    their movements between B and `upper`). The few customers with movements between B and
    `upper` are the only ones looked up in `rm_credit_totals`."""
    if upper is None:
        return _closings_totals(chain_id, vip_only)
    b = nearest_boundary(upper)
    edge = _moved_near(chain_id, upper, b)
    return sa.union_all(
        _closings_at(chain_id, upper, b, edge, vip_only),
        _closings_totals(chain_id, vip_only, last_before=b),
        _closings_before_first(upper, b, edge, vip_only),
    )


def by_closing(
    chain_id: UUID,
    upper: datetime | None,
    vip_only: bool,
    after: tuple[Decimal, UUID] | None,
    limit: int,
) -> sa.Select[Any]:
    """The ids of the first `limit` customers of the report in (closing, id) order after
    `after`: every customer's closing (`closings`) and a top-N sort."""
    keys = closings(chain_id, upper, vip_only).subquery("keys")
    stmt = sa.select(keys.c.customer_id)
    if after is not None:
        stmt = stmt.where(
            sa.tuple_(keys.c.closing, keys.c.customer_id)
            > sa.tuple_(
                sa.literal(after[0], t.MONEY),
                sa.literal(after[1], t.credit_totals.c.customer_id.type),
            )
        )
    return stmt.order_by(keys.c.closing, keys.c.customer_id).limit(limit)


def named_period_sums(
    chain_id: UUID, lower: datetime | None, upper: datetime | None, customer_ids: list[UUID]
) -> sa.Select[Any]:
    """`period_sums` of these customers with their name, name_key and closing (a page's rows)."""
    c = t.customers.c
    sums = period_sums(chain_id, lower, upper, customer_ids).subquery("sums")
    return sa.select(
        sums,
        sa.func.coalesce(c.name, "").label("name"),
        sa.func.coalesce(c.name_key, "").collate("C").label("name_key"),
        (sums.c.opening + sums.c.payments - sums.c.goods).label("closing"),
    ).select_from(sums.outerjoin(t.customers, c.customer_id == sums.c.customer_id))


def by_name(
    chain_id: UUID,
    upper: datetime | None,
    vip_only: bool,
    after: tuple[str, UUID] | None,
    limit: int,
) -> sa.Select[Any]:
    """The ids of the first `limit` customers of the report in (name_key, id) order after
    `after`: a walk of `rm_credit_totals_name` that stops after the page."""
    tot = t.credit_totals.c
    stmt = sa.select(tot.customer_id, tot.name_key).where(tot.chain_id == chain_id)
    if upper is not None:
        stmt = stmt.where(tot.first_at < upper)
    if vip_only:
        stmt = stmt.where(tot.vip.is_(True))
    if after is not None:
        stmt = stmt.where(
            sa.tuple_(tot.name_key, tot.customer_id)
            > sa.tuple_(
                sa.literal(after[0], sa.Text).collate("C"),
                sa.literal(after[1], tot.customer_id.type),
            )
        )
    return stmt.order_by(tot.chain_id, tot.name_key, tot.customer_id).limit(limit)


def _chain_sums_before(
    chain_id: UUID, moment: datetime | None, vip_only: bool, name: str
) -> sa.Subquery:
    """One row (net, goods, payments): the chain's sums over every customer's movements before
    `moment` (all of them when None), from one aggregate per relation: the month start's rows,
    the totals of the customers whose last month is before it (`rm_credit_totals_last`), the
    movements between the month start and `moment`."""
    tot = t.credit_totals.c
    cm = t.credit_months.c
    m = t.movements.c
    cols = ("net", "goods", "payments")

    def only_vip(stmt: sa.Select[Any], vip: Any) -> sa.Select[Any]:
        return stmt.where(vip) if vip_only else stmt

    def sums(values: dict[str, Any]) -> list[Any]:
        return [sa.func.coalesce(sa.func.sum(v), 0).label(c) for c, v in values.items()]

    if moment is None:
        return only_vip(
            sa.select(*sums({c: tot[c] for c in cols})).where(tot.chain_id == chain_id),
            tot.vip.is_(True),
        ).subquery(name)
    b = nearest_boundary(moment)
    low, high, sign = (b, moment, 1) if moment > b else (moment, b, -1)
    months = only_vip(
        sa.select(*sums({c: cm[c] for c in cols})).where(cm.chain_id == chain_id, cm.boundary == b),
        cm.vip.is_(True),
    ).subquery(f"{name}_m")
    beyond = only_vip(
        sa.select(*sums({c: tot[c] for c in cols})).where(
            tot.chain_id == chain_id, tot.last_boundary < b
        ),
        tot.vip.is_(True),
    ).subquery(f"{name}_t")
    edge = only_vip(
        sa.select(
            *sums({"net": m.payments - m.goods, "goods": m.goods, "payments": m.payments})
        ).where(m.chain_id == chain_id, m.bonus_kind.is_(None), m.at >= low, m.at < high),
        # a few hundred movements: each customer's row by its key
        sa.exists().where(t.customers.c.customer_id == m.customer_id, t.customers.c.vip.is_(True)),
    ).subquery(f"{name}_e")
    return (
        sa.select(*[(months.c[c] + beyond.c[c] + sign * edge.c[c]).label(c) for c in cols])
        .select_from(months.join(beyond, sa.true()).join(edge, sa.true()))
        .subquery(name)
    )


def period_totals(
    chain_id: UUID, lower: datetime | None, upper: datetime | None, vip_only: bool
) -> sa.Select[Any]:
    """(t_opening, t_goods, t_payments) of the whole report: the sums of every row, computed
    from chain-wide sums (a customer outside the report adds 0 to each of them), of the VIP
    customers only with `vip_only`."""
    end = _chain_sums_before(chain_id, upper, vip_only, "hi")
    if lower is None:
        return sa.select(
            sa.literal(0, sa.Numeric).label("t_opening"),
            end.c.goods.label("t_goods"),
            end.c.payments.label("t_payments"),
        )
    start = _chain_sums_before(chain_id, lower, vip_only, "lo")
    return sa.select(
        start.c.net.label("t_opening"),
        (end.c.goods - start.c.goods).label("t_goods"),
        (end.c.payments - start.c.payments).label("t_payments"),
    ).select_from(start.join(end, sa.true()))


# --------------------------------------------------------------------------- bonus balances


def _bonus_edge(chain_id: UUID, moment: datetime, name: str) -> tuple[sa.Subquery, datetime]:
    """Per customer: the bonus movements between `moment`'s nearest month start and `moment`,
    signed (added when `moment` is later)."""
    b = nearest_boundary(moment)
    m = t.movements.c
    low, high, sign = (b, moment, 1) if moment > b else (moment, b, -1)
    edge = (
        sa.select(m.customer_id, (sign * sa.func.sum(m.bonus_change)).label("balance"))
        .where(m.chain_id == chain_id, m.bonus_kind.is_not(None), m.at >= low, m.at < high)
        .group_by(m.customer_id)
        .subquery(name)
    )
    return edge, b


def bonus_balances(chain_id: UUID, upper: datetime | None) -> sa.Select[Any]:
    """(customer_id, balance) of every customer with a bonus movement: the sum of its
    bonus_change before `upper` (all of them when None)."""
    tot = t.bonus_totals.c
    if upper is None:
        return sa.select(tot.customer_id, tot.balance).where(tot.chain_id == chain_id)
    edge, b = _bonus_edge(chain_id, upper, "bonus_edge")
    bm = t.bonus_months.c
    months = (
        sa.select(bm.customer_id, bm.balance)
        .where(bm.chain_id == chain_id, bm.boundary == b)
        .subquery("bonus_at")
    )
    zero = sa.literal(0, sa.Numeric)
    after_last = sa.literal(b, tot.last_boundary.type) >= tot.last_boundary
    at_b = sa.func.coalesce(months.c.balance, sa.case((after_last, tot.balance), else_=zero))
    balance = sa.case((edge.c.customer_id.is_(None), at_b), else_=at_b + edge.c.balance)
    return (
        sa.select(tot.customer_id, balance.label("balance"))
        .select_from(
            t.bonus_totals.outerjoin(months, months.c.customer_id == tot.customer_id).outerjoin(
                edge, edge.c.customer_id == tot.customer_id
            )
        )
        .where(tot.chain_id == chain_id)
    )


def bonus_outstanding(chain_id: UUID, upper: datetime | None) -> sa.Select[Any]:
    """(outstanding): the chain's bonus balances summed, before `upper`, from one aggregate per
    relation (the month start's rows, the customers whose last month is before it, the edge)."""
    tot = t.bonus_totals.c
    if upper is None:
        return sa.select(sa.func.coalesce(sa.func.sum(tot.balance), 0).label("outstanding")).where(
            tot.chain_id == chain_id
        )
    edge, b = _bonus_edge(chain_id, upper, "bonus_edge")
    bm = t.bonus_months.c
    months = (
        sa.select(sa.func.coalesce(sa.func.sum(bm.balance), 0).label("s"))
        .where(bm.chain_id == chain_id, bm.boundary == b)
        .subquery("m")
    )
    beyond = (
        sa.select(sa.func.coalesce(sa.func.sum(tot.balance), 0).label("s"))
        .where(tot.chain_id == chain_id, tot.last_boundary < b)
        .subquery("tb")
    )
    edges = sa.select(sa.func.coalesce(sa.func.sum(edge.c.balance), 0).label("s")).subquery("e")
    return sa.select((months.c.s + beyond.c.s + edges.c.s).label("outstanding")).select_from(
        months.join(beyond, sa.true()).join(edges, sa.true())
    )


def bonus_page(
    chain_id: UUID,
    upper: datetime | None,
    moved: sa.Select[Any],
    *,
    balance_counts: bool,
    vip_only: bool,
    after: UUID | None,
    limit: int,
) -> sa.Select[Any]:
    """The ids of Bonus statistics' next `limit` customers by id after `after`: those with a
    movement in the period (`moved`, their ids) or, when `balance_counts` (no store filter), a
    balance other than 0 at its end; VIP customers of the chain only with `vip_only`."""
    balances = bonus_balances(chain_id, upper).subquery("balances")
    chosen: sa.ColumnElement[bool] = balances.c.customer_id.in_(moved)
    if balance_counts:
        chosen = sa.or_(balances.c.balance != 0, chosen)
    stmt = sa.select(balances.c.customer_id).where(chosen)
    if vip_only:
        c = t.customers.c
        stmt = stmt.where(
            balances.c.customer_id.in_(
                sa.select(c.customer_id).where(c.vip.is_(True), c.chain_id == chain_id)
            )
        )
    if after is not None:
        stmt = stmt.where(balances.c.customer_id > after)
    return stmt.order_by(balances.c.customer_id).limit(limit)
