"""Micro-benchmark of `servicekit.consumer.Consumer.process_records` on a real PostgreSQL.

`PYTHONPATH=tools python -m bench consumer` pushes N envelopes (default 5,000) through one
consumer in batches of 200, with a trivial handler that inserts one row, and reports messages
per second and database round trips per message. Round trips are counted, not timed: every
statement (SQLAlchemy's `before_cursor_execute`), every BEGIN and COMMIT/ROLLBACK (connection
events) and every pool checkout (the pool's pre-ping costs a round trip per checkout). They do
not depend on how busy the machine is, so they are the figure to compare between commits;
messages/s moves with the load other processes put on the cores; the process's own CPU per
message (`time.process_time`, median of the runs) much less.

PostgreSQL comes from `DATABASE_URL` when set (e.g. `python -m devstack infra up` exported),
otherwise devstack starts one for the run and stops it at the end. Each run uses a database
of its own. `--poison-per-batch 1` puts one message per batch whose handler raises
`PermanentError`: the price of the isolating slow path.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord
from sqlalchemy import event

from bench.inprocess import carrier
from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import encode, make_envelope
from devstack.stack import start_infra
from servicekit.consumer import Consumer, MessageContext, PermanentError
from servicekit.db import ensure_database, make_engine, make_session_factory
from servicekit.schema import messaging_tables
from servicekit.settings import with_database

METADATA = sa.MetaData()
messaging_tables(METADATA)
EFFECTS = sa.Table(
    "bench_effects",
    METADATA,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
)
TOPIC = "bench.consumer.v1"


@dataclass
class Options:
    messages: int = 5_000
    batch: int = 200
    repeats: int = 3
    poison_per_batch: int = 0
    database_url: str | None = None


def _records(count: int, batch: int, poison_per_batch: int) -> list[list[Any]]:
    """`count` distinct envelopes as consumer records, cut into batches; the poisoned ones
    (if asked) sit in the middle of their batch, so the fast path has work to throw away."""
    records = []
    for i in range(count):
        poison = poison_per_batch > 0 and (i % batch) in range(
            batch // 2, batch // 2 + poison_per_batch
        )
        letter = carrier(i, "poison" if poison else "carrier")
        env = make_envelope(
            letter, chain_id=uuid.uuid4(), key="customer-1", correlation_id=uuid.uuid4()
        )
        value = encode(env)
        records.append(
            ConsumerRecord(
                topic=TOPIC,
                partition=i % 4,
                offset=i,
                timestamp=0,
                timestamp_type=0,
                key=b"customer-1",
                value=value,
                checksum=None,
                serialized_key_size=10,
                serialized_value_size=len(value),
                headers=(),
            )
        )
    return [records[i : i + batch] for i in range(0, len(records), batch)]


async def _run(url: str, opts: Options) -> dict[str, Any]:
    await ensure_database(url)
    engine = make_engine(url, pool_size=2)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    counts: Counter[str] = Counter()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts["statements"] += 1
        counts["savepoint statements"] += "SAVEPOINT" in statement

    for name in ("begin", "commit", "rollback"):
        event.listen(
            engine.sync_engine,
            name,
            lambda conn, name=name: counts.__setitem__(name, counts[name] + 1),
        )
    event.listen(
        engine.sync_engine.pool,
        "checkout",
        lambda *a: counts.__setitem__("checkouts", counts["checkouts"] + 1),
    )

    async def apply(ctx: MessageContext, payload: DeadLetter) -> None:
        if payload.reason == "poison":
            raise PermanentError("bench poison")
        await ctx.session.execute(
            sa.insert(EFFECTS).values(message_id=str(ctx.envelope.message_id))
        )

    consumer = Consumer(
        name=f"bench-{secrets.token_hex(3)}",
        topics=[TOPIC],
        handlers={DeadLetter: apply},
        max_records=opts.batch,
    )
    consumer.bind(make_session_factory(engine))
    # warm-up: statement compilation caches and prepared statements, not measured
    for batch in _records(opts.batch, opts.batch, opts.poison_per_batch):
        await consumer.process_records(batch)

    rates: list[float] = []
    cpu_us: list[float] = []
    per_run: list[Counter[str]] = []
    for _ in range(opts.repeats):
        batches = _records(opts.messages, opts.batch, opts.poison_per_batch)
        counts.clear()
        started = time.perf_counter()
        cpu_started = time.process_time()
        for batch in batches:
            await consumer.process_records(batch)
        cpu_us.append((time.process_time() - cpu_started) / opts.messages * 1e6)
        elapsed = time.perf_counter() - started
        rates.append(opts.messages / elapsed)
        per_run.append(Counter(counts))
    async with engine.connect() as conn:
        applied = await conn.scalar(sa.select(sa.func.count()).select_from(EFFECTS))
        inbox = await conn.scalar(sa.text("SELECT count(*) FROM inbox"))
    await engine.dispose()
    total = opts.batch + opts.repeats * opts.messages
    poisoned = opts.poison_per_batch * (1 + opts.repeats * -(-opts.messages // opts.batch))
    if applied != total - poisoned or inbox != total - poisoned:
        raise AssertionError(f"applied {applied}, inbox {inbox}: expected {total - poisoned}")
    n = opts.messages
    c = per_run[-1]
    round_trips = c["statements"] + c["begin"] + c["commit"] + c["rollback"] + c["checkouts"]
    return {
        "messages": n,
        "batch": opts.batch,
        "poison_per_batch": opts.poison_per_batch,
        "repeats": opts.repeats,
        "messages_per_s_median": statistics.median(rates),
        "messages_per_s_best": max(rates),
        # this process's CPU (the consumer's Python work; PostgreSQL's is not in it)
        "cpu_us_per_message_median": statistics.median(cpu_us),
        "statements_per_message": c["statements"] / n,
        "savepoints_per_message": c["savepoint statements"] / n,
        "round_trips_per_message": round_trips / n,
        "counts_last_run": dict(c),
        "rows_applied": applied,
        "inbox_rows": inbox,
    }


def main(opts: Options) -> dict[str, Any]:
    infra = None
    url = opts.database_url
    if url is None:
        infra = start_infra(f"bench-{secrets.token_hex(3)}")
        url = infra.database_url
    try:
        result = asyncio.run(
            _run(with_database(url, f"bench_consumer_{secrets.token_hex(3)}"), opts)
        )
    finally:
        if infra is not None:
            infra.stop(purge=True)
    return result


def report(result: dict[str, Any]) -> str:
    return (
        f"{result['messages']} messages in batches of {result['batch']}"
        f" (poison per batch: {result['poison_per_batch']}), {result['repeats']} runs:"
        f" {result['messages_per_s_median']:,.0f} msg/s median"
        f" (best {result['messages_per_s_best']:,.0f}),"
        f" {result['cpu_us_per_message_median']:,.0f} us of this process's CPU per message;"
        f" per message {result['round_trips_per_message']:.3f} round trips"
        f" = {result['statements_per_message']:.3f} statements"
        f" ({result['savepoints_per_message']:.3f} savepoint statements)"
        f" + BEGIN/COMMIT/ROLLBACK/checkouts; counts of the last run {result['counts_last_run']};"
        f" rows applied {result['rows_applied']}, inbox rows {result['inbox_rows']}"
    )
