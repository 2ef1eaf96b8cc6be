"""A credit database on real PostgreSQL and a harness that feeds it messages like Kafka would.

Messages go through ``servicekit.consumer.Consumer.process_records`` (inbox, savepoints, dead
letters: the production path); what credit publishes is read back from its outbox. A small
fake loyalty answers ``ApplyBonuses`` with the chain's rate, so sagas can be driven to the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord

from contracts.base import Message
from contracts.credit.v1 import ApplyBonuses
from contracts.envelope import Envelope, decode
from contracts.loyalty.v1 import PaymentBonus
from contracts.money import quantize_money
from credit.adapters.repository import Repository
from credit.entrypoints.app import MIGRATIONS_DIR, make_consumer
from credit.service_layer.queries import customer_credit
from credit.testing import bonuses_applied, bonuses_refused
from servicekit.db import make_engine, make_session_factory, run_migrations
from servicekit.schema import OUTBOX
from servicekit.testing import envelope_of, record_of


class Harness:
    def __init__(self, session_factory: Any) -> None:
        self.sf = session_factory
        self.consumer = make_consumer()
        self.consumer.retry_backoff_seconds = 0
        self.consumer.bind(session_factory)
        self.bonus: dict[uuid.UUID, Decimal] = {}
        self.answered: set[tuple[uuid.UUID, uuid.UUID]] = set()

    @staticmethod
    def record(env: Envelope) -> ConsumerRecord[Any, Any]:
        """The envelope as Kafka delivers it, on its message type's topic."""
        return record_of(env)

    @staticmethod
    def envelope(payload: Message, key: str | None = None) -> Envelope:
        return envelope_of(payload, key=key or "k")

    async def send(self, payload: Message, key: str | None = None) -> Envelope:
        env = self.envelope(payload, key)
        await self.consumer.process_records([self.record(env)])
        return env

    async def send_and_settle(self, payload: Message, key: str | None = None) -> Envelope:
        """Send a command and drive its saga to the end (loyalty answered)."""
        env = await self.send(payload, key)
        await self.settle()
        return env

    async def send_envelope(self, env: Envelope) -> None:
        await self.consumer.process_records([self.record(env)])

    async def outbox(self, type_: str | None = None) -> list[Envelope]:
        async with self.sf() as session:
            rows = (await session.execute(sa.select(OUTBOX.c.value).order_by(OUTBOX.c.id))).all()
        envs = [decode(r.value) for r in rows]
        return [e for e in envs if type_ is None or e.type == type_]

    async def events(self, type_: str) -> list[dict[str, Any]]:
        return [e.payload for e in await self.outbox(type_)]

    async def loyalty_asked(self, operation_id: uuid.UUID) -> dict[str, Any]:
        """The one ApplyBonuses sent for the operation (asserts there is exactly one)."""
        asks = [
            a
            for a in await self.events("loyalty.ApplyBonuses")
            if a["operation_id"] == str(operation_id)
        ]
        assert len(asks) == 1, asks
        return asks[0]

    async def answer_loyalty(self, *, refuse: bool = False) -> int:
        """Answer every ApplyBonuses not answered yet (10% of each base, spend from balance;
        as loyalty, a spend is refused beyond the balance, nothing to spend never)."""
        answered = 0
        for env in await self.outbox("loyalty.ApplyBonuses"):
            cmd = ApplyBonuses.model_validate(env.payload)
            if (cmd.chain_id, cmd.operation_id) in self.answered:
                continue
            self.answered.add((cmd.chain_id, cmd.operation_id))
            balance = self.bonus.get(cmd.customer_id, Decimal(0))
            answer: Message
            if refuse or (cmd.spend > 0 and (balance <= 0 or cmd.spend > balance)):
                answer = bonuses_refused(cmd, balance)
            else:
                rate = cmd.bonus_rate_percent / 100 if cmd.bonus_accrual else Decimal(0)
                accrued = [
                    PaymentBonus(
                        payment_id=b.payment_id,
                        amount=quantize_money(b.base_amount * rate),
                    )
                    for b in cmd.accrual_bases
                ]
                total = sum((a.amount for a in accrued), Decimal(0))
                balance = balance - cmd.spend + total + cmd.restore_up_to
                self.bonus[cmd.customer_id] = balance
                answer = bonuses_applied(cmd, accrued, balance)
            await self.send(answer, key=str(cmd.customer_id))
            answered += 1
        return answered

    async def settle(self) -> None:
        """Answer loyalty until nothing waits any more (parked commands replay in between)."""
        while await self.answer_loyalty():
            pass

    async def credit(self, chain_id: uuid.UUID, customer_id: uuid.UUID) -> dict[str, Any] | None:
        async with self.sf() as session, session.begin():
            return await customer_credit(Repository(session), chain_id, customer_id)

    async def cached_bonus(self, customer_id: uuid.UUID) -> Decimal:
        """The bonus balance credit last learned from loyalty for the customer."""
        async with self.sf() as session:
            found = await session.scalar(
                sa.text("SELECT bonus_balance FROM customers WHERE customer_id = :c"),
                {"c": customer_id},
            )
        assert found is not None
        return Decimal(found)

    async def count(self, table: str) -> int:
        async with self.sf() as session:
            return int(await session.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


@pytest.fixture
async def harness(fresh_database_url: str) -> AsyncIterator[Harness]:
    await asyncio.to_thread(run_migrations, MIGRATIONS_DIR, fresh_database_url)
    engine = make_engine(fresh_database_url, pool_size=5)
    try:
        yield Harness(make_session_factory(engine))
    finally:
        await engine.dispose()
