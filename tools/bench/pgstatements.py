"""PostgreSQL's time per service and per statement during a bench step (`--pg-statements`).

The process table says how much CPU PostgreSQL spends per request; this says on what. The
stack's PostgreSQL is started with `pg_stat_statements` loaded (every statement tracked, nested
ones in functions and triggers too, planning timed: `OPTIONS`). Before each step the counters
are reset; after its load every statement's calls, execution and planning time and rows are
read, grouped by database (each service has its own), and divided by the step's sales:

- `databases`: per database, the time of its top-level statements (what the service sent;
  a trigger's or a function's statements are inside the statement that fired them) and their
  calls, per sale;
- `top`: the statements with the most time, top-level or nested (`nested`), per sale, with
  calls per sale, mean time per call and rows per call.

A statement's time is the backend's wall time in it: its CPU, plus any wait for a lock or for
I/O. The bench's own queries (in the `postgres` database) are left out. Loading the extension
costs PostgreSQL a little CPU per statement, so a step measured with it is not compared with
one measured without it.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

#: the `-c` settings the stack's PostgreSQL is started with for `--pg-statements`
OPTIONS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_planning": "on",
    "pg_stat_statements.max": "5000",
}

#: the database the bench's own queries run in, left out of the figures
_OWN = "postgres"

_ROWS = (
    "SELECT d.datname, s.toplevel, s.query, s.calls, s.total_exec_time, s.total_plan_time,"
    " s.rows FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
)


async def _run(superuser_url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(superuser_url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def enable(superuser_url: str) -> None:
    """The extension's view, in the server's `postgres` database (its counters cover every
    database of the server)."""
    await _run(superuser_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


async def reset(superuser_url: str) -> None:
    await _run(superuser_url, "SELECT pg_stat_statements_reset()")


def _one_line(query: str, width: int = 160) -> str:
    text = re.sub(r"\s+", " ", query).strip()
    return text if len(text) <= width else text[: width - 3] + "..."


def summarize(rows: list[dict[str, Any]], sales: int, top: int = 12) -> dict[str, Any]:
    """`rows` as read from the view (`datname`, `toplevel`, `query`, `calls`,
    `total_exec_time`, `total_plan_time` in ms, `rows`); figures per sale."""
    per = max(1, sales)
    databases: dict[str, dict[str, float]] = {}
    statements = []
    for r in rows:
        if r["datname"] == _OWN or not r["calls"]:
            continue
        ms = float(r["total_exec_time"]) + float(r["total_plan_time"])
        if r["toplevel"]:
            d = databases.setdefault(r["datname"], {"ms_per_sale": 0.0, "calls_per_sale": 0.0})
            d["ms_per_sale"] += ms / per
            d["calls_per_sale"] += r["calls"] / per
        statements.append((ms, r))
    statements.sort(key=lambda item: item[0], reverse=True)
    total = sum(d["ms_per_sale"] for d in databases.values())
    return {
        "sales": sales,
        "ms_per_sale": round(total, 3),
        "databases": {
            name: {k: round(v, 3) for k, v in d.items()}
            for name, d in sorted(databases.items(), key=lambda kv: -kv[1]["ms_per_sale"])
        },
        "top": [
            {
                "database": r["datname"],
                "nested": not r["toplevel"],
                "ms_per_sale": round(ms / per, 3),
                "calls_per_sale": round(r["calls"] / per, 2),
                "mean_us": round(1000 * ms / r["calls"], 1),
                "rows_per_call": round(r["rows"] / r["calls"], 1),
                "query": _one_line(r["query"]),
            }
            for ms, r in statements[:top]
        ],
    }


async def read(superuser_url: str) -> list[dict[str, Any]]:
    """Every statement's counters since the last `reset`."""
    return [dict(r) for r in await _run(superuser_url, _ROWS)]


def table(steps: list[dict[str, Any]]) -> list[str]:
    """The report's lines: per step measured with `--pg-statements`, the time per database
    and the statements that took the most."""
    measured = [s for s in steps if s.get("pg_statements")]
    if not measured:
        return []
    out = [
        "",
        "PostgreSQL's time per sale (`--pg-statements`: `pg_stat_statements`, execution plus "
        "planning, the backend's wall time in the statement):",
        "",
    ]
    for s in measured:
        pg = s["pg_statements"]
        dbs = ", ".join(
            f"{name} {d['ms_per_sale']:.2f} ms ({d['calls_per_sale']:.1f} statements)"
            for name, d in pg["databases"].items()
        )
        out += [
            f"- {s['offered_rps']:g} req/s: **{pg['ms_per_sale']:.2f} ms per sale**: {dbs}",
            "",
            "| database | statement | ms per sale | calls per sale | mean us | rows per call |",
            "|---|---|---|---|---|---|",
        ]
        for t in pg["top"]:
            query = t["query"].replace("|", "\\|")
            nested = " (nested)" if t["nested"] else ""
            out.append(
                f"| {t['database']}{nested} | `{query}` | {t['ms_per_sale']:.3f} | "
                f"{t['calls_per_sale']:.2f} | {t['mean_us']:.0f} | {t['rows_per_call']:.1f} |"
            )
        out.append("")
    return out
