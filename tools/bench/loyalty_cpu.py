"""CPU of loyalty per `ApplyBonuses` message: the repository of an older commit against this
checkout's, alternately in one process.

`PYTHONPATH=tools python -m bench.loyalty_cpu --old-rev 153a048` loads that revision's
`loyalty/adapters/repository.py` (`git show REV:...`) as a module of its own and points
`loyalty.service_layer.handlers.repo` at it and at this checkout's module in turn; everything
else (the consumer, the handlers, servicekit, the database and its connections) is shared. So
it compares two repositories behind the same handlers: valid only while the handlers call both
the same way (true for 153a048, before loyalty's statements moved to `servicekit.sql`).

Each round feeds `--per-round` sales through the real consumer (`process_records`), round robin
over `--customers` customers who each got 20.00 of bonus first: the statement budget test's
sale (spend 1.00, accrue 10% on a 30.00 cash payment), `--batch` messages per batch, with
`time.process_time` around each batch; old and new alternate within a round, in the opposite
order every other round. `--returns`: every second message is a return of the oldest sale not
returned yet (restores the 1.00 it spent, reverses its accrual). Printed per variant: the median
over the rounds of the CPU ms per message, their range, the median per batch (and per operation
kind with `--batch 1`), statements per message. Process CPU: PostgreSQL's own time is not in it,
other processes on the machine move it little.

`--ab-src DIR` (repeatable; a checkout's root, e.g. an older commit's tree from `git archive`)
compares whole versions of loyalty instead, handlers included: the measure runs with the
loyalty, servicekit and contracts code under each DIR and with this checkout's, `--repeats`
times each, in separate processes in turn (`bench.inprocess.alternate`), each process
measuring only the code on its path (`--old-rev ''`), and the medians and ranges of the runs
are printed.

PostgreSQL comes from `DATABASE_URL` (a server URL; a database of its own per run), otherwise
devstack starts one for the run and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import itertools
import json
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from aiokafka import ConsumerRecord

import loyalty.adapters.repository as new_repo
from bench.inprocess import alternate, bind_as_in_a_service, database_server, summarize_runs
from contracts.credit.v1 import ApplyBonuses, BonusBase
from contracts.enums import BonusOperationKind, PaymentMethod
from contracts.envelope import encode, make_envelope
from contracts.topics import LOYALTY_COMMANDS
from devstack.paths import repo_root
from loyalty.entrypoints.app import MIGRATIONS_DIR, build_consumer
from loyalty.service_layer import handlers
from servicekit.db import make_engine, make_session_factory, prepare_database
from servicekit.settings import with_database

REPO_PATH = "services/loyalty/src/loyalty/adapters/repository.py"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_offsets = itertools.count()


def old_module(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:{REPO_PATH}"],
        cwd=repo_root(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = f"loyalty.adapters.repository_{rev}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:{REPO_PATH}", "exec"), module.__dict__)
    return module


class Sales:
    """One chain's customers and their operations, as credit sends them to loyalty."""

    def __init__(self, customers: int) -> None:
        self.chain = uuid.uuid4()
        self.store = uuid.uuid4()
        self.customers = [uuid.uuid4() for _ in range(customers)]
        self.n = 0
        self.returns = False
        self.sold: deque[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = deque()

    def apply(self, customer: uuid.UUID, spend: str, cash: str) -> ApplyBonuses:
        self.n += 1
        sale, payment = uuid.uuid4(), uuid.uuid4()
        self.sold.append((customer, sale, payment))
        return ApplyBonuses(
            operation_id=sale,
            operation_kind=BonusOperationKind.SALE,
            chain_id=self.chain,
            customer_id=customer,
            store_id=self.store,
            sale_id=sale,
            occurred_at=T0 + timedelta(seconds=self.n),
            bonus_accrual=True,
            bonus_rate_percent=Decimal("10.00"),
            bonus_expiry_days=None,
            minor_units=2,
            spend=Decimal(spend),
            accrual_bases=[
                BonusBase(payment_id=payment, method=PaymentMethod.CASH, base_amount=Decimal(cash))
            ],
            restore_up_to=Decimal(0),
            reverse_bases=[],
        )

    def next_sale(self) -> ApplyBonuses:
        """A sale; with `returns`, every second message returns the oldest sale not returned
        (restores the 1.00 it spent, reverses its accrual: 4 more statements)."""
        if self.returns and self.n % 2 == 1 and self.sold:
            self.n += 1
            customer, sale, payment = self.sold.popleft()
            return ApplyBonuses(
                operation_id=uuid.uuid4(),
                operation_kind=BonusOperationKind.RETURN,
                chain_id=self.chain,
                customer_id=customer,
                store_id=self.store,
                sale_id=sale,
                occurred_at=T0 + timedelta(seconds=self.n),
                bonus_accrual=True,
                bonus_rate_percent=Decimal("10.00"),
                bonus_expiry_days=None,
                minor_units=2,
                spend=Decimal(0),
                accrual_bases=[],
                restore_up_to=Decimal("1.00"),
                reverse_bases=[
                    BonusBase(
                        payment_id=payment, method=PaymentMethod.CASH, base_amount=Decimal("30.00")
                    )
                ],
            )
        return self.apply(self.customers[self.n % len(self.customers)], "1.00", "30.00")


def record(model: ApplyBonuses) -> ConsumerRecord[bytes, bytes]:
    env = make_envelope(model, chain_id=None, key=model.customer_id, correlation_id=uuid.uuid4())
    value, key = encode(env), env.key.encode()
    return ConsumerRecord(
        LOYALTY_COMMANDS, 0, next(_offsets), 0, 0, key, value, None, len(key), len(value), []
    )


async def feed(
    consumer: Any,
    sales: Sales,
    count: int,
    batch: int,
    statements: list[int],
    by_kind: dict[str, list[float]],
) -> tuple[list[float], float, int]:
    """CPU ms per message of each batch, total CPU ms, statements."""
    per_batch, total = [], 0.0
    statements[0] = 0
    messages = [sales.next_sale() for _ in range(count)]
    records = [record(m) for m in messages]
    gc.collect()
    for i in range(0, count, batch):
        chunk = records[i : i + batch]
        started = time.process_time()
        await consumer.process_records(chunk)
        spent = (time.process_time() - started) * 1000
        per_batch.append(spent / len(chunk))
        if batch == 1:
            by_kind[messages[i].operation_kind.value].append(spent)
        total += spent
    return per_batch, total, statements[0]


@dataclass
class Tally:
    """One variant's figures: CPU ms per message of each round and of each batch, CPU ms of
    each batch of one by operation kind, statements per message of each round."""

    rounds: list[float] = field(default_factory=list)
    batches: list[float] = field(default_factory=list)
    kinds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statements: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "cpu_ms_per_message_median_of_rounds": round(statistics.median(self.rounds), 3),
            "range": [round(min(self.rounds), 3), round(max(self.rounds), 3)],
            "rounds": [round(v, 3) for v in self.rounds],
            "cpu_ms_per_message_median_of_batches": round(statistics.median(self.batches), 3),
            "statements_per_message": statistics.median(self.statements),
            "batch_of_one_median_ms_by_kind": {
                k: round(statistics.median(v), 3) for k, v in self.kinds.items()
            },
        }


