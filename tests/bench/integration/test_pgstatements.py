"""`--pg-statements` on a real PostgreSQL started the way the bench starts it: devstack passes
the extension's settings, the superuser reaches the server through its socket, and a step's
statements come back per database, a trigger's own statement marked nested, the bench's own
database left out."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest
from bench import pgstatements

from devstack import stop_run
from devstack.paths import run_dir
from devstack.postgres import start_postgres

pytestmark = pytest.mark.integration


async def test_a_steps_statements_come_back_per_database_with_a_triggers_nested(
    tmp_path: Path,
) -> None:
    name = f"pgss-{os.getpid()}"
    server = await asyncio.to_thread(
        start_postgres, run_dir(name, tmp_path), options=pgstatements.OPTIONS
    )
    try:
        assert server.options == pgstatements.OPTIONS  # kept for a restart
        await pgstatements.enable(server.superuser_url)
        app = await asyncpg.connect(server.database_url)
        try:
            await app.execute("CREATE DATABASE svc_a")
        finally:
            await app.close()
        svc = await asyncpg.connect(server.database_url.replace("/postgres?", "/svc_a?"))
        try:
            await svc.execute(
                "CREATE TABLE sales (id int PRIMARY KEY); CREATE TABLE audit (id int);"
                " CREATE FUNCTION audit_sale() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN INSERT INTO audit VALUES (NEW.id); RETURN NEW; END$$;"
                " CREATE TRIGGER sales_audit AFTER INSERT ON sales"
                " FOR EACH ROW EXECUTE FUNCTION audit_sale()"
            )
            await pgstatements.reset(server.superuser_url)
            for i in range(10):
                await svc.execute("INSERT INTO sales VALUES ($1)", i)
        finally:
            await svc.close()
        own = await asyncpg.connect(server.database_url)  # the bench's own database
        try:
            await own.fetchval("SELECT count(*) FROM pg_class")
        finally:
            await own.close()

        found = pgstatements.summarize(await pgstatements.read(server.superuser_url), sales=5)
    finally:
        await asyncio.to_thread(stop_run, name, run_root=tmp_path, purge=True)
        server.stop()

    assert list(found["databases"]) == ["svc_a"]
    assert found["databases"]["svc_a"]["calls_per_sale"] == 2.0  # 10 inserts, 5 sales
    by_query = {t["query"]: t for t in found["top"]}
    insert = by_query["INSERT INTO sales VALUES ($1)"]
    assert (insert["calls_per_sale"], insert["nested"], insert["rows_per_call"]) == (2.0, False, 1)
    audit = by_query["INSERT INTO audit VALUES (NEW.id)"]
    assert (audit["calls_per_sale"], audit["nested"]) == (2.0, True)
    assert found["ms_per_sale"] == found["databases"]["svc_a"]["ms_per_sale"] > 0
