"""What one statement and one message cost in Python CPU, by the ways the services could run them.

The constants the sale path's design estimates from (docs/architecture.md, "What it should
cost"): CPU of this process (`time.process_time`, so another engineer's load on the machine
inflates it little) per statement or per row, for the same insert and the same locking select
run through
- an `AsyncSession` as the services do today (`session.execute(sa.insert(...).values(...))`),
- SQLAlchemy Core on an `AsyncConnection` with the compiled-statement cache,
- asyncpg directly (a prepared statement per SQL text, one round trip per row),
- asyncpg `executemany` (one prepared statement, rows pipelined),
- one `INSERT ... SELECT FROM unnest(...)` for the whole batch (one round trip),
and what decoding one envelope costs (FastStream's `json.loads`, then the envelope and the
payload models).

`python -m bench statements` against `DATABASE_URL` (a server URL; a database of its own).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench.ceiling import _create_database
from servicekit.settings import to_asyncpg_url

DATABASE = "bench_statements"

_META = sa.MetaData()
ENTRIES = sa.Table(
    "bench_entries",
    _META,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("operation_id", sa.Uuid, nullable=False),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("amount", sa.Numeric(18, 4), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
CUSTOMERS = sa.Table(
    "bench_customers",
    _META,
    sa.Column("customer_id", sa.Uuid, primary_key=True),
    sa.Column("debt", sa.Numeric(18, 4), nullable=False),
)

_INSERT = (
    "INSERT INTO bench_entries (operation_id, customer_id, kind, amount, at) "
    "VALUES ($1, $2, $3, $4, $5)"
)
_UNNEST = (
    "INSERT INTO bench_entries (operation_id, customer_id, kind, amount, at) "
    "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::timestamptz[])"
)
_LOCK = "SELECT customer_id, debt FROM bench_customers WHERE customer_id = $1 FOR UPDATE"


def _rows(n: int, customers: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [
        (uuid.uuid4(), customers[i % len(customers)], "goods", Decimal("12.34"), now)
        for i in range(n)
    ]


async def _cpu(run: Callable[[], Awaitable[None]]) -> float:
    started = time.process_time()
    await run()
    return time.process_time() - started


async def measure(server_url: str, *, rows: int = 2000, repeats: int = 3) -> dict[str, float]:
    """Microseconds of this process's CPU per statement (or per row for the batch forms),
    the best of `repeats` runs of `rows` statements each."""
    url = await _create_database(server_url, DATABASE)
    engine = create_async_engine(to_asyncpg_url(url), pool_size=2)
    async with engine.begin() as conn:
        await conn.run_sync(_META.drop_all)
        await conn.run_sync(_META.create_all)
    customers = [uuid.uuid4() for _ in range(100)]
    pg = await asyncpg.connect(url)
    await pg.executemany(
        "INSERT INTO bench_customers (customer_id, debt) VALUES ($1, 0)",
        [(c,) for c in customers],
    )
    best: dict[str, float] = {}

    def keep(name: str, seconds: float, per: int) -> None:
        us = seconds / per * 1e6
        best[name] = round(min(best.get(name, us), us), 1)

    try:
        for _ in range(repeats):
            data = _rows(rows, customers)
            dicts = [
                {
                    "operation_id": r[0],
                    "customer_id": r[1],
                    "kind": r[2],
                    "amount": r[3],
                    "at": r[4],
                }
                for r in data
            ]

            async def orm_insert(dicts: list[dict[str, Any]] = dicts) -> None:
                async with AsyncSession(engine) as session, session.begin():
                    for d in dicts:
                        await session.execute(sa.insert(ENTRIES).values(**d))

            async def orm_lock(data: list[tuple[Any, ...]] = data) -> None:
                async with AsyncSession(engine) as session, session.begin():
                    for r in data:
                        await session.execute(
                            sa.select(CUSTOMERS)
                            .where(CUSTOMERS.c.customer_id == r[1])
                            .with_for_update()
                        )

            async def core_insert(dicts: list[dict[str, Any]] = dicts) -> None:
                stmt = sa.insert(ENTRIES)
                async with engine.begin() as conn:
                    for d in dicts:
                        await conn.execute(stmt, d)

            async def asyncpg_insert(data: list[tuple[Any, ...]] = data) -> None:
                async with pg.transaction():
                    for r in data:
                        await pg.execute(_INSERT, *r)

            async def asyncpg_lock(data: list[tuple[Any, ...]] = data) -> None:
                async with pg.transaction():
                    for r in data:
                        await pg.fetchrow(_LOCK, r[1])

            async def asyncpg_executemany(data: list[tuple[Any, ...]] = data) -> None:
                async with pg.transaction():
                    await pg.executemany(_INSERT, data)

            async def asyncpg_unnest(data: list[tuple[Any, ...]] = data) -> None:
                columns = list(zip(*data, strict=True))
                async with pg.transaction():
                    await pg.execute(_UNNEST, *[list(c) for c in columns])

            keep("SQLAlchemy AsyncSession insert, per statement", await _cpu(orm_insert), rows)
            keep(
                "SQLAlchemy AsyncSession SELECT ... FOR UPDATE, per statement",
                await _cpu(orm_lock),
                rows,
            )
            keep(
                "SQLAlchemy Core (AsyncConnection) insert, per statement",
                await _cpu(core_insert),
                rows,
            )
            keep("asyncpg prepared insert, per statement", await _cpu(asyncpg_insert), rows)
            keep(
                "asyncpg prepared SELECT ... FOR UPDATE, per statement",
                await _cpu(asyncpg_lock),
                rows,
            )
            keep("asyncpg executemany insert, per row", await _cpu(asyncpg_executemany), rows)
            keep("asyncpg INSERT ... SELECT FROM unnest, per row", await _cpu(asyncpg_unnest), rows)
            keep(
                "decode one envelope: json.loads + Envelope + payload model",
                await _cpu(_decode_runner(rows)),
                rows,
            )
            keep(
                "decode one envelope: Envelope.model_validate_json + payload model",
                await _cpu(_decode_runner(rows, twice=False)),
                rows,
            )
    finally:
        await pg.close()
        await engine.dispose()
    return best


def _decode_runner(n: int, *, twice: bool = True) -> Callable[[], Awaitable[None]]:
    """Decoding a credit.SaleCompleted-sized envelope as a consumer does (FastStream's decoder
    parses the JSON first, then servicekit validates the bytes again)."""
    from contracts.envelope import decode, parse_payload

    raw = json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "type": "credit.RecordSale",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "chain_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
            "causation_id": None,
            "key": str(uuid.uuid4()),
            "payload": _record_sale_payload(),
        }
    ).encode()

    async def run() -> None:
        for _ in range(n):
            if twice:
                json.loads(raw)
            parse_payload(decode(raw))

    return run


def _record_sale_payload() -> dict[str, Any]:
    chain = str(uuid.uuid4())
    customer = str(uuid.uuid4())
    return {
        "sale_id": str(uuid.uuid4()),
        "chain_id": chain,
        "store_id": str(uuid.uuid4()),
        "terminal_id": str(uuid.uuid4()),
        "customer": {
            "customer_id": customer,
            "name": "Customer 0-1",
            "phone": "+40710000001",
            "vip": True,
            "credit_limit": None,
            "max_payment_delay_days": None,
            "bonus_accrual": True,
            "card_number": "B00123456789",
        },
        "settings": {
            "credit_mode": "per_sale",
            "max_payment_delay_days": 30,
            "bonus_rate_percent": "10",
            "bonus_expiry_days": None,
            "block_credit_when_overdue": False,
            "overdue_discount": "keep",
            "reminder_repeat_days": 7,
            "timezone": "Europe/Bucharest",
            "currency": "EUR",
            "minor_units": 2,
        },
        "card_number": "B00123456789",
        "sold_at": datetime.now(UTC).isoformat(),
        "lines": [
            {
                "line_no": 1,
                "sku": "SKU0",
                "barcode": "4820000012345",
                "name": "Item 0",
                "quantity": "2",
                "unit_price": "10.00",
                "discount": "0.00",
                "amount": "20.00",
            }
        ],
        "payments": [{"payment_id": str(uuid.uuid4()), "method": "card", "amount": "20.00"}],
        "total": "20.00",
        "change": "0.00",
        "change_to_advance": "0.00",
    }


def report(best: dict[str, float]) -> str:
    width = max(len(k) for k in best)
    return "\n".join(f"{name:<{width}}  {us:8.1f} us" for name, us in best.items())


def main(server_url: str) -> str:
    return report(asyncio.run(measure(server_url)))
