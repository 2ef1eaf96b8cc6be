"""CPU of credit per message of a sale of a known customer, in process.

`PYTHONPATH=tools python -m bench.credit_cpu --sales 200` feeds credit's real consumer
(`process_records`, the production path: inbox, handlers, outbox) on a fresh, migrated
PostgreSQL database with the two messages a sale of a known customer costs it: the till's
`credit.RecordSale` (1-3 lines, paid part cash, part on account) and loyalty's answer
`loyalty.BonusesApplied` (10% accrued on the cash part, as the integration tests' fake loyalty
answers it), one message per batch. It reports, per message type, the median
`time.process_time` of this process around `process_records` and the statements per batch,
and the mean CPU per sale (both messages); PostgreSQL's own time is not in it, other processes
on the machine move it little. The
customers (`--customers`, in turn) are known: `--warmup` sales before the measure create their
rows and fill the caches and prepared statements.

`--history 0,50,200` measures once per size, each on a database of its own, after giving every
customer that many earlier operations (before the warm-up, a day before the measure): sales
part cash part on account, now and then one paid all in cash, an advance, and every fourth
operation a "pay debt" that settles what is open, so most of the history is settled sales and
their payments and the last few sales stay open. Each is fed through the same consumer with
loyalty's answer, by the code under measure. The result has one entry per size.

`--ab-src DIR` (repeatable; a checkout's root, e.g. an older commit's tree from `git archive`)
runs the measure alternately with the code under DIR (its credit, servicekit and contracts
`src` first on `PYTHONPATH`) and with this checkout's, `--repeats` times each, in separate
processes, and prints the median and the range of the runs' medians. PostgreSQL comes from
`DATABASE_URL` (a server URL; a database of its own per run), otherwise devstack starts one
for the whole measure and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from bench.inprocess import (
    alternate,
    bind_as_in_a_service,
    database_server,
    record,
    statement_counter,
)
from contracts.base import Message
from contracts.envelope import decode

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)
CENT = Decimal("0.01")


def _sale(rng: random.Random, n: int, chain: uuid.UUID, customer: Any, settings: Any) -> Any:
    """The n-th sale: 1-3 lines, a cash part and the rest on account."""
    from credit.testing import record_sale, sale_line

    lines = [
        sale_line(i, f"{rng.randint(200, 8000) / 100:.2f}") for i in range(1, rng.randint(1, 3) + 1)
    ]
    total = sum((x.amount for x in lines), Decimal(0))
    cash = (total * Decimal(rng.randint(20, 80)) / 100).quantize(CENT)
    return record_sale(
        chain_id=chain,
        customer=customer,
        settings=settings,
        sold_at=T0 + timedelta(minutes=n),
        lines=lines,
        payments=[("cash", str(cash)), ("on_account", str(total - cash))],
    )


def _history_op(
    rng: random.Random, i: int, at: datetime, chain: uuid.UUID, customer: Any, settings: Any
) -> Any:
    """A customer's i-th earlier operation: every fourth pays the whole debt, one in twenty an
    advance, one in eight a sale all in cash, the rest sales part cash part on account."""
    from credit.testing import record_advance, record_payment, record_sale, sale_line

    if i % 4 == 3:
        return record_payment(
            chain_id=chain, customer=customer, settings=settings, at=at, amount=None
        )
    if i % 20 == 18:
        return record_advance(
            chain_id=chain, customer=customer, settings=settings, at=at, amount="5.00"
        )
    lines = [
        sale_line(n, f"{rng.randint(200, 8000) / 100:.2f}") for n in range(1, rng.randint(1, 3) + 1)
    ]
    total = sum((x.amount for x in lines), Decimal(0))
    if i % 8 == 1:
        payments = [("cash", str(total))]
    else:
        cash = (total * Decimal(rng.randint(20, 80)) / 100).quantize(CENT)
        payments = [("cash", str(cash)), ("on_account", str(total - cash))]
    return record_sale(
        chain_id=chain,
        customer=customer,
        settings=settings,
        sold_at=at,
        lines=lines,
        payments=payments,
    )


def _applied(env_payload: dict[str, Any], balance: Decimal) -> tuple[Message, Decimal]:
    """Loyalty's answer to an `ApplyBonuses` (10% of each accrual base, nothing spent)."""
    from contracts.credit.v1 import ApplyBonuses
    from contracts.loyalty.v1 import BonusesApplied, PaymentBonus

    cmd = ApplyBonuses.model_validate(env_payload)
    rate = cmd.bonus_rate_percent / 100 if cmd.bonus_accrual else Decimal(0)
    accrued = [
        PaymentBonus(
            payment_id=b.payment_id,
            amount=(b.base_amount * rate).quantize(CENT, rounding=ROUND_HALF_UP),
        )
        for b in cmd.accrual_bases
    ]
    total = sum((a.amount for a in accrued), Decimal(0))
    balance = balance - cmd.spend + total + cmd.restore_up_to
    answer = BonusesApplied(
        operation_id=cmd.operation_id,
        operation_kind=cmd.operation_kind,
        chain_id=cmd.chain_id,
        customer_id=cmd.customer_id,
        spent=cmd.spend,
        accrued=total,
        accrued_by_payment=accrued,
        restored=cmd.restore_up_to,
        reversed=Decimal("0.00"),
        reversed_by_payment=[],
        balance_after=balance,
    )
    return answer, balance