async def measure(server_url: str, args: argparse.Namespace) -> dict[str, Any]:
    url = with_database(server_url, f"bench_loyalty_{secrets.token_hex(3)}")
    await prepare_database(MIGRATIONS_DIR, url)
    engine = make_engine(url, pool_size=2)
    statements = [0]

    def seen(*_: Any) -> None:
        statements[0] += 1

    sa.event.listen(engine.sync_engine, "before_cursor_execute", seen)
    consumer = build_consumer(handlers.LoyaltyHandlers())
    consumer.retry_backoff_seconds = 0
    bind_as_in_a_service(consumer, make_session_factory(engine))
    variants = {"new (this checkout)": new_repo}
    if args.old_rev:
        variants = {f"old {args.old_rev}": old_module(args.old_rev), **variants}
    sales = Sales(args.customers)
    # every customer gets a balance to spend from (each sale spends 1.00, accrues 3.00)
    for c in sales.customers:
        await consumer.process_records([record(sales.apply(c, "0.00", "200.00"))])
    sales.sold.clear()  # returns are of the measured kind of sale only
    for module in variants.values():  # warm-up: prepared statements, compiled caches
        handlers.repo = module  # type: ignore[attr-defined]
        await feed(consumer, sales, args.warmup, args.batch, statements, defaultdict(list))
    sales.returns = args.returns
    tallies = {name: Tally() for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            handlers.repo = variants[name]  # type: ignore[attr-defined]
            tally = tallies[name]
            per_batch, total, n_statements = await feed(
                consumer, sales, args.per_round, args.batch, statements, tally.kinds
            )
            tally.rounds.append(total / args.per_round)
            tally.batches.extend(per_batch)
            tally.statements.append(n_statements / args.per_round)
        print(
            f"round {r}: " + ", ".join(f"{n} {tallies[n].rounds[-1]:.3f} ms" for n in names),
            file=sys.stderr,
        )
    handlers.repo = new_repo  # type: ignore[attr-defined]
    await engine.dispose()
    return {name: tally.summary() for name, tally in tallies.items()} | {"settings": vars(args)}


def _ab(args: argparse.Namespace) -> None:
    """Alternate runs of the loyalty code under each `--ab-src` and of this checkout."""
    passed = [
        "--old-rev=",
        f"--rounds={args.rounds}",
        f"--per-round={args.per_round}",
        f"--batch={args.batch}",
        f"--customers={args.customers}",
        f"--warmup={args.warmup}",
        *(["--returns"] if args.returns else []),
    ]
    runs = alternate(
        "bench.loyalty_cpu",
        passed,
        args.ab_src,
        ("loyalty",),
        args.repeats,
        libs=("servicekit", "contracts"),
    )
    new = "new (this checkout)"
    out = summarize_runs(
        runs,
        ("cpu_ms_per_message", lambda r: r[new]["cpu_ms_per_message_median_of_rounds"]),
        ("statements_per_message", lambda r: r[new]["statements_per_message"]),
    )
    print(json.dumps(out, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loyalty_cpu")
    parser.add_argument("--old-rev", default="153a048")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--returns", action="store_true", help="every second message a return")
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.ab_src:
        _ab(args)
        return 0
    with database_server() as server:
        result = asyncio.run(measure(server, args))
    print(json.dumps(result))  # one line: `--ab-src` runs read the last line
    return 0


if __name__ == "__main__":
    sys.exit(main())
