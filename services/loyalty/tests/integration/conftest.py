"""Fixtures of loyalty's integration tests: a migrated database of its own per test, a way to
feed envelopes through the real servicekit consumer, and readers of what loyalty wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.credit.v1 import ApplyBonuses, BonusBase
from contracts.enums import BonusOperationKind, CreditMode, OverdueDiscountPolicy, PaymentMethod
from contracts.envelope import Envelope, decode, parse_payload
from contracts.gateway.v1 import CancelPaymentBonus, ChainSettingsChanged, ChainSettingsSnapshot
from loyalty.entrypoints.app import MIGRATIONS_DIR, build_consumer
from loyalty.service_layer import queries
from loyalty.service_layer.handlers import LoyaltyHandlers
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory, make_engine, make_session_factory, prepare_database
from servicekit.testing import envelope_of, record_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def loyalty_db(fresh_database_url: str) -> str:
    await prepare_database(MIGRATIONS_DIR, fresh_database_url)
    return fresh_database_url


@pytest.fixture
async def engine(loyalty_db: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(loyalty_db, pool_size=4)
    yield eng
    await eng.dispose()


@pytest.fixture
def session_factory(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


class Clock:
    """A settable clock for the handlers (expiry depends on now)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def consumer(session_factory: SessionFactory, clock: Clock) -> Consumer:
    c = build_consumer(LoyaltyHandlers(clock=clock))
    c.retry_backoff_seconds = 0
    c.bind(session_factory)
    return c


class Harness:
    """Drives loyalty through its real consumer and reads back what it wrote."""

    def __init__(
        self, consumer: Consumer, session_factory: SessionFactory, clock: Clock, url: str
    ) -> None:
        self.consumer = consumer
        self.session_factory = session_factory
        self.clock = clock
        self.url = url
        self.chain_id = uuid4()
        self.customer_id = uuid4()
        self.store_id = uuid4()

    def envelope(self, model: Message) -> Envelope:
        return envelope_of(model, key=self.customer_id)

    async def feed(self, model_or_env: Message | Envelope, *, key: UUID | None = None) -> Envelope:
        """Process one message, on its topic, as a batch of its own (returns its envelope, to
        feed again)."""
        if isinstance(model_or_env, Envelope):
            env = model_or_env
        else:
            env = envelope_of(model_or_env, key=key or self.customer_id)
        await self.consumer.process_records([record_of(env)])
        return env

    async def outbox(self, type_: str | None = None) -> list[Any]:
        """Payloads loyalty wrote to its outbox, in order (optionally of one message type)."""
        async with self.session_factory() as session:
            rows = (
                await session.execute(sa.text("SELECT type, value FROM outbox ORDER BY id"))
            ).all()
        return [parse_payload(decode(r.value)) for r in rows if type_ is None or r.type == type_]

    async def count(self, table: str) -> int:
        async with self.session_factory() as session:
            return int(await session.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)

    async def bonus(self) -> dict[str, Any]:
        """The internal read, checked: the stored balance is the signed sum of the ledger."""
        async with self.session_factory() as session:
            body = await queries.customer_bonus(session, self.chain_id, self.customer_id)
        adding = {"accrued", "restored", "void_given"}
        signed = sum(
            (Decimal(e["amount"]) * (1 if e["kind"] in adding else -1) for e in body["entries"]),
            Decimal(0),
        )
        assert Decimal(body["balance"]) == signed
        if body["entries"]:
            assert body["entries"][-1]["balance_after"] == body["balance"]
        return body

    def apply(
        self,
        *,
        cash: Sequence[tuple[UUID, str]] = (),
        spend: str = "0.00",
        kind: BonusOperationKind = BonusOperationKind.SALE,
        sale_id: UUID | None = None,
        operation_id: UUID | None = None,
        at: datetime = T0,
        restore_up_to: str = "0.00",
        reverse: Sequence[tuple[UUID, str]] = (),
        expiry_days: int | None = None,
    ) -> ApplyBonuses:
        sale = sale_id or uuid4()
        return ApplyBonuses(
            operation_id=operation_id or sale,
            operation_kind=kind,
            chain_id=self.chain_id,
            customer_id=self.customer_id,
            store_id=self.store_id,
            sale_id=sale,
            occurred_at=at,
            bonus_accrual=True,
            bonus_rate_percent=Decimal("10.00"),
            bonus_expiry_days=expiry_days,
            minor_units=2,
            spend=Decimal(spend),
            accrual_bases=[
                BonusBase(payment_id=p, method=PaymentMethod.CASH, base_amount=Decimal(a))
                for p, a in cash
            ],
            restore_up_to=Decimal(restore_up_to),
            reverse_bases=[
                BonusBase(payment_id=p, method=PaymentMethod.CASH, base_amount=Decimal(a))
                for p, a in reverse
            ],
        )

    def return_of(
        self, sale_id: UUID, *, restore_up_to: str, reverse: Sequence[tuple[UUID, str]]
    ) -> ApplyBonuses:
        """A return of goods of the sale (an operation of its own)."""
        return self.apply(
            kind=BonusOperationKind.RETURN,
            sale_id=sale_id,
            operation_id=uuid4(),
            restore_up_to=restore_up_to,
            reverse=reverse,
        )

    def cancel(self, payment_id: UUID, at: datetime = T0) -> CancelPaymentBonus:
        return CancelPaymentBonus(
            payment_id=payment_id,
            chain_id=self.chain_id,
            customer_id=self.customer_id,
            requested_at=at,
        )

    def settings_changed(self, expiry_days: int | None, at: datetime = T0) -> ChainSettingsChanged:
        return ChainSettingsChanged(
            chain_id=self.chain_id,
            settings=ChainSettingsSnapshot(
                credit_mode=CreditMode.BALANCE,
                max_payment_delay_days=30,
                overdue_discount=OverdueDiscountPolicy.KEEP,
                block_credit_when_overdue=False,
                reminder_repeat_days=7,
                bonus_rate_percent=Decimal("10.00"),
                bonus_expiry_days=expiry_days,
                timezone="Europe/Bucharest",
                currency="EUR",
                minor_units=2,
            ),
            changed_at=at,
        )


@pytest.fixture
def loyalty(
    consumer: Consumer, session_factory: SessionFactory, clock: Clock, loyalty_db: str
) -> Harness:
    return Harness(consumer, session_factory, clock, loyalty_db)
