"""The gateway's own CPU per sale, without the rest of the stack: one process, no Kafka.

The gateway's public app is driven in-process (httpx's ASGI transport) on a database of its
own, and each sale's outcome is fed to its `gateway` consumer the way Kafka would deliver it,
while the request waits for it (as in production: the request is woken by the consumer of its
own process). Per sale: the HTTP request (authentication, the key's claim, the static checks,
the writes), the outcome consumed, the answer. What this process spends per sale is measured
with `time.process_time()` (CPU, not wall time, so other work on the machine changes it much
less than the pipeline's figures), and the gateway's SQL statements are counted.

The driver's own work (building the outcome event from the command it reads back from the
outbox) is in the figure too; it is the same for any version of the gateway, so two versions
compare by difference. Run a version's code with PYTHONPATH set to its `libs/*/src` and
`services/*/src` (as `bench pipeline --ab-ref` does):

    scripts/with-infra.sh env PYTHONPATH=tools .venv/bin/python -m bench.gateway_path --sales 400

`--ab-src DIR` (repeatable; a checkout's root, e.g. an older commit's tree from `git archive`)
runs the measure with the gateway's, servicekit's and the contracts' code under each DIR and
with this checkout's, `--repeats` times each, alternating (`bench.inprocess.alternate`).

Two options bring it closer to the pipeline. `--unhandled N`: before each outcome, a batch of
N messages the gateway reads but has no handler for (loyalty's `BonusesApplied` and
`BonusMovementRecorded` of the sale, alternately, on `loyalty.events.v1`: a VIP's card sale
puts two there). `--woken-by notify`: the outcome is consumed as if by another gateway
instance (this process's waiters are not woken by its commit), so the request is woken by
PostgreSQL's NOTIFY through the process's listener, as half of the requests are with two
gateways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord

from bench.floor import measured_at
from bench.inprocess import alternate, bind_as_in_a_service, summarize_runs
from contracts.base import Message
from contracts.credit.v1 import (
    CustomerBalances,
    SaleCompleted,
    SaleLineOutcome,
    SalePaymentOutcome,
)
from contracts.enums import BonusMovementKind, BonusOperationKind
from contracts.envelope import decode, encode, make_envelope
from contracts.loyalty.v1 import BonusesApplied, BonusMovementRecorded, PaymentBonus

OPERATOR = "operator-token-for-the-gateway-path-bench"


def _sale_body(n: int) -> dict[str, Any]:
    return {
        "sale_id": str(uuid.uuid4()),
        "card_number": "CARD-1",
        "lines": [
            {"sku": "D1", "name": "Dress", "quantity": "1", "unit_price": "60.00"},
            {"sku": f"S{n % 7}", "name": "Shoes", "quantity": "2", "unit_price": "20.00"},
        ],
        "payments": [{"method": "card", "amount": "100.00"}],
    }


def _completed(cmd: dict[str, Any]) -> SaleCompleted:
    return SaleCompleted(
        sale_id=cmd["sale_id"],
        chain_id=cmd["chain_id"],
        store_id=cmd["store_id"],
        terminal_id=cmd["terminal_id"],
        customer_id=cmd["customer"]["customer_id"],
        card_number=cmd["card_number"],
        credit_mode=cmd["settings"]["credit_mode"],
        sold_at=cmd["sold_at"],
        total=Decimal(cmd["total"]),
        paid=Decimal(cmd["total"]),
        on_account=Decimal(0),
        advance_applied=Decimal(0),
        change=Decimal(0),
        change_to_advance=Decimal(0),
        change_allocated=[],
        advance_added=Decimal(0),
        due_date=None,
        bonus_accrued=Decimal(0),
        bonus_spent=Decimal(0),
        payments=[
            SalePaymentOutcome(
                payment_id=p["payment_id"],
                method=p["method"],
                amount=Decimal(p["amount"]),
                bonus_accrued=Decimal(0),
            )
            for p in cmd["payments"]
        ],
        lines=[SaleLineOutcome.model_validate({**ln, "owed": "0"}) for ln in cmd["lines"]],
        customer_balances=CustomerBalances(
            debt=Decimal(0), advance=Decimal(0), bonus_balance=Decimal(0)
        ),
        lines_changed=[],
    )


def _unhandled(cmd: dict[str, Any], n: int) -> Message:
    """What loyalty publishes for a VIP's card sale, which the gateway reads and ignores."""
    chain_id, customer_id = cmd["chain_id"], cmd["customer"]["customer_id"]
    payment = cmd["payments"][0]
    if n % 2 == 0:
        return BonusesApplied(
            operation_id=cmd["sale_id"],
            operation_kind=BonusOperationKind.SALE,
            chain_id=chain_id,
            customer_id=customer_id,
            spent=Decimal(0),
            accrued=Decimal("3.00"),
            accrued_by_payment=[
                PaymentBonus(payment_id=payment["payment_id"], amount=Decimal("3.00"))
            ],
            restored=Decimal(0),
            reversed=Decimal(0),
            reversed_by_payment=[],
            balance_after=Decimal("3.00"),
        )
    return BonusMovementRecorded(
        movement_id=uuid.uuid4(),
        chain_id=chain_id,
        customer_id=customer_id,
        kind=BonusMovementKind.ACCRUED,
        amount=Decimal("3.00"),
        store_id=cmd["store_id"],
        payment_id=payment["payment_id"],
        sale_id=cmd["sale_id"],
        operation_id=cmd["sale_id"],
        at=datetime.now(UTC),
        balance_after=Decimal("3.00"),
    )


