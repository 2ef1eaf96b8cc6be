"""The migrations build exactly the schema the code declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from loyalty.adapters.tables import metadata
from servicekit.db import SessionFactory


async def test_the_migrated_database_matches_the_declared_tables(
    session_factory: SessionFactory,
) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with session_factory() as session:
        connection = await session.connection()
        differences = await connection.run_sync(diff)
    # alembic_version is alembic's own table, not declared in the metadata
    assert [d for d in differences if not (d[0] == "remove_table"
                                           and d[1].name == "alembic_version")] == []
