"""How `bench.pgstatements` turns pg_stat_statements' rows into a step's figures and the
report's lines."""

from __future__ import annotations

from typing import Any

from bench import pgstatements


def _row(db: str, query: str, calls: int, exec_ms: float, *, top: bool = True) -> dict[str, Any]:
    return {
        "datname": db,
        "toplevel": top,
        "query": query,
        "calls": calls,
        "total_exec_time": exec_ms,
        "total_plan_time": 1.0,
        "rows": calls * 2,
    }


ROWS = [
    _row("credit", "SELECT  *\n  FROM ledger WHERE id = $1", 20, 9.0),
    _row("credit", "INSERT INTO x SELECT 1", 10, 4.0, top=False),  # inside the one above
    _row("reporting", "INSERT INTO rm_sales VALUES ($1)", 10, 29.0),
    _row("postgres", "SELECT pg_stat_statements_reset()", 3, 500.0),  # the bench's own
    _row("loyalty", "SELECT 1", 0, 0.0),
]


def test_time_per_sale_counts_top_level_statements_per_database() -> None:
    found = pgstatements.summarize(ROWS, sales=10)
    # reporting first (most time); the nested insert is inside credit's select; no postgres
    assert found["databases"] == {
        "reporting": {"ms_per_sale": 3.0, "calls_per_sale": 1.0},
        "credit": {"ms_per_sale": 1.0, "calls_per_sale": 2.0},
    }
    assert found["ms_per_sale"] == 4.0
    assert [t["query"] for t in found["top"]] == [
        "INSERT INTO rm_sales VALUES ($1)",
        "SELECT * FROM ledger WHERE id = $1",  # white space folded
        "INSERT INTO x SELECT 1",
    ]
    first = found["top"][0]
    assert (first["mean_us"], first["rows_per_call"], first["nested"]) == (3000.0, 2.0, False)
    assert found["top"][2]["nested"] is True


def test_the_report_shows_a_measured_step_and_skips_the_others() -> None:
    step = {"offered_rps": 100.0, "pg_statements": pgstatements.summarize(ROWS, sales=10)}
    lines = pgstatements.table([{"offered_rps": 20.0}, step])
    text = "\n".join(lines)
    assert "- 100 req/s: **4.00 ms per sale**: reporting 3.00 ms (1.0 statements)" in text
    assert "| credit (nested) | `INSERT INTO x SELECT 1` | 0.500 | 1.00 | 500 | 2.0 |" in text
    assert "20 req/s" not in text
    assert pgstatements.table([{"offered_rps": 20.0}]) == []
