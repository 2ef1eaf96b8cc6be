"""Before each step the bench analyses the stack's databases, so the services' statements are
planned for what their tables hold, not for the empty tables the run started with."""

from __future__ import annotations

import asyncpg
from bench.pipeline import analyze_databases

from servicekit.settings import with_database


async def test_the_databases_named_are_analysed_with_what_their_tables_hold_now(
    database_server_url: str, fresh_database_url: str
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("CREATE TABLE grown (id int PRIMARY KEY)")
        await conn.execute("ANALYZE grown")  # planned while empty
        await conn.execute("INSERT INTO grown SELECT generate_series(1, 5000)")
        before = await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'grown'")
        name = await conn.fetchval("SELECT current_database()")
        took = await analyze_databases(with_database(database_server_url, "postgres"), [name])
        after = await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'grown'")
    finally:
        await conn.close()
    assert before <= 0, before
    assert after == 5000, after
    assert took >= 0
