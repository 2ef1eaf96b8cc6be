"""The shape's floor (`bench.shape`): three processes in the roles of the gateway, credit and
loyalty answer every sale after its hops (four in today's shape, two and a finish in the
proposal's, three with loyalty first), each hop's work is in its database, and the step
reports CPU per sale and records per batch."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from bench.shape import SHAPES, measure

from servicekit.settings import with_database


async def _rows(server_url: str, role: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(with_database(server_url, f"bench_shape_{role}"))
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_sale_is_answered_after_its_hops_and_ends_in_both_services(
    database_server_url: str, kafka_bootstrap_servers: str, tmp_path: Path, shape: str
) -> None:
    found = await measure(
        database_server_url,
        kafka_bootstrap_servers,
        [20.0],
        seconds=2.0,
        warmup_seconds=1.0,
        run_dir=tmp_path,
        shape=shape,
    )
    assert found["shape"] == shape
    (step,) = found["steps"]
    assert step["statuses"] == {"201": 40}
    assert set(step["records_per_batch"]) == {"edge", "credit", "loyalty"}
    assert all(v >= 1 for v in step["records_per_batch"].values())
    assert set(step["cpu_ms_per_sale"]) == {"edge", "credit", "loyalty"}

    requests = await _rows(database_server_url, "edge", "SELECT status, outcome FROM requests")
    assert len(requests) == 60  # the warm-up's 20 and the step's 40
    for r in requests:
        outcome = json.loads(r["outcome"])
        # credit's total, loyalty's accrual on it: the outcome came back through both
        assert r["status"] == outcome["status"] == "completed"
        assert Decimal(outcome["accrued"]) == (Decimal(outcome["total"]) / 10).quantize(
            Decimal("0.01")
        )
    (ops,) = await _rows(
        database_server_url,
        "credit",
        "SELECT count(*) FILTER (WHERE status = 'confirmed') AS n, count(*) AS all FROM operations",
    )
    assert (ops["n"], ops["all"]) == (60, 60)
    # applied, not left reserved (the parallel shape's finish reached loyalty too)
    (moves,) = await _rows(
        database_server_url, "loyalty", "SELECT count(*) FROM movements WHERE status = 'applied'"
    )
    assert moves[0] == 60
    (balance,) = await _rows(
        database_server_url, "loyalty", "SELECT sum(balance) AS b FROM customers"
    )
    accrued = sum(Decimal(json.loads(r["outcome"])["accrued"]) for r in requests)
    assert balance["b"] == accrued
    for role in ("edge", "credit", "loyalty"):
        (unsent,) = await _rows(
            database_server_url, role, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
        )
        assert unsent[0] == 0, role
