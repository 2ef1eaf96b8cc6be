"""The migrations create exactly the tables and columns the code declares."""

from __future__ import annotations

import sqlalchemy as sa

from credit.adapters.tables import metadata


async def test_migrated_database_matches_the_declared_tables(harness) -> None:
    async with harness.sf() as session:
        rows = (
            await session.execute(
                sa.text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
                )
            )
        ).all()
    in_database = {(r.table_name, r.column_name) for r in rows}
    declared = {(t.name, c.name) for t in metadata.tables.values() for c in t.columns}
    assert in_database == declared
