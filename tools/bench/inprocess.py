"""What the in-process CPU measures (`bench.credit_cpu`, `bench.loyalty_cpu`,
`bench.projection_cpu`, `bench.hop`, `bench.relay_cpu`) share: a message as the consumer record
Kafka would deliver, a count of the statements an engine sends, a PostgreSQL server to measure
on, a database with servicekit's messaging tables, and the A/B loop that runs a measure
alternately on older code and on this checkout."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.deadletter.v1 import DeadLetter
from contracts.envelope import encode, make_envelope
from contracts.registry import lookup
from servicekit.db import SessionFactory, ensure_database, make_engine, make_session_factory
from servicekit.schema import messaging_tables

HERE = Path(__file__).resolve().parents[2]


def bind_as_in_a_service(consumer: Any, session_factory: SessionFactory) -> None:
    """`consumer.bind(session_factory)`, and the connection kept between batches as a
    service's consumers keep it (`Consumer.keep_connection`, set by the runtime; older code
    has no such setting and ignores it)."""
    consumer.bind(session_factory)
    consumer.keep_connection = True


def record(model: Message, key: uuid.UUID, offset: int) -> ConsumerRecord[Any, Any]:
    """`model` in a new envelope, as the record its registered topic would deliver."""
    env = make_envelope(model, chain_id=None, key=str(key), correlation_id=uuid.uuid4())
    value = encode(env)
    return ConsumerRecord(
        topic=lookup(env.type, env.schema_version).topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=str(key).encode(),
        value=value,
        checksum=None,
        serialized_key_size=36,
        serialized_value_size=len(value),
        headers=(),
    )


def carrier(offset: int, reason: str = "carrier") -> DeadLetter:
    """A registered message with no meaning of its own, numbered by `offset`: what the
    consumer measures (`bench.consumer_micro`, `bench.hop`) carry through a handler."""
    return DeadLetter(
        consumer="bench",
        original_topic="x",
        partition=0,
        offset=offset,
        key="k",
        reason=reason,
        error_type="none",
        original_value="{}",
        failed_at=datetime.now(UTC),
    )


async def messaging_database(url: str, *, pool_size: int) -> tuple[AsyncEngine, SessionFactory]:
    """The database at `url` (created if missing) with servicekit's inbox and outbox tables: an
    engine (dispose it) and its session factory."""
    await ensure_database(url)
    engine = make_engine(url, pool_size=pool_size)
    meta = sa.MetaData()
    messaging_tables(meta)
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    return engine, make_session_factory(engine)


def statement_counter(engine: Any) -> list[int]:
    """[statements sent by `engine` since the item was last set to 0]"""
    import sqlalchemy as sa

    count = [0]

    def seen(*_args: Any) -> None:
        count[0] += 1

    sa.event.listen(engine.sync_engine, "before_cursor_execute", seen)
    return count


@contextlib.contextmanager
def database_server() -> Iterator[str]:
    """A PostgreSQL server URL: `DATABASE_URL`, else one devstack starts for the block and
    stops after it."""
    server = os.environ.get("DATABASE_URL")
    if server:
        yield server
        return
    from devstack.stack import start_infra

    infra = start_infra(f"bench-{secrets.token_hex(3)}")
    try:
        yield infra.database_url
    finally:
        infra.stop(purge=True)


def alternate(
    module: str,
    passed: Sequence[str],
    ab_src: Sequence[str],
    services: Sequence[str],
    repeats: int,
    *,
    libs: Sequence[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """`python -m <module> <passed>` run `repeats` times per variant (the code of `services`
    and `libs` under each `ab_src` root, then this checkout's), the order reversed every other
    round, on one PostgreSQL server; per variant, the JSON each run printed last."""
    variants = [(str(src), Path(src)) for src in ab_src] + [("this checkout", HERE)]
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with database_server() as server:
        for r in range(repeats):
            for name, root in variants if r % 2 == 0 else list(reversed(variants)):
                paths = [str(root / "services" / s / "src") for s in services]
                paths += [str(root / "libs" / lib / "src") for lib in libs]
                env = {
                    **os.environ,
                    "DATABASE_URL": server,
                    "PYTHONPATH": os.pathsep.join([*paths, str(HERE / "tools")]),
                }
                done = subprocess.run(
                    [sys.executable, "-m", module, *passed],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                last = done.stdout.strip().splitlines()[-1]
                runs[name].append(json.loads(last))
                print(name, last, file=sys.stderr)
    return runs


def summarize_runs(
    runs: dict[str, list[dict[str, Any]]],
    value: tuple[str, Callable[[dict[str, Any]], float]],
    statements: tuple[str, Callable[[dict[str, Any]], float]],
) -> dict[str, dict[str, Any]]:
    """Per variant of `alternate`'s runs: under `value`'s name the median of its figure, then
    its range and every run's figure in the order run (the variants alternate, so runs pair up
    by position), and under `statements`' name that figure of the first run."""
    (value_name, of), (statements_name, statements_of) = value, statements
    out: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        values = [of(r) for r in results]
        out[name] = {
            value_name: round(statistics.median(values), 3),
            "range": [min(values), max(values)],
            "runs": values,
            statements_name: statements_of(results[0]),
        }
    return out