class _Credit:
    """Credit's consumer on a fresh database, fed one message per batch."""

    def __init__(self, engine: Any) -> None:
        from credit.entrypoints.app import make_consumer
        from servicekit.db import make_session_factory

        self.engine = engine
        self.statements = statement_counter(engine)
        self.consumer = make_consumer()
        bind_as_in_a_service(self.consumer, make_session_factory(engine))
        self.offset = 0
        self.outbox_seen = 0
        self.cpu: dict[str, list[float]] = defaultdict(list)
        self.counts: dict[str, list[int]] = defaultdict(list)

    async def feed(self, model: Message, key: uuid.UUID, *, measured: bool) -> None:
        rec = record(model, key, self.offset)
        self.offset += 1
        self.statements[0] = 0
        started = time.process_time()
        await self.consumer.process_records([rec])
        spent = (time.process_time() - started) * 1000
        if measured:
            self.cpu[model.TYPE].append(spent)
            self.counts[model.TYPE].append(self.statements[0])

    async def apply_bonuses(self) -> list[dict[str, Any]]:
        """The `ApplyBonuses` payloads credit wrote to its outbox since the last call."""
        import sqlalchemy as sa

        from servicekit.schema import OUTBOX

        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(OUTBOX.c.id, OUTBOX.c.value)
                    .where(OUTBOX.c.id > self.outbox_seen)
                    .order_by(OUTBOX.c.id)
                )
            ).all()
        if rows:
            self.outbox_seen = rows[-1].id
        envs = [decode(r.value) for r in rows]
        return [e.payload for e in envs if e.type == "loyalty.ApplyBonuses"]


async def _measure(
    server_url: str, sales: int, customers: int, warmup: int, history: int
) -> dict[str, Any]:
    from credit.entrypoints.app import MIGRATIONS_DIR
    from credit.testing import customer_snapshot, settings_snapshot
    from servicekit.db import make_engine, prepare_database
    from servicekit.settings import with_database

    url = with_database(server_url, f"bench_credit_{secrets.token_hex(4)}")
    await prepare_database(MIGRATIONS_DIR, url)
    engine = make_engine(url, pool_size=2)
    rng = random.Random(7)
    chain, settings = uuid.uuid4(), settings_snapshot()
    people = [customer_snapshot() for _ in range(customers)]
    balance = {p.customer_id: Decimal(0) for p in people}
    bench = _Credit(engine)

    async def feed(cmd: Message, customer: Any, measured: bool) -> None:
        """The command, then loyalty's answer to each `ApplyBonuses` it wrote."""
        await bench.feed(cmd, customer.customer_id, measured=measured)
        for payload in await bench.apply_bonuses():
            answer, balance[customer.customer_id] = _applied(payload, balance[customer.customer_id])
            await bench.feed(answer, customer.customer_id, measured=measured)

    try:
        start = T0 - timedelta(days=1)
        for i in range(history):
            for customer in people:
                at = start + timedelta(seconds=i)
                await feed(_history_op(rng, i, at, chain, customer, settings), customer, False)
        for n in range(warmup + sales):
            customer = people[n % customers]
            await feed(_sale(rng, n, chain, customer, settings), customer, n >= warmup)
    finally:
        await engine.dispose()
    out: dict[str, Any] = {}
    for kind, values in sorted(bench.cpu.items()):
        out[kind] = {
            "messages": len(values),
            "cpu_ms_median": round(statistics.median(values), 3),
            "statements": statistics.median(bench.counts[kind]),
        }
    out["per_sale_cpu_ms"] = round(sum(sum(v) for v in bench.cpu.values()) / sales, 3)
    return out


def _one(args: argparse.Namespace) -> None:
    import credit

    result: dict[str, Any] = {"src": str(Path(credit.__file__).parents[1]), "history": {}}
    with database_server() as server:
        for size in args.history:
            result["history"][str(size)] = asyncio.run(
                _measure(server, args.sales, args.customers, args.warmup, size)
            )
    print(json.dumps(result))


def _ab(args: argparse.Namespace) -> None:
    """Alternate runs of the code under each `--ab-src` and of this checkout (the order
    reversed every other round), the infrastructure started once."""
    passed = [
        f"--sales={args.sales}",
        f"--customers={args.customers}",
        f"--warmup={args.warmup}",
        f"--history={','.join(str(h) for h in args.history)}",
    ]
    runs = alternate(
        "bench.credit_cpu",
        passed,
        args.ab_src,
        ("credit",),
        args.repeats,
        libs=("servicekit", "contracts"),
    )
    print(json.dumps(_summary(runs), indent=2))


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant, history size and message type: the median and the range of the runs'
    medians."""
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = {"src": results[0]["src"]}
        for size, measured in results[0]["history"].items():
            per_size: dict[str, Any] = {}
            for kind, first in measured.items():
                values = [
                    r["history"][size][kind]["cpu_ms_median"]
                    if isinstance(first, dict)
                    else r["history"][size][kind]
                    for r in results
                ]
                per_size[kind] = {
                    "cpu_ms": round(statistics.median(values), 3),
                    "range": [min(values), max(values)],
                    # in the order run: the variants alternate, so runs pair up by position
                    "runs": values,
                }
                if isinstance(first, dict):
                    per_size[kind]["statements"] = first["statements"]
            out[name][f"history={size}"] = per_size
    return out


def _sizes(text: str) -> list[int]:
    sizes = [int(x) for x in text.split(",") if x.strip()]
    if not sizes or min(sizes) < 0:
        raise argparse.ArgumentTypeError("a comma-separated list of sizes >= 0")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.credit_cpu")
    parser.add_argument("--sales", type=int, default=200, help="sales measured")
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=40, help="sales before the measure")
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--history",
        type=_sizes,
        default=[0],
        metavar="N,N,...",
        help="earlier operations per customer before the measure, one measure per size",
    )
    args = parser.parse_args(argv)
    if args.warmup < args.customers:
        parser.error("--warmup must be at least --customers (every customer known)")
    if args.ab_src:
        _ab(args)
    else:
        _one(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
