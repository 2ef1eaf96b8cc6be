"""Payment-Balance on a large chain: 100,000 customers and 1,000,000 sales' worth of read-model
rows loaded in bulk (INSERT ... SELECT generate_series, in the reporting tables' real shapes)
into a fresh reporting database, then timed through a real reporting process's internal API.

Shapes follow what the projection writes: per sale one `sale` movement (goods = total,
payments = what was paid now; the rest is debt) and, when something was paid, one bonus
`accrued` movement; some later `payment` movements pay debt down. Balances are the movements'
sums, so the report's closing equals advance - debt as in the live system.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.pipeline import bench_env
from devstack.ports import free_port
from devstack.services import ServicePorts, start_services
from devstack.stack import purge_run_dir, start_infra
from servicekit.db import prepare_database
from servicekit.settings import with_database

CHAIN = "00000000-0000-4000-8000-0000000000c1"
STORES = 10
DAYS = 365
START = "2025-12-01 08:00:00+00"


def _load_sql(customers: int, sales: int) -> list[tuple[str, str]]:
    cust = f"md5('c' || ((g::bigint * 7919) % {customers}))::uuid"
    store = f"md5('st' || (g % {STORES}))::uuid"
    at = f"timestamptz '{START}' + (g::float8 / {sales} * {DAYS}) * interval '1 day'"
    total = "((g % 9000) + 100) / 100.0"
    # 30% on account (paid 0), the rest paid in full at the till
    paid = f"CASE WHEN g % 10 < 3 THEN 0 ELSE {total} END"
    payments = max(1, sales // 7)
    payer = cust.replace("g::bigint *", "g::bigint * 10 *")
    paid_at = at.replace("g::", "(g * 7)::")
    return [
        (
            "chain and stores",
            f"""
            INSERT INTO rm_chains VALUES
              ('{CHAIN}', 'Bench chain', 'Europe/Bucharest', 'EUR', 2, 'balance');
            INSERT INTO rm_stores
            SELECT md5('st' || g)::uuid, '{CHAIN}', 'S' || g, 'Store ' || g
            FROM generate_series(0, {STORES - 1}) g;
            """,
        ),
        (
            "customers",
            f"""
            INSERT INTO rm_customers (customer_id, chain_id, name, phone, vip, card_number,
                                      name_key)
            SELECT md5('c' || g)::uuid, '{CHAIN}', 'Customer ' || lpad(g::text, 6, '0'),
                   '+40' || (700000000 + g), g % 5 <> 0, 'CARD' || g,
                   'customer ' || lpad(g::text, 6, '0')
            FROM generate_series(0, {customers - 1}) g;
            """,
        ),
        (
            "sales",
            f"""
            INSERT INTO rm_sales
            SELECT md5('s' || g)::uuid, '{CHAIN}', {cust}, {store}, {at},
                   ({at})::date + 30, {total}, 0
            FROM generate_series(1, {sales}) g;
            """,
        ),
        (
            "sale lines",
            f"""
            INSERT INTO rm_sale_lines
            SELECT md5('s' || g)::uuid, 1, '{CHAIN}', {cust}, 'SKU' || (g % 500),
                   '48200000' || (g % 500), 'Item ' || (g % 500), 1, 0, {total},
                   {total} - {paid}
            FROM generate_series(1, {sales}) g;
            """,
        ),
        (
            "sale movements",
            f"""
            INSERT INTO rm_movements (message_id, seq, chain_id, customer_id, store_id, at, kind,
                                      sale_id, description, goods, payments, debt_change,
                                      advance_change, bonus_change)
            SELECT md5('m' || g)::uuid, 0, '{CHAIN}', {cust}, {store}, {at}, 'sale',
                   md5('s' || g)::uuid, 'Sale', {total}, {paid}, {total} - {paid}, 0, 0
            FROM generate_series(1, {sales}) g;
            """,
        ),
        (
            "bonus movements",
            f"""
            INSERT INTO rm_movements (message_id, seq, chain_id, customer_id, store_id, at, kind,
                                      sale_id, description, bonus_change, bonus_kind,
                                      bonus_amount)
            SELECT md5('b' || g)::uuid, 0, '{CHAIN}', {cust}, {store}, {at}, 'bonus_accrued',
                   md5('s' || g)::uuid, 'Bonus accrued', round(({paid}) / 10, 2), 'accrued',
                   round(({paid}) / 10, 2)
            FROM generate_series(1, {sales}) g WHERE g % 10 >= 3;
            """,
        ),
        (
            "payment movements",
            f"""
            INSERT INTO rm_movements (message_id, seq, chain_id, customer_id, store_id, at, kind,
                                      payment_id, description, payments, debt_change)
            SELECT md5('p' || g)::uuid, 0, '{CHAIN}', {payer}, {store}, {paid_at}, 'payment',
                   md5('p' || g)::uuid, 'Payment (pay_debt, cash)', 20, -20
            FROM generate_series(1, {payments}) g;
            """,
        ),
        (
            "balances",
            f"""
            INSERT INTO rm_balances
            SELECT customer_id, '{CHAIN}',
                   greatest(0, sum(debt_change)), greatest(0, -sum(debt_change)),
                   sum(bonus_change)
            FROM rm_movements GROUP BY customer_id;
            """,
        ),
        # the live tables are vacuumed by autovacuum as they grow; a bulk load is not yet, and
        # without a visibility map no index-only scan is possible (the per-customer sums of
        # migration 0005 were filled by their triggers as the rows above went in)
        (
            "vacuum analyze",
            "VACUUM ANALYZE rm_movements, rm_customers, rm_balances, rm_sales, "
            "rm_sale_lines, rm_chains, rm_stores, rm_open_debt, rm_credit_totals, "
            "rm_credit_months",
        ),
    ]


async def load(url: str, customers: int, sales: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        for what, sql in _load_sql(customers, sales):
            t = time.perf_counter()
            await conn.execute(sql)
            print(
                f"[bench] loaded {what} in {time.perf_counter() - t:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("rm_customers", "rm_sales", "rm_sale_lines", "rm_movements")
        }
    finally:
        await conn.close()
    return {"load_seconds": round(time.perf_counter() - started, 1), **counts}


REQUESTS = [
    ("chain-wide, one month", "reports/payment-balance?from=2026-06-01&to=2026-06-30", {}),
    ("chain-wide, one year", "reports/payment-balance?from=2025-12-01&to=2026-11-30", {}),
    (
        "VIP only, one month, by name",
        "reports/payment-balance?from=2026-06-01&to=2026-06-30&vip_only=true&sort=name",
        {},
    ),
    (
        "one store, one month",
        "reports/payment-balance?from=2026-06-01&to=2026-06-30&store_id={store}",
        {},
    ),
    (
        "first page of 100, one month",
        "reports/payment-balance?from=2026-06-01&to=2026-06-30&limit=100",
        {},
    ),
    (
        "CSV, chain-wide, one month",
        "reports/payment-balance?from=2026-06-01&to=2026-06-30",
        {"Accept": "text/csv"},
    ),
]


async def time_requests(base: str, repeats: int) -> list[dict[str, Any]]:
    conn_store = "md5('st' || 3)::uuid"
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=120.0) as client:
        store = None
        for title, path, headers in REQUESTS:
            if "{store}" in path:
                if store is None:
                    store = await _store_id(base, conn_store)
                path = path.replace("{store}", store)
            url = f"/internal/v1/chains/{CHAIN}/{path}"
            first = await client.get(url, headers=headers)
            first.raise_for_status()
            if headers.get("Accept") == "text/csv":
                rows = first.text.count("\n") - 1
            else:
                rows = len(first.json()["rows"])
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                resp = await client.get(url, headers=headers)
                times.append(time.perf_counter() - t)
                resp.raise_for_status()
            out.append(
                {
                    "request": title,
                    "path": path,
                    "rows": rows,
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "max_ms": round(max(times) * 1000, 1),
                }
            )
            print(
                f"[bench] {title}: {out[-1]['median_ms']} ms ({rows} rows)",
                file=sys.stderr,
                flush=True,
            )
    return out


_DB_URL: dict[str, str] = {}


async def _store_id(base: str, expr: str) -> str:
    conn = await asyncpg.connect(_DB_URL["url"])
    try:
        return str(await conn.fetchval(f"SELECT {expr}"))
    finally:
        await conn.close()


def main(
    name: str, out_dir: Path, customers: int, sales: int, label: str, repeats: int = 3
) -> dict[str, Any]:
    started = time.time()
    infra = start_infra(name, use_env=False)
    services = None
    try:
        url = with_database(infra.database_url, "bench_reports")
        _DB_URL["url"] = url
        import reporting

        migrations = Path(reporting.__file__).parent / "migrations"
        asyncio.run(prepare_database(migrations, url))
        loaded = asyncio.run(load(url, customers, sales))
        port = free_port()
        ports = ServicePorts(**{**ServicePorts.free().as_dict(), "reporting": port})
        services = start_services(
            infra.run_dir,
            kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
            database_url=infra.database_url,
            ports=ports,
            base_env={**bench_env({"REPORTING_DATABASE_URL": url})},
            names=("reporting",),
            ready_timeout=240.0,
        )
        timings = asyncio.run(time_requests(f"http://127.0.0.1:{port}", repeats))
    finally:
        if services is not None:
            services.stop()
        infra.stop()
        purge_run_dir(infra.run_dir, keep_logs=True)
    result = {
        "label": label,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "customers": customers,
        "sales": sales,
        "movements": loaded["rm_movements"],
        "sale_lines": loaded["rm_sale_lines"],
        "load_seconds": loaded["load_seconds"],
        "repeats": repeats,
        "timings": timings,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"reports-{label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"[bench] wrote {path}", file=sys.stderr)
    return result