def _record(
    offset: int, payload: Message, topic: str = "credit.events.v1"
) -> ConsumerRecord[Any, Any]:
    env = make_envelope(payload, chain_id=None, key="k", correlation_id=uuid.uuid4())
    # the headers the outbox relay sets (`contracts.envelope.headers_of`, spelt out: an older
    # version's contracts, run by --ab-src, may not have it; that version ignores them)
    headers = (
        ("correlation_id", str(env.correlation_id).encode()),
        ("message-type", env.type.encode()),
        ("schema-version", str(env.schema_version).encode()),
    )
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=encode(env),
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=0,
        headers=headers,
    )


async def _setup(client: httpx.AsyncClient) -> tuple[uuid.UUID, str]:
    """A chain, a store, a terminal and a VIP customer with card CARD-1: the chain's id and the
    terminal's key."""

    async def post(path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    chain = {"name": "Bench", "currency": "EUR", "timezone": "Europe/Bucharest"}
    created = await post("/v1/chains", OPERATOR, chain)
    admin = created["admin_api_key"]
    store = (await post("/v1/stores", admin, {"code": "S1", "name": "Main"}))["store_id"]
    terminal = (await post(f"/v1/stores/{store}/terminals", admin, {"name": "Till"}))["api_key"]
    customer = {"name": "Ana", "phone": "+40700000001", "vip": True, "card_number": "CARD-1"}
    await post("/v1/customers", admin, customer)
    return uuid.UUID(created["chain_id"]), str(terminal)


async def measure(
    database_url: str, sales: int, warmup: int, *, unhandled: int = 0, woken_by: str = "consumer"
) -> dict[str, Any]:
    os.environ["OPERATOR_TOKEN"] = OPERATOR
    os.environ["GATEWAY_DATABASE_URL"] = database_url
    # no fallback poll while the driver plays credit: the request is woken by the consumer
    os.environ["GATEWAY_SALE_WAIT_SECONDS"] = "10"
    os.environ["GATEWAY_OUTCOME_POLL_INTERVAL_SECONDS"] = "10"
    os.environ["GATEWAY_RATE_LIMIT_PER_SECOND"] = "100000"
    os.environ["GATEWAY_RATE_LIMIT_BURST"] = "100000"
    from pos_gateway.bootstrap import Gateway
    from pos_gateway.config import Settings
    from pos_gateway.entrypoints.app import MIGRATIONS_DIR, build_public_app, consumers
    from servicekit.db import make_engine, make_session_factory, prepare_database

    await prepare_database(MIGRATIONS_DIR, database_url)
    engine = make_engine(database_url, pool_size=5)
    gw = Gateway(Settings())
    gw.start(make_session_factory(engine))
    consumer = consumers()[0]
    bind_as_in_a_service(consumer, make_session_factory(engine))
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    # the driver wakes when the request starts waiting for its outcome (never by polling:
    # a spinning driver would count the gateway's round trips as CPU). `wait_for` registers
    # the request before its first await, so by the time the driver runs it is registered.
    waiting = asyncio.Event()
    wait_for = gw.waiter.wait_for

    async def announced(*args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return await wait_for(*args, **kwargs)

    gw.waiter.wait_for = announced  # type: ignore[method-assign]
    if woken_by == "notify":  # the consumer plays the other instance
        gw.waiter.unregister()
        listener = gw.listen(database_url)
        await asyncio.wait_for(listener.listening.wait(), 10)
    offset = 0
    transport = httpx.ASGITransport(app=build_public_app(gw))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        _chain_id, terminal = await _setup(client)
        headers = {"Authorization": f"Bearer {terminal}"}
        cpu = 0.0
        for n in range(warmup + sales):
            if n == warmup:
                sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
            started = time.process_time()
            body = _sale_body(n)
            request = asyncio.create_task(
                client.post(
                    "/v1/sales", json=body, headers={**headers, "Idempotency-Key": body["sale_id"]}
                )
            )
            await waiting.wait()  # written, and waiting for its outcome
            waiting.clear()
            async with engine.connect() as conn:  # the driver's read, not the gateway's
                value = await conn.scalar(
                    sa.text("SELECT value FROM outbox ORDER BY id DESC LIMIT 1")
                )
            cmd = decode(value).payload
            if unhandled:
                batch = []
                for i in range(unhandled):
                    offset += 1
                    batch.append(_record(offset, _unhandled(cmd, i), "loyalty.events.v1"))
                await consumer.process_records(batch)
            offset += 1
            await consumer.process_records([_record(offset, _completed(cmd))])
            response = await request
            assert response.status_code == 201, response.text
            if n >= warmup:
                cpu += time.process_time() - started
    sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
    await gw.stop()
    await engine.dispose()
    import pos_gateway

    return {
        "code": str(os.path.dirname(pos_gateway.__file__)),
        "sales": sales,
        "unhandled_per_sale": unhandled,
        "woken_by": woken_by,
        "cpu_ms_per_sale": round(1000 * cpu / sales, 3),
        # the driver's outbox read is one of them
        "statements_per_sale": round(statements / sales, 2),
        "measured_at": measured_at(),
    }


async def _main(args: argparse.Namespace) -> None:
    from servicekit.testing import create_database, drop_database

    server = os.environ["DATABASE_URL"]
    name = f"bench_gw_{secrets.token_hex(4)}"
    url = await create_database(server, name)
    try:
        result = await measure(
            url, args.sales, args.warmup, unhandled=args.unhandled, woken_by=args.woken_by
        )
    finally:
        await drop_database(server, name)
    print(json.dumps({"label": args.label, **result}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_path", description=__doc__)
    parser.add_argument("--sales", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--unhandled",
        type=int,
        default=0,
        help="messages the gateway has no handler for, fed before each outcome",
    )
    parser.add_argument(
        "--woken-by",
        choices=("consumer", "notify"),
        default="consumer",
        help="who wakes the request: this process's consumer, or another instance's NOTIFY",
    )
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.ab_src:
        _ab(args)
        return
    asyncio.run(_main(args))


def _ab(args: argparse.Namespace) -> None:
    """Alternate runs of the gateway (and servicekit) code under each `--ab-src` and of this
    checkout, in separate processes, the order reversed every other round; the runs of each
    variant in the order run, so they pair up."""
    passed = [
        f"--sales={args.sales}",
        f"--warmup={args.warmup}",
        f"--unhandled={args.unhandled}",
        f"--woken-by={args.woken_by}",
    ]
    runs = alternate(
        "bench.gateway_path",
        passed,
        args.ab_src,
        ("pos-gateway",),
        args.repeats,
        libs=("servicekit", "contracts"),
    )
    out = summarize_runs(
        runs,
        ("cpu_ms_per_sale", lambda r: r["cpu_ms_per_sale"]),
        ("statements_per_sale", lambda r: r["statements_per_sale"]),
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
