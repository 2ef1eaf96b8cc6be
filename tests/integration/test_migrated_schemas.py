"""Every service's migrations build exactly the schema its code declares: a fresh database
upgraded to head and the `adapters.tables` metadata (with servicekit's own tables) have no
difference that alembic's autogenerate can see (tables, columns, types, nullability, indexes,
unique and foreign keys).

The first migrations spell their tables out (docs/architecture.md, "Migrations"), so a change
to a tables module without a revision of its own fails here."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from servicekit.db import make_engine, prepare_database
from servicekit.schema import messaging_tables, positions_table

#: service package -> servicekit tables its migrations create besides outbox and inbox
SERVICES = {
    "pos_gateway": (),
    "credit": (),
    "loyalty": (),
    "reporting": ("consumer_positions",),
    "notifier": (),
}
#: alembic's own table; reporting's snapshot catalog, which its code reads and writes in SQL
#: only (reporting.adapters.snapshot_store), so no metadata declares it
NOT_DECLARED = {"alembic_version", "snapshots"}


def _expected(package: str) -> sa.MetaData:
    declared = importlib.import_module(f"{package}.adapters.tables").metadata
    expected = sa.MetaData()
    for table in declared.tables.values():
        table.to_metadata(expected)
    if "outbox" not in expected.tables:
        messaging_tables(expected)
    if "consumer_positions" in SERVICES[package]:
        positions_table(expected)
    return expected


def _about_undeclared(difference: Any) -> bool:
    kind, subject = difference[0], difference[1]
    if kind == "remove_table":
        return subject.name in NOT_DECLARED
    if kind == "remove_index":
        return subject.table.name in NOT_DECLARED
    return False


@pytest.mark.parametrize("package", sorted(SERVICES))
async def test_the_migrated_database_matches_the_declared_tables(
    package: str, fresh_database_url: str
) -> None:
    migrations = importlib.import_module(f"{package}.entrypoints.app").MIGRATIONS_DIR
    await prepare_database(migrations, fresh_database_url)
    expected = _expected(package)

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, expected))

    engine = make_engine(fresh_database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert [d for d in differences if not _about_undeclared(d)] == []
