"""CPU of reporting's projection and the notifier per event of a sale, in process (issue 14).

`PYTHONPATH=tools python -m bench.projection_cpu --sales 200` feeds the events the bench's sale
mix produces (70% of sales by a known customer: cash, card, card + bonus, on account; 1-3
lines) through the real consumers (`process_records`) of reporting and the notifier into a
fresh, migrated PostgreSQL database each, one batch per event (what the pipeline's consumers
mostly see below ~50 requests/s; `--batch N`: N per batch), and reports the median
`time.process_time` of this process per batch by event type (per event of a batch of N), the
statements per batch (per event), and the mean CPU per sale. Process CPU: other processes on the
machine move it little, PostgreSQL's own time is not in it.

`--ab-src DIR` (repeatable order: old, new) runs the measure alternately with the service code
under DIR (a checkout's root: its reporting, notifier, servicekit and contracts `src` come
first on `PYTHONPATH`) and with this checkout's, `--repeats` times each, and prints both.
PostgreSQL comes from `DATABASE_URL` (a server URL; a database of its own per run), otherwise
devstack starts one for the whole measure and stops it at the end.
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
from decimal import Decimal
from typing import Any

from bench.inprocess import (
    alternate,
    bind_as_in_a_service,
    database_server,
    record,
    statement_counter,
)
from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import (
    BonusMovementKind,
    CreditMode,
    OverdueDiscountPolicy,
    PaymentMethod,
)
from contracts.gateway import v1 as gateway
from contracts.loyalty import v1 as loyalty

D = Decimal
ZERO = D("0.00")
CENT = D("0.01")
T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)


def _settings() -> gateway.ChainSettingsSnapshot:
    return gateway.ChainSettingsSnapshot(
        credit_mode=CreditMode.PER_ITEM,
        max_payment_delay_days=30,
        overdue_discount=OverdueDiscountPolicy.KEEP,
        block_credit_when_overdue=False,
        reminder_repeat_days=7,
        bonus_rate_percent=D("1.00"),
        bonus_expiry_days=None,
        timezone="Europe/Bucharest",
        currency="EUR",
        minor_units=2,
        reminder_email=None,
    )


class SaleStream:
    """A chain, its customers and their sales' events, as credit and loyalty publish them."""

    def __init__(self, customers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.chain = uuid.uuid4()
        self.store = uuid.uuid4()
        self.customers = [uuid.uuid4() for _ in range(customers)]
        self.debt = dict.fromkeys(self.customers, ZERO)
        self.bonus = dict.fromkeys(self.customers, ZERO)

    def setup(self) -> list[Message]:
        out: list[Message] = [
            gateway.ChainRegistered(
                chain_id=self.chain, name="Bench", settings=_settings(), registered_at=T0
            ),
            gateway.StoreRegistered(
                chain_id=self.chain,
                store_id=self.store,
                code="S1",
                name="Store",
                registered_at=T0,
            ),
        ]
        for n, customer in enumerate(self.customers):
            out.append(
                gateway.CustomerRegistered(
                    chain_id=self.chain,
                    registered_at=T0,
                    customer=gateway.CustomerSnapshot(
                        customer_id=customer,
                        name=f"Customer {n:03d}",
                        phone=None,
                        vip=True,
                        bonus_accrual=True,
                        credit_limit=None,
                        max_payment_delay_days=None,
                        card_number=f"C{n:05d}",
                    ),
                )
            )
        return out

    def sale(self, n: int) -> list[tuple[str, Message]]:
        """(event type, event) of the n-th sale: SaleCompleted and its bonus movements."""
        customer = self.rng.choice(self.customers)
        sale_id, at = uuid.uuid4(), T0 + timedelta(minutes=n)
        lines = self._lines()
        total = sum((ln.amount for ln in lines), ZERO)
        roll = self.rng.random()
        spend = ZERO
        if 0.6 <= roll < 0.8 and self.bonus[customer] >= D("1.00"):
            spend = min(self.bonus[customer], total / 2).quantize(CENT, rounding="ROUND_DOWN")
        on_account = total if roll >= 0.8 or (roll >= 0.6 and not spend) else ZERO
        paid = total - on_account
        accrued = ((paid - spend) / 100).quantize(CENT)
        if on_account:
            lines = [ln.model_copy(update={"owed": ln.amount}) for ln in lines]
        self.debt[customer] += on_account
        events: list[tuple[str, Message]] = []
        if spend:
            self.bonus[customer] -= spend
            events.append(("BonusSpent", self._movement(customer, sale_id, at, "spent", spend)))
        if accrued:
            self.bonus[customer] += accrued
            events.append(
                ("BonusAccrued", self._movement(customer, sale_id, at, "accrued", accrued))
            )
        payments = _payments(
            PaymentMethod.CARD if roll >= 0.3 else PaymentMethod.CASH, paid - spend, accrued, spend
        )
        completed = credit.SaleCompleted(
            sale_id=sale_id,
            chain_id=self.chain,
            store_id=self.store,
            terminal_id=self.store,
            customer_id=customer,
            card_number="C",
            credit_mode=CreditMode.PER_ITEM,
            sold_at=at,
            total=total,
            paid=paid,
            on_account=on_account,
            advance_applied=ZERO,
            change=ZERO,
            change_to_advance=ZERO,
            change_allocated=[],
            advance_added=ZERO,
            due_date=(at + timedelta(days=30)).date() if on_account else None,
            bonus_accrued=accrued,
            bonus_spent=spend,
            payments=payments,
            lines=lines,
            customer_balances=credit.CustomerBalances(
                debt=self.debt[customer], advance=ZERO, bonus_balance=self.bonus[customer]
            ),
            lines_changed=[
                credit.LineOwedChange(sale_id=sale_id, line_no=ln.line_no, owed_after=ln.owed)
                for ln in lines
                if on_account
            ],
        )
        return [("SaleCompleted", completed), *events]

    def _lines(self) -> list[credit.SaleLineOutcome]:
        lines = []
        for n in range(1, self.rng.randint(1, 3) + 1):
            qty = D(self.rng.randint(1, 2))
            price = D(self.rng.randint(200, 8000)) / 100
            lines.append(
                credit.SaleLineOutcome(
                    line_no=n,
                    sku=f"SKU{n}",
                    barcode=f"48200000{self.rng.randint(10000, 99999)}",
                    name=f"Item {n}",
                    quantity=qty,
                    unit_price=price,
                    discount=ZERO,
                    amount=price * qty,
                    owed=ZERO,
                )
            )
        return lines

    def _movement(
        self, customer: uuid.UUID, sale_id: uuid.UUID, at: datetime, kind: str, amount: D
    ) -> loyalty.BonusMovementRecorded:
        return loyalty.BonusMovementRecorded(
            movement_id=uuid.uuid4(),
            chain_id=self.chain,
            customer_id=customer,
            kind=BonusMovementKind(kind),
            amount=amount,
            store_id=self.store,
            payment_id=None,
            sale_id=sale_id,
            operation_id=uuid.uuid4(),
            at=at,
            balance_after=self.bonus[customer],
        )


def _payments(
    method: PaymentMethod, money: D, accrued: D, bonus: D
) -> list[credit.SalePaymentOutcome]:
    """A sale's payments: `money` by `method` (accruing `accrued`), then `bonus` spent."""
    out = []
    for paid_by, amount, accrues in (
        (method, money, accrued),
        (PaymentMethod.BONUS, bonus, ZERO),
    ):
        if amount:
            out.append(
                credit.SalePaymentOutcome(
                    payment_id=uuid.uuid4(), method=paid_by, amount=amount, bonus_accrued=accrues
                )
            )
    return out


def _key(model: Message) -> uuid.UUID:
    return getattr(model, "customer_id", None) or getattr(model, "chain_id")  # noqa: B009


async def _feed(
    consumer: Any, records: list[tuple[bool, str, Any]], batch: int, statements: list[int]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Feed `records` (measured?, event type, record) in batches of `batch`; the CPU ms and
    statements per event of each measured batch, by event type (one per batch) or `batch`."""
    cpu: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, list[float]] = defaultdict(list)
    for i in range(0, len(records), batch):
        chunk = records[i : i + batch]
        statements[0] = 0
        started = time.process_time()
        await consumer.process_records([record for _, _, record in chunk])
        spent = (time.process_time() - started) * 1000
        if all(measured for measured, _, _ in chunk):
            kind = chunk[0][1] if batch == 1 else f"batches of {batch}, per event"
            cpu[kind].append(spent / len(chunk))
            counts[kind].append(statements[0] / len(chunk))
            cpu["(all)"].append(spent)
            counts["(sales)"].append(sum(k == "SaleCompleted" for _, k, _ in chunk))
    return cpu, counts


async def _measure(
    server_url: str, sales: int, customers: int, warmup: int, batch: int
) -> dict[str, Any]:
    from notifier.entrypoints.app import MIGRATIONS_DIR as NOTIFIER_MIGRATIONS
    from notifier.service_layer.handlers import make_consumer as notifier_consumer
    from reporting.entrypoints.app import MIGRATIONS_DIR as REPORTING_MIGRATIONS
    from reporting.service_layer.handlers import make_consumer as reporting_consumer
    from servicekit.db import make_engine, make_session_factory, prepare_database
    from servicekit.settings import with_database

    stream = SaleStream(customers, seed=14)
    setup = stream.setup()
    # (measured?, event type, event): the warm-up sales fill caches and prepared statements
    events = [(n >= warmup, *e) for n in range(warmup + sales) for e in stream.sale(n)]
    out: dict[str, Any] = {}
    for service, migrations, make in (
        ("reporting", REPORTING_MIGRATIONS, reporting_consumer),
        ("notifier", NOTIFIER_MIGRATIONS, notifier_consumer),
    ):
        url = with_database(server_url, f"bench_{service}_{secrets.token_hex(4)}")
        await prepare_database(migrations, url)
        engine = make_engine(url, pool_size=2)
        statements = statement_counter(engine)
        consumer = make()
        bind_as_in_a_service(consumer, make_session_factory(engine))
        topics = set(consumer.topics)
        offset = 0
        for model in setup:
            await consumer.process_records([record(model, _key(model), offset)])
            offset += 1
        mine = []
        for measured, kind, model in events:
            rec = record(model, _key(model), offset)
            offset += 1
            if rec.topic in topics:
                mine.append((measured, kind, rec))
        cpu, counts = await _feed(consumer, mine, batch, statements)
        await engine.dispose()
        total, measured_sales = sum(cpu.pop("(all)")), sum(counts.pop("(sales)"))
        out[service] = {
            kind: {
                "events": len(values),
                "cpu_ms_median": round(statistics.median(values), 3),
                "statements": statistics.median(counts[kind]),
            }
            for kind, values in sorted(cpu.items())
        }
        out[service]["per_sale_cpu_ms"] = round(total / measured_sales, 3)
    return out


def _one(args: argparse.Namespace) -> None:
    with database_server() as server:
        result = asyncio.run(_measure(server, args.sales, args.customers, args.warmup, args.batch))
    print(json.dumps(result))


def _ab(args: argparse.Namespace) -> None:
    """Alternate runs of the code under each `--ab-src` and of this checkout, in one process
    tree (the infrastructure started once)."""
    runs = alternate(
        "bench.projection_cpu",
        _passed(args),
        args.ab_src,
        ("reporting", "notifier"),
        args.repeats,
        libs=("servicekit", "contracts"),
    )
    print(json.dumps(_summary(runs), indent=2))


def _passed(args: argparse.Namespace) -> list[str]:
    return [
        f"--sales={args.sales}",
        f"--customers={args.customers}",
        f"--warmup={args.warmup}",
        f"--batch={args.batch}",
    ]


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant, service and event type: the median over the runs of each run's median."""
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = {}
        for service in results[0]:
            out[name][service] = {}
            for kind, first in results[0][service].items():
                if isinstance(first, dict):
                    out[name][service][kind] = {
                        "cpu_ms": round(
                            statistics.median(r[service][kind]["cpu_ms_median"] for r in results),
                            3,
                        ),
                        "runs": [r[service][kind]["cpu_ms_median"] for r in results],
                        "statements": first["statements"],
                        "events": first["events"],
                    }
                else:
                    out[name][service][kind] = {
                        "cpu_ms": round(statistics.median(r[service][kind] for r in results), 3),
                        "runs": [r[service][kind] for r in results],
                    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projection_cpu")
    parser.add_argument("--sales", type=int, default=200, help="sales measured")
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=20, help="sales before the measure")
    parser.add_argument("--batch", type=int, default=1, help="events per consumed batch")
    parser.add_argument("--ab-src", action="append", default=[], metavar="DIR")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.ab_src:
        _ab(args)
    else:
        _one(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
