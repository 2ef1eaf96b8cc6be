"""The hop breakdown reads what a till operation left in the services' own tables: the outbox
rows of the gateway, credit and loyalty (each service's migrations, a real PostgreSQL) and the
gateway's operation row with its outcome stored."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from bench.hops import measure

from contracts.credit.v1 import ApplyBonuses, SaleCompleted
from contracts.gateway.v1 import RecordSale
from contracts.loyalty.v1 import BonusesApplied, BonusMovementRecorded
from servicekit.db import prepare_database
from servicekit.settings import with_database
from servicekit.testing import create_database, drop_database

ROOT = Path(__file__).resolve().parents[3]
MIGRATIONS = {
    "gateway": ROOT / "services/pos-gateway/src/pos_gateway/migrations",
    "credit": ROOT / "services/credit/src/credit/migrations",
    "loyalty": ROOT / "services/loyalty/src/loyalty/migrations",
}


def _envelope(type_: str, corr: uuid.UUID, payload: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "type": type_,
            "correlation_id": str(corr),
            "payload": payload,
        }
    ).encode()


def _ms(base: datetime, ms: float) -> datetime:
    return base + timedelta(milliseconds=1 + ms)


async def _outbox(
    conn: asyncpg.Connection,
    type_: str,
    corr: uuid.UUID,
    at: datetime,
    payload: dict[str, str] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO outbox (message_id, topic, key, type, value, headers, created_at, sent_at)"
        " VALUES ($1, 't', 'k', $2, $3, $4::jsonb, $5::timestamptz,"
        " $5::timestamptz + interval '2 ms')",
        uuid.uuid4(),
        type_,
        _envelope(type_, corr, payload or {}),
        json.dumps({"correlation_id": str(corr), "type": type_}),
        at,
    )


async def test_a_card_sale_is_read_back_hop_by_hop_from_the_three_databases(
    database_server_url: str,
) -> None:
    names = {service: f"t_hops_{service}_{secrets.token_hex(4)}" for service in MIGRATIONS}
    try:
        urls = {s: await create_database(database_server_url, n) for s, n in names.items()}
        for service, url in urls.items():
            await prepare_database(MIGRATIONS[service], url)
        chain, sale, corr = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        conns = {s: await asyncpg.connect(u) for s, u in urls.items()}
        try:
            since = await conns["gateway"].fetchval("SELECT now()")
            await _outbox(
                conns["gateway"],
                RecordSale.TYPE,
                corr,
                _ms(since, 0),
                {"sale_id": str(sale), "chain_id": str(chain)},
            )
            await conns["gateway"].execute(
                "INSERT INTO operations (chain_id, kind, operation_id, request_hash, request,"
                " status, created_at, completed_at)"
                " VALUES ($1, 'sale', $2, 'h', '{}', 'completed', $3::timestamptz,"
                " $3::timestamptz + interval '40 ms')",
                chain,
                sale,
                _ms(since, 0),
            )
            await _outbox(conns["credit"], ApplyBonuses.TYPE, corr, _ms(since, 10))
            await _outbox(conns["loyalty"], BonusesApplied.TYPE, corr, _ms(since, 15))
            await _outbox(conns["loyalty"], BonusMovementRecorded.TYPE, corr, _ms(since, 15))
            await _outbox(conns["credit"], SaleCompleted.TYPE, corr, _ms(since, 27))
            # a dead letter's row holds the original bytes, which need not be JSON
            await conns["credit"].execute(
                "INSERT INTO outbox (message_id, topic, key, type, value, created_at)"
                " VALUES ($1, 'dead-letters.v1', 'k', 'deadletter.DeadLetter', $2, $3)",
                uuid.uuid4(),
                b"\xff not json",
                _ms(since, 20),
            )
            until = since + timedelta(seconds=5)
        finally:
            for conn in conns.values():
                await conn.close()
        result = await measure(with_database(database_server_url, "postgres"), since, until, names)
    finally:
        for name in names.values():
            await drop_database(database_server_url, name)
    assert result["operations"] == 1
    path = result["paths"]["gateway>credit>loyalty>credit>gateway"]
    assert [(h["hop"], h["p50"]) for h in path["hops"]] == [
        ("gateway -> credit", 10.0),
        ("credit -> loyalty", 5.0),
        ("loyalty -> credit", 12.0),
        ("credit -> gateway", 13.0),
    ]
    assert path["total_ms"]["p50"] == 40.0
    assert result["relay_ms"]["loyalty"] == {"p50": 2.0, "p99": 2.0}
