"""A batch's money and bonus events written together (`adapters.projection_batch`, one statement
per batch) leave every read-model table as the same events written one by one with the
per-event statements do.

Random stories of a few customers (sales on account and paid, payments of older lines, advances,
refunds, bonus movements, returns, a customer renamed, a sale delivered twice under two message
ids) are applied twice: event by event with the per-event writes (each message's handler run as
the consumer's slow path runs it, in a transaction of its own), and through the consumer in
batches of random sizes (its fast path: the writes left for the batch, sorted by customer). Every
table of the read models must hold the same rows, the report sums kept by triggers included."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from reporting_helpers import bonus_movement, coat, coat_returned, debt_payment, sale_completed
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.credit import v1 as credit
from contracts.enums import BonusMovementKind, DebtPaymentKind, MoneyMethod, PaymentMethod
from contracts.envelope import decode
from contracts.gateway import v1 as gateway
from contracts.registry import lookup
from reporting.adapters import tables as t
from reporting.entrypoints.app import MIGRATIONS_DIR
from reporting.service_layer.handlers import HANDLERS
from servicekit.consumer import Consumer, MessageContext
from servicekit.db import make_session_factory
from servicekit.testing import create_database, drop_database, migrated_engine, record_of

pytestmark = pytest.mark.integration

D = Decimal
ZERO = D("0.00")
CHAIN, STORES, TERMINAL = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()], uuid.uuid4()
T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)


@pytest.fixture
async def reference(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    """A second migrated database, for the events written one by one."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = await create_database(database_server_url, name)
    try:
        async with migrated_engine(MIGRATIONS_DIR, url) as engine:
            yield engine
    finally:
        await drop_database(database_server_url, name)


class _Customer:
    def __init__(self, rng: random.Random) -> None:
        self.id = uuid.uuid4()
        self.rng = rng
        self.debt = ZERO
        self.advance = ZERO
        self.bonus = ZERO
        self.open: list[tuple[uuid.UUID, int, Decimal]] = []  # (sale, line, owed)
        self.sales: list[credit.SaleCompleted] = []

    def balances(self) -> credit.CustomerBalances:
        return credit.CustomerBalances(
            debt=self.debt, advance=self.advance, bonus_balance=self.bonus
        )


def _money(rng: random.Random, low: int = 5, high: int = 90) -> Decimal:
    return D(rng.randint(low * 100, high * 100)) / 100


def _sale(c: _Customer, when: datetime) -> credit.SaleCompleted:
    rng, sale_id = c.rng, uuid.uuid4()
    on_account = rng.random() < 0.6
    lines = [
        coat(str(amount), owed=str(amount if on_account else ZERO)).model_copy(
            update={"line_no": n, "name": f"Item {n}"}
        )
        for n, amount in enumerate((_money(rng) for _ in range(rng.randint(1, 3))), start=1)
    ]
    total = sum((ln.amount for ln in lines), ZERO)
    if on_account:
        c.debt += total
        c.open += [(sale_id, ln.line_no, ln.amount) for ln in lines]
    sale = sale_completed(
        chain_id=CHAIN,
        customer_id=c.id,
        sale_id=sale_id,
        when=when,
        lines=lines,
        store_id=rng.choice(STORES),
        terminal_id=TERMINAL,
        balances=c.balances(),
        payments=None if on_account else [(PaymentMethod.CASH, str(total))],
        on_account=None if on_account else "0.00",
    )
    c.sales.append(sale)
    return sale


def _payment(c: _Customer, when: datetime) -> credit.DebtPaymentRecorded | None:
    if not c.open:
        return None
    paid, changes, allocated = ZERO, [], []
    for sale_id, line_no, owed in list(c.open[: c.rng.randint(1, 3)]):
        part = owed if c.rng.random() < 0.6 else (owed / 2).quantize(D("0.01"))
        paid += part
        allocated.append((sale_id, line_no, str(part)))
        changes.append((sale_id, line_no, str(owed - part)))
        c.open.remove((sale_id, line_no, owed))
        if owed - part > 0:
            c.open.append((sale_id, line_no, owed - part))
    c.debt -= paid
    return debt_payment(
        CHAIN,
        c.rng.choice(STORES),
        TERMINAL,
        c.id,
        when,
        str(paid),
        DebtPaymentKind.TAKE_MONEY,
        allocated,
        changes,
        c.balances(),
    )


def _money_event(c: _Customer, when: datetime, amount: Decimal) -> dict[str, Any]:
    """What an advance and a refund of `amount` at the till say alike."""
    return {
        "chain_id": CHAIN,
        "customer_id": c.id,
        "store_id": c.rng.choice(STORES),
        "terminal_id": TERMINAL,
        "method": MoneyMethod.CASH,
        "amount": amount,
        "occurred_at": when,
        "customer_balances": c.balances(),
    }


def _advance(c: _Customer, when: datetime) -> credit.AdvanceRecorded:
    amount = _money(c.rng)
    c.advance += amount
    return credit.AdvanceRecorded(
        payment_id=uuid.uuid4(),
        applied_to_debt=ZERO,
        allocated=[],
        advance_added=amount,
        bonus_accrued=ZERO,
        lines_changed=[],
        **_money_event(c, when, amount),
    )


def _refund(c: _Customer, when: datetime) -> credit.RefundRecorded | None:
    if c.advance <= 0:
        return None
    amount = min(c.advance, _money(c.rng))
    c.advance -= amount
    return credit.RefundRecorded(refund_id=uuid.uuid4(), **_money_event(c, when, amount))


