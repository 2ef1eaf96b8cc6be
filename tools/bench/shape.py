"""The shape's floor: a card sale's four hops with nothing but the messaging.

The floor (`bench.floor`) is one process taking a sale and writing it with its command. The
system's shape makes a card sale cross four Kafka hops before the POS has its answer (gateway
-> credit -> loyalty -> credit -> gateway, `docs/architecture.md`), each a consumer's
transaction with its inbox, a lock of the customer, a write and an outbox row, and a relay
that publishes the row and marks it sent. This bench builds that shape with as little code as
it can have, and measures what it costs the machine per sale: three processes in the
services' roles, on a Kafka and a PostgreSQL of their own (devstack), driven open loop at
fixed rates.

- `edge` (the gateway's part): FastAPI + uvicorn, the gateway's own sale body
  (`pos_gateway.schemas.SaleCreate`); the request row and the command's outbox row in one
  statement; the request waits for its outcome, which the process's consumer stores on the row
  (one statement a batch) and hands to it.
- `credit`: consumes the commands and loyalty's answers; a batch is one transaction: the inbox
  (one statement), the batch's customers locked in order (one), the operations written or
  confirmed and the outbox rows (one each).
- `loyalty`: consumes credit's asks; a batch is one transaction: inbox, lock, the movements,
  the balances, the outbox rows.
- every process's relay takes what its commits hand it in process (no poll), publishes it
  (aiokafka, `acks=all`, idempotent, as the services) and marks it sent in one statement.

Everything is a batch at a time, with a statement per table per batch: the design issue 14
asks for, without the domain (no ledger, no rules, no read models, no reporting or notifier).
What it costs per sale is a lower bound for the real stack's: each process's CPU (its tree),
PostgreSQL's and Kafka's, per sale, and the records per consumer batch.

`--shapes parallel` measures the proposal of docs/architecture.md ("The sale path, batch at a
time") the same way: the command goes to credit and to loyalty at once (a consumer group each),
each decides (credit: the operation pending; loyalty: the accrual reserved) and sends its
decision to the gateway, which stores both on the request, completes it when it has both
(answering the POS: two hops) and sends a finish on the command topic, on which credit confirms
(and publishes its event for the read models) and loyalty applies the accrual.

`--shapes loyalty-first` measures a flow with one transaction and one relay fewer per sale than
today's: loyalty takes the command first, applies the accrual and passes the command on with
its figures; credit records the operation confirmed and sends the outcome, built once, to the
gateway (three hops; a refusal by credit would have to undo loyalty's part, not measured).

    make bench-shape BENCH_ARGS="--label L --shapes serial,parallel --rates 50,100,200,300"

(`PYTHONPATH=tools python -m bench.shape run ...`; `--label` writes
`docs/benchmarks/shape-<label>.json`, which docs/benchmarks.md shows as a section of its own.)

Each shape runs on the same Kafka and PostgreSQL (devstack's, started for the run and stopped
and purged after it), in turn, after its own warm-up.

Commits do not wait for the WAL flush (`synchronous_commit = off`), as in the floor: on this
shared machine a flush can take long when others write, which would measure the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shlex
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from fastapi.responses import JSONResponse

from bench import procstat
from bench.ceiling import _create_database
from bench.floor import TOOLS, _sale_bodies, _wait_up, measured_at, post, stop
from bench.loadgen import percentile
from devstack.ports import free_port
from pos_gateway.schemas import SaleCreate  # at module level: FastAPI resolves the body's type
from servicekit.db import plain_url

PATH = "/v1/sales"
#: the topics of a run; `use_run` names them (and the consumer groups) after the run, so a
#: run never reads another's messages on a shared Kafka
TOPICS = {
    "commands": "shape.commands",
    "asks": "shape.asks",
    "answers": "shape.answers",
    "outcomes": "shape.outcomes",
    "decisions": "shape.decisions",
    "events": "shape.events",
}
#: `serial`: today's four hops; `parallel`: the proposal's two (docs/architecture.md);
#: `loyalty-first`: three hops, loyalty before credit (no confirmation round trip)
SHAPES = ("serial", "parallel", "loyalty-first")
_RUN = {"id": "", "shape": "serial"}


def use_run(run_id: str, shape: str = "serial") -> None:
    _RUN["id"], _RUN["shape"] = run_id, shape
    for name in TOPICS:
        TOPICS[name] = f"shape.{name}.{run_id}"


def parallel() -> bool:
    return _RUN["shape"] == "parallel"


def group(role: str) -> str:
    return f"shape-{role}-{_RUN['id']}"


#: customers' ids come from their card numbers
CUSTOMERS = uuid.UUID("6c0b6f5e-5b59-4a39-9d43-0e4b1c7d2a11")

_OUTBOX = """
CREATE TABLE outbox (
    id bigserial PRIMARY KEY, message_id uuid NOT NULL UNIQUE, topic text NOT NULL,
    key text NOT NULL, value bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
"""
SCHEMAS = {
    "edge": _OUTBOX
    + """
CREATE TABLE requests (
    request_id uuid PRIMARY KEY, customer_id uuid NOT NULL, status text NOT NULL,
    request jsonb NOT NULL, outcome jsonb, created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz, credit jsonb, loyalty jsonb
);
""",
    "credit": _OUTBOX
    + """
CREATE TABLE inbox (message_id uuid PRIMARY KEY);
CREATE TABLE customers (customer_id uuid PRIMARY KEY, debt numeric NOT NULL DEFAULT 0);
CREATE TABLE operations (
    operation_id uuid PRIMARY KEY, customer_id uuid NOT NULL, status text NOT NULL,
    amount numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
""",
    "loyalty": _OUTBOX
    + """
CREATE TABLE inbox (message_id uuid PRIMARY KEY);
CREATE TABLE customers (customer_id uuid PRIMARY KEY, balance numeric NOT NULL DEFAULT 0);
CREATE TABLE movements (
    operation_id uuid PRIMARY KEY, customer_id uuid NOT NULL, accrued numeric NOT NULL,
    status text NOT NULL DEFAULT 'applied', created_at timestamptz NOT NULL DEFAULT now()
);
""",
}

_WRITE_OUTBOX = (
    "INSERT INTO outbox (message_id, topic, key, value)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[]) RETURNING id"
)
_INBOX = (
    "INSERT INTO inbox (message_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING"
    " RETURNING message_id"
)
_LOCK = (
    "SELECT customer_id FROM customers WHERE customer_id = ANY($1::uuid[])"
    " ORDER BY customer_id FOR UPDATE"
)

Row = tuple[str, str, bytes]  # topic, key, value


def customer_of(card_number: str) -> uuid.UUID:
    return uuid.uuid5(CUSTOMERS, card_number)


def envelope(type_: str, key: str, payload: dict[str, Any]) -> bytes:
    return json.dumps(
        {"message_id": str(uuid.uuid4()), "type": type_, "key": key, "payload": payload}
    ).encode()


# ------------------------------------------------------------------------ the relay, the loop


class Relay:
    """Publishes the outbox rows its process's commits hand it, then marks them sent (one
    statement for all it took at once)."""

    def __init__(self, pool: asyncpg.Pool, producer: Any) -> None:
        self.pool = pool
        self.producer = producer
        self.queue: asyncio.Queue[tuple[int, Row]] = asyncio.Queue()

    def hand(self, ids: list[int], rows: list[Row]) -> None:
        for pair in zip(ids, rows, strict=True):
            self.queue.put_nowait(pair)

    async def run(self) -> None:
        while True:
            taken = [await self.queue.get()]
            while not self.queue.empty():
                taken.append(self.queue.get_nowait())
            sent = [
                await self.producer.send(topic, value, key=key.encode())
                for _, (topic, key, value) in taken
            ]
            await asyncio.gather(*sent)
            await self.pool.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
                [i for i, _ in taken],
            )


async def write_outbox(conn: asyncpg.Connection, rows: list[Row]) -> list[int]:
    if not rows:
        return []
    found = await conn.fetch(
        _WRITE_OUTBOX,
        [uuid.uuid4() for _ in rows],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
    return [r["id"] for r in found]


Batch = Callable[[asyncpg.Connection, list[dict[str, Any]]], Awaitable[list[Row]]]


async def consume(
    consumer: Any, pool: asyncpg.Pool, relay: Relay, handle: Batch, stats: dict[str, int]
) -> None:
    """A batch at a time: the new messages (inbox) handled in one transaction, the outbox rows
    handed to the relay after the commit, then the offsets."""
    while True:
        polled = await consumer.getmany(timeout_ms=500, max_records=500)
        records = [r for part in polled.values() for r in part]
        if not records:
            continue
        messages = [json.loads(r.value) for r in records]
        async with pool.acquire() as conn, conn.transaction():
            new = {
                r["message_id"]
                for r in await conn.fetch(_INBOX, [uuid.UUID(m["message_id"]) for m in messages])
            }
            fresh = [m for m in messages if uuid.UUID(m["message_id"]) in new]
            rows = await handle(conn, fresh) if fresh else []
            ids = await write_outbox(conn, rows)
        relay.hand(ids, rows)
        await consumer.commit()
        stats["batches"] += 1
        stats["records"] += len(records)


async def lock(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> None:
    customers = sorted({uuid.UUID(m["payload"]["customer_id"]) for m in messages})
    await conn.fetch(_LOCK, customers)


# ------------------------------------------------------------------------------ the consumers


def _total(command: dict[str, Any]) -> Decimal:
    return sum(
        (Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in command["lines"]),
        Decimal(0),
    )


def _accrual(base: Decimal) -> Decimal:
    """10% of the base, to the cent."""
    return (base / 10).quantize(Decimal("0.01"))


def _message(topic: str, type_: str, payload: dict[str, Any]) -> Row:
    """An outbox row to `topic`, keyed by the payload's customer."""
    key = payload["customer_id"]
    return (topic, key, envelope(type_, key, payload))


async def insert_operations(
    conn: asyncpg.Connection, commands: list[dict[str, Any]], status: str, amounts: list[Decimal]
) -> None:
    await conn.execute(
        "INSERT INTO operations (operation_id, customer_id, status, amount)"
        " SELECT o, c, $4, a FROM unnest($1::uuid[], $2::uuid[], $3::numeric[]) AS x(o, c, a)",
        [uuid.UUID(c["operation_id"]) for c in commands],
        [uuid.UUID(c["customer_id"]) for c in commands],
        amounts,
        status,
    )


async def apply_accruals(
    conn: asyncpg.Connection, payloads: list[dict[str, Any]], accrued: list[Decimal]
) -> dict[uuid.UUID, Decimal]:
    """The movements recorded and the balances moved; the balance after, per customer."""
    customers = [uuid.UUID(p["customer_id"]) for p in payloads]
    await conn.execute(
        "INSERT INTO movements (operation_id, customer_id, accrued)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::numeric[])",
        [uuid.UUID(p["operation_id"]) for p in payloads],
        customers,
        accrued,
    )
    balances = await conn.fetch(
        "UPDATE customers SET balance = customers.balance + x.a FROM"
        " (SELECT c, sum(a) AS a FROM unnest($1::uuid[], $2::numeric[]) AS u(c, a) GROUP BY c)"
        " AS x WHERE customers.customer_id = x.c RETURNING customer_id, balance",
        customers,
        accrued,
    )
    return {r["customer_id"]: r["balance"] for r in balances}


async def store_outcomes(conn: asyncpg.Connection, done: list[dict[str, Any]]) -> None:
    """The gateway: each outcome on its request, once (`status = 'pending'`)."""
    await conn.execute(
        "UPDATE requests SET status = 'completed', outcome = x.o, completed_at = now()"
        " FROM unnest($1::uuid[], $2::jsonb[]) AS x(r, o)"
        " WHERE requests.request_id = x.r AND requests.status = 'pending'",
        [uuid.UUID(d["request_id"]) for d in done],
        [json.dumps(d) for d in done],
    )


def _of_types(messages: list[dict[str, Any]], *types: str) -> list[list[dict[str, Any]]]:
    """The payloads of `messages`, a list per type of `types`, in order."""
    return [[m["payload"] for m in messages if m["type"] == t] for t in types]


def _ids(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("operation_id", "request_id", "customer_id")}


async def _pending(
    conn: asyncpg.Connection, commands: list[dict[str, Any]], topic: str, type_: str, field: str
) -> list[Row]:
    """The commands' operations recorded pending at their totals; a message each to `topic`,
    the total as `field`."""
    totals = [_total(c) for c in commands]
    await insert_operations(conn, commands, "pending", totals)
    return [
        _message(topic, type_, {**_ids(c), field: str(t)})
        for c, t in zip(commands, totals, strict=True)
    ]


async def credit_batch(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[Row]:
    """Commands: the operation pending and loyalty asked; answers: confirmed, outcome out."""
    await lock(conn, messages)
    commands, answers = _of_types(messages, "command", "answer")
    rows: list[Row] = []
    if commands:
        rows += await _pending(conn, commands, TOPICS["asks"], "ask", "base")
    if answers:
        confirmed = await conn.fetch(
            "UPDATE operations SET status = 'confirmed' WHERE operation_id = ANY($1::uuid[])"
            " AND status = 'pending' RETURNING operation_id, amount",
            [uuid.UUID(a["operation_id"]) for a in answers],
        )
        amount = {r["operation_id"]: r["amount"] for r in confirmed}
        rows += [
            _message(
                TOPICS["outcomes"],
                "outcome",
                {**a, "total": str(amount[uuid.UUID(a["operation_id"])]), "status": "completed"},
            )
            for a in answers
            if uuid.UUID(a["operation_id"]) in amount
        ]
    return rows


async def _accrue(
    conn: asyncpg.Connection,
    messages: list[dict[str, Any]],
    base: Callable[[dict[str, Any]], Decimal],
    topic: str,
    type_: str,
) -> list[Row]:
    """10% of each message's base accrued and the balances moved at once; each message sent on
    to `topic` with the accrual and the balance after it."""
    await lock(conn, messages)
    payloads = [m["payload"] for m in messages]
    accrued = [_accrual(base(p)) for p in payloads]
    balance = await apply_accruals(conn, payloads, accrued)
    return [
        _message(
            topic,
            type_,
            {**p, "accrued": str(x), "bonus_balance": str(balance[uuid.UUID(p["customer_id"])])},
        )
        for p, x in zip(payloads, accrued, strict=True)
    ]


async def loyalty_batch(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[Row]:
    """Asks: 10% of the base credit sent accrued, the answer out."""
    return await _accrue(
        conn, messages, lambda ask: Decimal(ask["base"]), TOPICS["answers"], "answer"
    )


# ------------------------------------------------------------- the parallel shape's consumers


async def credit_parallel(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[Row]:
    """Commands: the operation pending, credit's decision to the gateway; the gateway's finish:
    confirmed, and its event out for the read models."""
    await lock(conn, messages)
    commands, finishes = _of_types(messages, "command", "finish")
    rows: list[Row] = []
    if commands:
        rows += await _pending(conn, commands, TOPICS["decisions"], "credit_decision", "total")
    if finishes:
        await conn.execute(
            "UPDATE operations SET status = 'confirmed' WHERE operation_id = ANY($1::uuid[])"
            " AND status = 'pending'",
            [uuid.UUID(f["operation_id"]) for f in finishes],
        )
        rows += [_message(TOPICS["events"], "completed", f) for f in finishes]
    return rows


async def loyalty_parallel(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[Row]:
    """Commands: the accrual reserved, loyalty's decision (the balance with it) to the gateway;
    the gateway's finish: the accrual applied to the balance."""
    customers = sorted({uuid.UUID(m["payload"]["customer_id"]) for m in messages})
    balance = {
        r["customer_id"]: r["balance"]
        for r in await conn.fetch(
            "SELECT customer_id, balance FROM customers WHERE customer_id = ANY($1::uuid[])"
            " ORDER BY customer_id FOR UPDATE",
            customers,
        )
    }
    commands, finishes = _of_types(messages, "command", "finish")
    rows: list[Row] = []
    if commands:
        accrued = [_accrual(_total(c)) for c in commands]
        await conn.execute(
            "INSERT INTO movements (operation_id, customer_id, accrued, status)"
            " SELECT o, c, a, 'reserved' FROM unnest($1::uuid[], $2::uuid[], $3::numeric[])"
            " AS x(o, c, a)",
            [uuid.UUID(c["operation_id"]) for c in commands],
            [uuid.UUID(c["customer_id"]) for c in commands],
            accrued,
        )
        rows += [
            _message(
                TOPICS["decisions"],
                "loyalty_decision",
                {
                    **_ids(c),
                    "accrued": str(a),
                    "bonus_balance": str(balance[uuid.UUID(c["customer_id"])] + a),
                },
            )
            for c, a in zip(commands, accrued, strict=True)
        ]
    if finishes:
        await conn.execute(
            "WITH m AS (UPDATE movements SET status = 'applied'"
            " WHERE operation_id = ANY($1::uuid[]) AND status = 'reserved'"
            " RETURNING customer_id, accrued)"
            " UPDATE customers SET balance = customers.balance + x.a"
            " FROM (SELECT customer_id, sum(accrued) AS a FROM m GROUP BY customer_id) AS x"
            " WHERE customers.customer_id = x.customer_id",
            [uuid.UUID(f["operation_id"]) for f in finishes],
        )
    return rows


async def join_decisions(
    conn: asyncpg.Connection, messages: list[dict[str, Any]]
) -> tuple[list[Row], list[dict[str, Any]]]:
    """The gateway: each decision stored on its request; a request with both decided is
    completed once (`status = 'pending'`), its outcome built, its finish sent to both."""
    pairs: dict[str, list[str | None]] = {}
    for m in messages:
        pair = pairs.setdefault(m["payload"]["request_id"], [None, None])
        pair[0 if m["type"] == "credit_decision" else 1] = json.dumps(m["payload"])
    stored = await conn.fetch(
        "UPDATE requests SET credit = coalesce(x.c, requests.credit),"
        " loyalty = coalesce(x.l, requests.loyalty)"
        " FROM unnest($1::uuid[], $2::jsonb[], $3::jsonb[]) AS x(r, c, l)"
        " WHERE requests.request_id = x.r AND requests.status = 'pending'"
        " RETURNING requests.credit, requests.loyalty",
        [uuid.UUID(r) for r in pairs],
        [p[0] for p in pairs.values()],
        [p[1] for p in pairs.values()],
    )
    done = [
        {**json.loads(r["credit"]), **json.loads(r["loyalty"]), "status": "completed"}
        for r in stored
        if r["credit"] is not None and r["loyalty"] is not None
    ]
    if not done:
        return [], []
    await store_outcomes(conn, done)
    return [_message(TOPICS["commands"], "finish", d) for d in done], done


# -------------------------------------------------------- the loyalty-first shape's consumers


async def loyalty_first(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[Row]:
    """Commands: the accrual applied at once and the command passed on to credit with
    loyalty's figures (a refusal by credit would have to undo it: not measured here)."""
    return await _accrue(conn, messages, _total, TOPICS["asks"], "bonused")


async def credit_last(conn: asyncpg.Connection, messages: list[dict[str, Any]]) -> list[Row]:
    """Loyalty's passed-on commands: the operation recorded confirmed, the outcome (built once,
    with loyalty's figures) out to the gateway and the read models."""
    await lock(conn, messages)
    commands = [m["payload"] for m in messages]
    totals = [_total(c) for c in commands]
    await insert_operations(conn, commands, "confirmed", totals)
    return [
        _message(
            TOPICS["outcomes"],
            "outcome",
            {
                **_ids(c),
                "accrued": c["accrued"],
                "bonus_balance": c["bonus_balance"],
                "total": str(t),
                "status": "completed",
            },
        )
        for c, t in zip(commands, totals, strict=True)
    ]


# ------------------------------------------------------------------------------ the processes


async def _kafka(
    bootstrap: str, group: str, topics: list[str], *, producer_only: bool = False
) -> tuple[Any, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=500,
        fetch_min_bytes=1,
    )
    await consumer.start()
    return producer, consumer


def _write_stats(path: Path, stats: dict[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    tmp.replace(path)


async def _report(path: Path, stats: dict[str, int], consumer: Any) -> None:
    while True:
        stats["assigned"] = len(consumer.assignment())
        await asyncio.to_thread(_write_stats, path, stats)
        await asyncio.sleep(0.5)


async def run_consumer(role: str, database_url: str, bootstrap: str, stats_path: Path) -> None:
    handle: Batch
    if parallel():
        topics = [TOPICS["commands"]]
        handle = credit_parallel if role == "credit" else loyalty_parallel
    elif _RUN["shape"] == "loyalty-first":
        topics = [TOPICS["asks"] if role == "credit" else TOPICS["commands"]]
        handle = credit_last if role == "credit" else loyalty_first
    elif role == "credit":
        topics, handle = [TOPICS["commands"], TOPICS["answers"]], credit_batch
    else:
        topics, handle = [TOPICS["asks"]], loyalty_batch
    pool = await asyncpg.create_pool(
        plain_url(database_url),
        min_size=2,
        max_size=4,
        server_settings={"synchronous_commit": "off"},
    )
    producer, consumer = await _kafka(bootstrap, group(role), topics)
    relay = Relay(pool, producer)
    stats = {"batches": 0, "records": 0, "assigned": 0}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [
        asyncio.create_task(relay.run()),
        asyncio.create_task(consume(consumer, pool, relay, handle, stats)),
        asyncio.create_task(_report(stats_path, stats, consumer)),
    ]
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        if t in done and t.exception() is not None:
            raise RuntimeError(f"{role}: a task failed") from t.exception()
        t.cancel()
    await consumer.stop()
    await producer.stop()
    await pool.close()


def build_edge(database_url: str, bootstrap: str, stats_path: Path) -> Any:
    from fastapi import FastAPI

    state: dict[str, Any] = {}
    waiting: dict[uuid.UUID, asyncio.Future[dict[str, Any]]] = {}

    async def consume_outcomes(consumer: Any, pool: asyncpg.Pool, stats: dict[str, int]) -> None:
        try:
            await _consume_outcomes(consumer, pool, stats)
        except BaseException:
            traceback.print_exc()  # the process's log: the requests would only time out
            raise

    async def _consume_outcomes(consumer: Any, pool: asyncpg.Pool, stats: dict[str, int]) -> None:
        while True:
            polled = await consumer.getmany(timeout_ms=500, max_records=500)
            records = [r for part in polled.values() for r in part]
            if not records:
                continue
            messages = [json.loads(r.value) for r in records]
            if parallel():
                async with pool.acquire() as conn, conn.transaction():
                    rows, state["answered"] = await join_decisions(conn, messages)
                    ids = await write_outbox(conn, rows)
                state["relay"].hand(ids, rows)
            else:
                state["answered"] = [m["payload"] for m in messages]
                async with pool.acquire() as conn:
                    # one statement: it commits by itself
                    await store_outcomes(conn, state["answered"])
            await consumer.commit()
            for d in state.pop("answered"):
                future = waiting.get(uuid.UUID(d["request_id"]))
                if future is not None and not future.done():
                    future.set_result(d)
            stats["batches"] += 1
            stats["records"] += len(records)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            plain_url(database_url),
            min_size=8,
            max_size=16,
            server_settings={"synchronous_commit": "off"},
        )
        topic = TOPICS["decisions"] if parallel() else TOPICS["outcomes"]
        producer, consumer = await _kafka(bootstrap, group("edge"), [topic])
        relay = Relay(pool, producer)
        stats = {"batches": 0, "records": 0, "assigned": 0}
        state.update(pool=pool, relay=relay)
        tasks = [
            asyncio.create_task(relay.run()),
            asyncio.create_task(consume_outcomes(consumer, pool, stats)),
            asyncio.create_task(_report(stats_path, stats, consumer)),
        ]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await consumer.stop()
            await producer.stop()
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post(PATH, status_code=201)
    async def sale(body: SaleCreate) -> JSONResponse:
        request_id = uuid.uuid4()
        customer = str(customer_of(body.card_number or ""))
        sale = body.model_dump(mode="json")
        command = {
            "operation_id": str(uuid.uuid4()),
            "request_id": str(request_id),
            "customer_id": customer,
            "lines": sale["lines"],
            "payments": sale["payments"],
        }
        value = envelope("command", customer, command)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting[request_id] = future
        try:
            outbox_id = await state["pool"].fetchval(
                "WITH r AS (INSERT INTO requests (request_id, customer_id, status, request)"
                " VALUES ($1, $2, 'pending', $3::jsonb))"
                " INSERT INTO outbox (message_id, topic, key, value)"
                " VALUES ($4, $5, $6, $7) RETURNING id",
                request_id,
                uuid.UUID(customer),
                json.dumps(sale),
                uuid.uuid4(),
                TOPICS["commands"],
                customer,
                value,
            )
            state["relay"].hand([outbox_id], [(TOPICS["commands"], customer, value)])
            outcome = await asyncio.wait_for(future, 10.0)
        except TimeoutError:
            return JSONResponse({"status": "pending"}, status_code=202)
        finally:
            waiting.pop(request_id, None)
        return JSONResponse(outcome, status_code=201)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_edge(database_url: str, bootstrap: str, stats_path: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(
        build_edge(database_url, bootstrap, stats_path),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )


# -------------------------------------------------------------------------------- the driver


async def _send(body: bytes, conns: asyncio.Queue[Any]) -> int:
    reader, writer = await conns.get()
    try:
        return await post(reader, writer, body)
    finally:
        conns.put_nowait((reader, writer))


async def open_loop(
    port: int, bodies: list[bytes], rate: float, seconds: float, connections: int = 128
) -> dict[str, Any]:
    """Requests at `rate` per second for `seconds`, each timed from when it was due."""
    conns: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(connections):
        conns.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    rng = random.Random(5)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(due: float) -> None:
        status = await _send(rng.choice(bodies), conns)
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    while not conns.empty():
        conns.get_nowait()[1].close()
    return {
        "sent": len(tasks),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round((percentile(latencies, 50) or 0) * 1000, 1),
        "p99_ms": round((percentile(latencies, 99) or 0) * 1000, 1),
    }


def _read_stats(paths: dict[str, Path]) -> dict[str, dict[str, int]]:
    return {name: json.loads(p.read_text()) for name, p in paths.items() if p.exists()}


async def _settled(paths: dict[str, Path], quiet: float = 1.5, within: float = 30.0) -> None:
    """Until no process has taken a record for `quiet` seconds: what the POS's answer does not
    wait for (the parallel shape's finish) is applied before the processes stop."""
    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        seen = {name: s["records"] for name, s in _read_stats(paths).items()}
        if seen != last:
            last, since = seen, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.25)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TOOLS, os.environ.get("PYTHONPATH", "")])}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.shape", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


async def _prepare(server_url: str, bootstrap: str, cards: list[str]) -> dict[str, str]:
    from servicekit.topics import ensure_topics

    urls = {}
    for role, schema in SCHEMAS.items():
        url = await _create_database(server_url, f"bench_shape_{role}")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            await conn.execute(schema)
            if role != "edge":
                await conn.execute(
                    "INSERT INTO customers (customer_id) SELECT unnest($1::uuid[])",
                    [customer_of(c) for c in cards],
                )
        finally:
            await conn.close()
        urls[role] = url
    await ensure_topics(bootstrap, list(TOPICS.values()), partitions=6)
    return urls


async def measure(
    server_url: str,
    bootstrap: str,
    rates: list[float],
    *,
    seconds: float = 15.0,
    warmup_seconds: float = 30.0,
    pids: dict[str, int] | None = None,
    run_dir: Path,
    shape: str = "serial",
) -> dict[str, Any]:
    """Start the three processes, drive each rate in turn, stop them (by PID, also on
    failure). `pids`: other process trees to count per request (PostgreSQL, Kafka); `shape`:
    one of `SHAPES`."""
    bodies = _sale_bodies(400)
    cards = sorted({json.loads(b)["card_number"] for b in bodies})
    run_id = secrets.token_hex(4)
    use_run(run_id, shape)
    urls = await _prepare(server_url, bootstrap, cards)
    await asyncio.to_thread((run_dir / "logs").mkdir, parents=True, exist_ok=True)
    paths = {role: run_dir / f"shape-{role}.json" for role in ("edge", "credit", "loyalty")}
    for path in paths.values():
        await asyncio.to_thread(path.unlink, missing_ok=True)
    port = free_port()
    procs = {
        role: _spawn(
            [role, urls[role], bootstrap, str(paths[role]), "--run", run_id, "--shape", shape]
            + (["--port", str(port)] if role == "edge" else []),
            run_dir / "logs" / f"shape-{role}.log",
        )
        for role in paths
    }
    steps = []
    try:
        await _wait_up(port, procs["edge"])
        deadline = time.monotonic() + 60
        while any(s.get("assigned", 0) == 0 for s in _read_stats(paths).values()) or len(
            _read_stats(paths)
        ) < len(paths):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the consumers were not assigned: {_read_stats(paths)}")
            await asyncio.sleep(0.2)
        # Kafka's JIT and the processes' caches warm up first (a broker just started spends
        # most of a core for a minute whatever the traffic)
        await open_loop(port, bodies, min(rates), warmup_seconds)
        roots = {name: p.pid for name, p in procs.items()} | (pids or {})
        for rate in rates:
            before, stats0 = procstat.sample(roots), _read_stats(paths)
            wall0 = time.perf_counter()
            load = await open_loop(port, bodies, rate, seconds)
            wall = time.perf_counter() - wall0
            after, stats1 = procstat.sample(roots), _read_stats(paths)
            usage = procstat.usage(before, after, wall)
            done = max(1, load["statuses"].get("201", 0))
            per = {
                name: round(usage[name]["cpu_percent"] / 100 * wall * 1000 / done, 3)
                for name in roots
                if name in usage
            }
            batches = {
                name: round(
                    (stats1[name]["records"] - stats0[name]["records"])
                    / max(1, stats1[name]["batches"] - stats0[name]["batches"]),
                    2,
                )
                for name in paths
            }
            step = {
                "rate": rate,
                "achieved": round(load["sent"] / wall, 1),
                **load,
                "cpu_ms_per_sale": per,
                "total_cpu_ms_per_sale": round(sum(per.values()), 2),
                "records_per_batch": batches,
                "machine_cpu_percent": usage["(machine, all processes)"]["cpu_percent"],
            }
            print(f"[shape] {json.dumps(step)}", file=sys.stderr, flush=True)
            steps.append(step)
            if load["statuses"].get("201", 0) < 0.99 * load["sent"]:
                break  # did not keep up: no higher rate
        await _settled(paths)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            stop(p)
    return {
        "shape": shape,
        "steps": steps,
        "seconds": seconds,
        "measured_at": measured_at(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shape")
    sub = parser.add_subparsers(dest="command", required=True)
    for role in ("edge", "credit", "loyalty"):
        one = sub.add_parser(role, help=f"run the {role} process (the bench starts it itself)")
        one.add_argument("database_url")
        one.add_argument("bootstrap")
        one.add_argument("stats", type=Path)
        one.add_argument("--run", required=True, help="the run's id (topics, groups)")
        one.add_argument("--shape", choices=SHAPES, default="serial")
        if role == "edge":
            one.add_argument("--port", type=int, required=True)
    run = sub.add_parser("run", help="measure: its own Kafka and PostgreSQL (devstack)")
    run.add_argument("--rates", default="50,100,200,400")
    run.add_argument("--seconds", type=float, default=15.0)
    run.add_argument("--warmup-seconds", type=float, default=30.0)
    run.add_argument(
        "--shapes",
        default="serial",
        help="comma-separated, measured in turn on the same Kafka and PostgreSQL: serial "
        "(today's four hops) and/or parallel (credit and loyalty decide at once and the gateway "
        "joins: the proposal in docs/architecture.md)",
    )
    run.add_argument(
        "--label",
        default=None,
        help="write docs/benchmarks/shape-<label>.json and render docs/benchmarks.md again",
    )
    args = parser.parse_args(argv)
    if args.command in ("edge", "credit", "loyalty"):
        use_run(args.run, args.shape)
    if args.command == "edge":
        serve_edge(args.database_url, args.bootstrap, args.stats, args.port)
    elif args.command in ("credit", "loyalty"):
        import uvloop

        uvloop.run(run_consumer(args.command, args.database_url, args.bootstrap, args.stats))
    else:
        from devstack import purge_run_dir, start_infra

        started = time.time()
        infra = start_infra("bench-shape", use_env=False)
        try:
            assert infra.postgres is not None and infra.kafka is not None
            shapes = [x for x in args.shapes.split(",") if x]
            if not set(shapes) <= set(SHAPES):
                parser.error(f"--shapes: each of {', '.join(SHAPES)}")
            result = {
                "runs": [
                    asyncio.run(
                        measure(
                            infra.database_url,
                            infra.kafka_bootstrap_servers,
                            [float(r) for r in args.rates.split(",") if r],
                            seconds=args.seconds,
                            warmup_seconds=args.warmup_seconds,
                            shape=shape,
                            pids={"postgres": infra.postgres.pid, "kafka": infra.kafka.pid},
                            run_dir=infra.run_dir,
                        )
                    )
                    for shape in shapes
                ]
            }
        finally:
            infra.stop()
            purge_run_dir(infra.run_dir, keep_logs=True)  # no topic or table left for the next
        result["label"] = args.label or ""
        result["command"] = shlex.join(["run", *argv[1:]])
        result["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        text = json.dumps(result, indent=1)
        print(text)
        if args.label:
            from bench.render import render
            from devstack.paths import repo_root

            out = repo_root() / "docs" / "benchmarks"
            (out / f"shape-{args.label}.json").write_text(text + "\n")
            render(out, repo_root() / "docs" / "benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
