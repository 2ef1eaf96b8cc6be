"""Start-up migrations when several instances of a service start at the same moment."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).parent / "sample_migrations"
START_ONE = (
    "import asyncio, sys, pathlib; from servicekit.db import prepare_database; "
    "asyncio.run(prepare_database(pathlib.Path(sys.argv[1]), sys.argv[2]))"
)


async def test_instances_starting_together_migrate_the_database_once(
    fresh_database_url: str,
) -> None:
    # separate processes, as replicas are: Alembic's context is per process
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            START_ONE,
            str(SAMPLE),
            fresh_database_url,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [(await p.wait(), (await p.stderr.read()).decode()) for p in procs if p.stderr]
    assert [rc for rc, _ in results] == [0, 0, 0], [err[-800:] for _, err in results]

    conn = await asyncpg.connect(fresh_database_url)
    try:
        version = await conn.fetch("SELECT version_num FROM alembic_version")
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
    assert [r["version_num"] for r in version] == ["0001"]
    assert {"things", "outbox", "inbox"} <= tables
