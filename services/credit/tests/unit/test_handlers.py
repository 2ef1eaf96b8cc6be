"""The saga handlers with an in-memory repository and emitter (no database, no broker)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from contracts.base import Message
from contracts.envelope import Envelope
from contracts.loyalty.v1 import BonusesApplied, PaymentBonus
from credit.adapters.repository import CustomerRow, OperationRecord, Unparked
from credit.domain.model import Entry, Ledger, Sale
from credit.service_layer import handlers as h
from credit.testing import (
    customer_snapshot,
    day,
    one_line_sale,
    record_payment,
    settings_snapshot,
)
from servicekit.testing import envelope_of

CHAIN = uuid.UUID("44444444-4444-4444-4444-444444444444")


@dataclass
class FakeRepository:
    customers: dict[uuid.UUID, CustomerRow] = field(default_factory=dict)
    sales: list[tuple[Sale, uuid.UUID | None]] = field(default_factory=list)
    entries: list[tuple[Entry, uuid.UUID | None]] = field(default_factory=list)
    operations: dict[uuid.UUID, SimpleNamespace] = field(default_factory=dict)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    parked: list[tuple[uuid.UUID, dict[str, Any]]] = field(default_factory=list)

    async def remember_chain(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def lock_customer(
        self, customer_id: uuid.UUID, chain_id: uuid.UUID, **_: Any
    ) -> CustomerRow:
        return self.customers.setdefault(
            customer_id, CustomerRow(customer_id, chain_id, None, Decimal(0))
        )

    async def remember_chain_and_lock_customer(
        self, chain_id: uuid.UUID, settings: Any, customer_id: uuid.UUID
    ) -> CustomerRow:
        return await self.lock_customer(customer_id, chain_id)

    async def update_customer(self, customer_id: uuid.UUID, **values: Any) -> None:
        row = self.customers[customer_id]
        for name in ("in_flight", "bonus_balance"):
            if name in values:
                setattr(row, name, values[name])

    async def lock_sale(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> None:
        pass

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        yield

    async def operation_known(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID, kind: str
    ) -> bool:
        return operation_id in self.operations or any(
            r["operation_id"] == operation_id and r["kind"] == kind for r in self.refusals
        )

    def _live(self, operation_id: uuid.UUID) -> bool:
        op = self.operations.get(operation_id)
        return op is not None and op.status in ("pending", "confirmed")

    async def load_ledger(
        self,
        *,
        chain_id: uuid.UUID,
        customer_id: uuid.UUID | None,
        sale_id: Any = None,
        minor_units: int = 2,
    ) -> Ledger:
        return Ledger(
            [s for s, c in self.sales if c == customer_id and self._live(s.sale_id)],
            [e for e, c in self.entries if c == customer_id and self._live(e.operation_id)],
            minor_units=minor_units,
        )

    async def load_for_command(
        self, *, seen: tuple[uuid.UUID, str] | None = None, named: Any = (), **kwargs: Any
    ) -> tuple[Ledger, bool]:
        known = seen is not None and await self.operation_known(kwargs["chain_id"], *seen)
        return await self.load_ledger(**kwargs), known

    async def record_operation(self, op: OperationRecord) -> None:
        if op.sale is not None:
            self.sales.append((op.sale, op.customer_id))
        self.entries.extend((e, op.customer_id) for e in op.entries)
        not_columns = ("sale", "entries", "in_flight", "debt", "advance")
        await self.add_operation(
            **{f.name: getattr(op, f.name) for f in fields(op) if f.name not in not_columns}
        )
        if op.customer_id is not None and op.in_flight is not None:
            await self.update_customer(op.customer_id, in_flight=op.in_flight)

    async def add_operation(self, **values: Any) -> bool:
        if values["operation_id"] in self.operations:
            return False
        self.operations[values["operation_id"]] = SimpleNamespace(**values)
        return True

    async def pending_operation(self, chain_id: uuid.UUID, operation_id: uuid.UUID) -> Any:
        op = self.operations.get(operation_id)
        return op if op is not None and op.status == "pending" else None

    async def lock_customer_and_claim_pending(
        self, customer_id: uuid.UUID, chain_id: uuid.UUID, operation_id: uuid.UUID, status: str
    ) -> Any:
        op = await self.pending_operation(chain_id, operation_id)
        if op is not None:
            op.status = status
        return op

    async def finish_operation(
        self, chain_id: uuid.UUID, operation_id: uuid.UUID, status: str
    ) -> None:
        self.operations[operation_id].status = status

    async def add_refusal(self, **values: Any) -> None:
        self.refusals.append(values)

    async def park(
        self, customer_id: uuid.UUID, message_id: uuid.UUID, envelope: dict[str, Any]
    ) -> None:
        self.parked.append((customer_id, envelope))

    async def unpark_next(self, customer_id: uuid.UUID) -> dict[str, Any] | None:
        for i, (cid, env) in enumerate(self.parked):
            if cid == customer_id:
                del self.parked[i]
                return env
        return None

    async def end_in_flight(self, customer_id: uuid.UUID, **values: Any) -> Unparked:
        await self.update_customer(customer_id, in_flight=None, **values)
        return Unparked(await self.unpark_next(customer_id))

    async def mark_settled(self, chain_id: uuid.UUID, sale_ids: Any) -> None:
        pass

    async def settle_mark(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> bool | None:
        return None


class FakeEmitter:
    def __init__(self, sent: list[tuple[str, Message]] | None = None) -> None:
        self.correlation_id = uuid.uuid4()
        self.sent: list[tuple[str, Message]] = sent if sent is not None else []

    def with_correlation(self, correlation_id: uuid.UUID) -> FakeEmitter:
        return self

    def for_message(self, env: Envelope) -> FakeEmitter:
        return FakeEmitter(self.sent)

    async def emit(self, topic: str, payload: Message, *, key: str, **_: Any) -> None:
        self.sent.append((topic, payload))

    def types(self) -> list[str]:
        return [p.TYPE for _, p in self.sent]


def envelope(cmd: Message) -> Envelope:
    return envelope_of(cmd, key="k")


def applied(op_id: uuid.UUID, customer_id: uuid.UUID, accrued: str = "0.00") -> BonusesApplied:
    return BonusesApplied(
        operation_id=op_id,
        operation_kind="sale",
        chain_id=CHAIN,
        customer_id=customer_id,
        spent=Decimal(0),
        accrued=Decimal(accrued),
        accrued_by_payment=[PaymentBonus(payment_id=uuid.uuid4(), amount=Decimal(accrued))],
        restored=Decimal(0),
        reversed=Decimal(0),
        reversed_by_payment=[],
        balance_after=Decimal(accrued),
    )


async def test_accepted_sale_is_pending_until_loyalty_answers() -> None:
    repo, emitter = FakeRepository(), FakeEmitter()
    customer = customer_snapshot()
    cmd = one_line_sale(CHAIN, customer, settings_snapshot(), "10.00")
    await h.process_command(repo, emitter, envelope(cmd), cmd)  # type: ignore[arg-type]
    assert emitter.types() == ["loyalty.ApplyBonuses"]
    assert repo.customers[customer.customer_id].in_flight == cmd.sale_id
    op = await repo.lock_customer_and_claim_pending(
        customer.customer_id, CHAIN, cmd.sale_id, "confirmed"
    )
    await h.confirm(repo, emitter, op, applied(cmd.sale_id, customer.customer_id))  # type: ignore[arg-type]
    assert emitter.types() == ["loyalty.ApplyBonuses", "credit.SaleCompleted"]
    assert repo.customers[customer.customer_id].in_flight is None
    assert op.status == "confirmed"


async def test_a_command_arriving_while_another_is_in_flight_is_parked() -> None:
    repo, emitter = FakeRepository(), FakeEmitter()
    customer = customer_snapshot()
    settings = settings_snapshot()
    sale = one_line_sale(CHAIN, customer, settings, "10.00")
    pay = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="4.00"
    )
    await h.process_command(repo, emitter, envelope(sale), sale)  # type: ignore[arg-type]
    await h.process_command(repo, emitter, envelope(pay), pay)  # type: ignore[arg-type]
    assert len(repo.parked) == 1 and emitter.types() == ["loyalty.ApplyBonuses"]
    taken = await h.confirm(
        repo,  # type: ignore[arg-type]
        emitter,  # type: ignore[arg-type]
        await repo.lock_customer_and_claim_pending(
            customer.customer_id, CHAIN, sale.sale_id, "confirmed"
        ),
        applied(sale.sale_id, customer.customer_id),
    )
    # the confirmation took the parked payment off the queue: the drain replays it
    assert repo.parked == [] and taken.envelope is not None
    await h.drain_parked(repo, customer.customer_id, CHAIN, emitter, taken=taken)  # type: ignore[arg-type]
    assert repo.parked == []
    assert repo.customers[customer.customer_id].in_flight == pay.payment_id


async def test_a_refusal_records_and_publishes_only_the_refusal() -> None:
    repo, emitter = FakeRepository(), FakeEmitter()
    customer = customer_snapshot()
    cmd = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings_snapshot(), at=day(0), amount=None
    )
    await h.process_command(repo, emitter, envelope(cmd), cmd)  # type: ignore[arg-type]
    assert emitter.types() == ["credit.OperationRefused"]
    assert repo.refusals[0]["code"] == "no_debt"
    assert repo.entries == [] and repo.operations == {}
    # the same payment again is a duplicate: nothing more is published
    await h.process_command(repo, emitter, envelope(cmd), cmd)  # type: ignore[arg-type]
    assert emitter.types() == ["credit.OperationRefused"]