def _bonus(c: _Customer, when: datetime) -> Message:
    amount = _money(c.rng, 1, 9)
    kind = BonusMovementKind.ACCRUED
    if c.bonus >= amount and c.rng.random() < 0.4:
        kind = BonusMovementKind.SPENT
    c.bonus += amount if kind is BonusMovementKind.ACCRUED else -amount
    return bonus_movement(CHAIN, c.rng.choice(STORES), c.id, kind, str(amount), when, str(c.bonus))


def _return(c: _Customer, when: datetime) -> credit.ReturnRecorded | None:
    """Line 1 of an open sale brought back, all of its value cancelling debt."""
    first = [(s, n, o) for s, n, o in c.open if n == 1]
    if not first:
        return None
    sale_id, _, owed = first[0]
    c.open.remove(first[0])
    c.debt -= owed
    return coat_returned(
        chain_id=CHAIN,
        customer_id=c.id,
        sale_id=sale_id,
        value=str(owed),
        at=when,
        owed_after="0.00",
        balances=c.balances(),
        store_id=STORES[0],
        terminal_id=TERMINAL,
    )


def _story(seed: int, customers: int = 4, events: int = 90) -> list[Any]:
    """(message, key) pairs in the order credit and loyalty would publish them; now and then a
    sale twice (delivered again under another message id)."""
    rng = random.Random(seed)
    people = [_Customer(rng) for _ in range(customers)]
    out: list[Any] = []
    for c in people:
        registered = gateway.CustomerRegistered(
            chain_id=CHAIN, customer=_snapshot(c, "Customer"), registered_at=T0
        )
        out.append((registered, c.id))
    makers = [_sale] * 4 + [_payment] * 2 + [_advance, _refund, _return] + [_bonus] * 3
    for n in range(events):
        c = rng.choice(people)
        when = T0 + timedelta(hours=n * 7)  # across months: the ledgers' month starts
        msg = rng.choice(makers)(c, when)
        if msg is not None:
            out.append((msg, c.id))
        if n % 15 == 0 and c.sales:
            out.append((c.sales[-1], c.id))  # delivered again, likely in the same batch
        if n == events // 2:
            renamed = gateway.CustomerUpdated(
                chain_id=CHAIN, customer=_snapshot(c, "Renamed"), updated_at=when
            )
            out.append((renamed, c.id))
    return out


def _snapshot(c: _Customer, name: str) -> gateway.CustomerSnapshot:
    return gateway.CustomerSnapshot(
        customer_id=c.id,
        name=f"{name} {str(c.id)[:4]}",
        phone=None,
        vip=True,
        bonus_accrual=True,
        credit_limit=None,
        max_payment_delay_days=None,
        card_number=None,
    )


async def _one_by_one(engine: AsyncEngine, records: list[Any]) -> None:
    """Each message's handler as the slow path runs it: its writes at once."""
    sf = make_session_factory(engine)
    for n, rec in enumerate(records):
        env = decode(rec.value)
        model = lookup(env.type, env.schema_version).model
        async with sf() as session, session.begin():
            ctx = MessageContext(
                db=session,
                envelope=env,
                consumer="reference",
                topic=rec.topic,
                partition=0,
                offset=n,
            )
            await HANDLERS[model](ctx, model.model_validate(env.payload))


async def _tables(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_of_any_size_write_what_the_events_one_by_one_write(
    engine: AsyncEngine, reference: AsyncEngine, consumer: Consumer, seed: int
) -> None:
    story = _story(seed)
    records = [record_of(msg, key=key) for msg, key in story]
    await _one_by_one(reference, records)
    rng = random.Random(seed)
    i = 0
    while i < len(records):
        size = rng.choice([1, 2, 5, 12, 40])
        await consumer.process_records(records[i : i + size])
        i += size
    expected, got = await _tables(reference), await _tables(engine)
    assert sum(len(rows) for rows in expected.values()) > 100  # the story wrote something
    assert {n: len(r) for n, r in got.items()} == {n: len(r) for n, r in expected.items()}
    for name in expected:
        assert got[name] == expected[name], name


async def test_a_sale_delivered_again_in_the_batch_sets_only_the_owed_amounts_it_names(
    engine: AsyncEngine, reference: AsyncEngine, consumer: Consumer
) -> None:
    """A sale whose event names the owed amount of its first line only, a payment of its
    second line, then the sale again under another message id, all in one batch: the second
    line keeps what the payment left it owing, as with the events one by one."""
    c = _Customer(random.Random(7))
    sale = _sale(c, T0)
    sale = sale.model_copy(
        update={
            "lines": [ln.model_copy(update={"owed": ln.amount}) for ln in sale.lines]
            + [coat("40.00").model_copy(update={"line_no": len(sale.lines) + 1})],
        }
    )
    last = sale.lines[-1]
    sale = sale.model_copy(update={"lines_changed": sale.lines_changed[:1]})
    paid = debt_payment(
        CHAIN,
        STORES[0],
        TERMINAL,
        c.id,
        T0 + timedelta(hours=1),
        "15.00",
        DebtPaymentKind.TAKE_MONEY,
        [(sale.sale_id, last.line_no, "15.00")],
        [(sale.sale_id, last.line_no, "25.00")],
        c.balances(),
    )
    records = [record_of(m, key=c.id) for m in (sale, paid, sale)]
    await _one_by_one(reference, records)
    await consumer.process_records(records)
    expected, got = await _tables(reference), await _tables(engine)
    owed = {(r[0], r[1]): r[-1] for r in got["rm_sale_lines"]}
    assert owed[(sale.sale_id, last.line_no)] == D("25.00")
    for name in expected:
        assert got[name] == expected[name], name
