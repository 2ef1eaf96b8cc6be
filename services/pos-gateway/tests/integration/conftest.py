"""A gateway on a fresh PostgreSQL database, with fake reporting and notifier APIs.

The public app is driven through httpx's ASGI transport (no Kafka needed): commands stay in
the outbox, and outcome events are fed to the `gateway` consumer directly.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.base import Message
from contracts.credit.v1 import (
    CustomerBalances,
    OperationRefused,
    SaleCompleted,
    SaleLineOutcome,
    SalePaymentOutcome,
)
from contracts.enums import OperationKind, RefusalCode
from contracts.envelope import Envelope, decode, encode, make_envelope
from pos_gateway.bootstrap import Gateway
from pos_gateway.config import Settings
from pos_gateway.entrypoints.app import MIGRATIONS_DIR, build_public_app, consumers
from servicekit.consumer import Consumer
from servicekit.db import make_engine, make_session_factory, prepare_database

OPERATOR = "operator-token-for-tests-0123456789"


@dataclass
class FakeInternal:
    """Reporting, notifier and credit as the gateway sees them; `down` makes them unreachable."""

    balances: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: credit's own view of debt and advance (`/customers/{id}/credit`); unknown customer: 404
    credit: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_sales: dict[str, list[Any]] = field(default_factory=dict)
    down: bool = False
    calls: list[httpx.Request] = field(default_factory=list)
    #: when set, how many of its connections this pool had checked out at each call
    pool: Any = None
    checked_out: list[int] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.pool is not None:
            self.checked_out.append(self.pool.checkedout())
        if self.down:
            raise httpx.ConnectError("down", request=request)
        parts = request.url.path.split("/")
        if "balances:batch" in request.url.path:
            ids = json.loads(request.content)["customer_ids"]
            return httpx.Response(200, json={"items": {c: self._balances(c) for c in ids}})
        if request.url.path.endswith("/balances"):
            return httpx.Response(200, json=self._balances(parts[-2]))
        if request.url.path.endswith("/credit"):
            if parts[-2] not in self.credit:
                return httpx.Response(404, json={"code": "not_found"})
            return httpx.Response(200, json=self.credit[parts[-2]])
        if request.url.path.endswith("/open-sales"):
            return httpx.Response(200, json={"open_sales": self.open_sales.get(parts[-2], [])})
        if "/reports/" in request.url.path or request.url.path.endswith("/statement"):
            if request.headers.get("accept") == "text/csv":
                return httpx.Response(200, text="a,b\n1,2\n", headers={"content-type": "text/csv"})
            return httpx.Response(200, json={"rows": [], "query": str(request.url.query, "ascii")})
        if request.url.path.endswith("/tasks"):
            return httpx.Response(200, json={"items": [], "next": None})
        if request.url.path.endswith("/complete"):
            return httpx.Response(404, json={"code": "not_found"})
        return httpx.Response(404, json={"code": "not_found"})

    def _balances(self, customer_id: str) -> dict[str, Any]:
        return self.balances.get(
            customer_id,
            {"debt": "0.00", "advance": "0.00", "bonus_balance": "0.00", "overdue": False},
        )


@dataclass
class Harness:
    client: httpx.AsyncClient
    gateway: Gateway
    engine: AsyncEngine
    internal: FakeInternal
    #: the members of the gateway's consumer group, each reading its topics
    consumers: Sequence[Consumer]
    _offset: int = 0

    auth = staticmethod(lambda key: auth(key))
    idem = staticmethod(lambda key=None: idem(key))

    def till(self, key: str, idempotency_key: str | None = None) -> dict[str, str]:
        """Headers of a state-changing till request."""
        return {**auth(key), **idem(idempotency_key)}

    # ------------------------------------------------------------------ set-up helpers

    async def chain(self, **body: Any) -> str:
        response = await self.client.post(
            "/v1/chains",
            json={"name": "Kids", "currency": "EUR", "timezone": "Europe/Bucharest", **body},
            headers=auth(OPERATOR),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["admin_api_key"])

    async def store(self, admin: str, code: str = "S1") -> str:
        response = await self.client.post(
            "/v1/stores", json={"code": code, "name": "Main street"}, headers=auth(admin)
        )
        assert response.status_code == 201, response.text
        return str(response.json()["store_id"])

    async def terminal(self, admin: str, store_id: str) -> str:
        response = await self.client.post(
            f"/v1/stores/{store_id}/terminals", json={"name": "Till 1"}, headers=auth(admin)
        )
        assert response.status_code == 201, response.text
        return str(response.json()["api_key"])

    async def customer(self, admin: str, **body: Any) -> dict[str, Any]:
        payload = {
            "name": "Ana Pop",
            "phone": "+40700000001",
            "vip": True,
            "card_number": "CARD-1",
            "credit_limit": "500.00",
            **body,
        }
        response = await self.client.post("/v1/customers", json=payload, headers=auth(admin))
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def setup(self) -> tuple[str, str]:
        """A chain with one store and terminal: (admin key, terminal key)."""
        admin = await self.chain()
        store_id = await self.store(admin)
        return admin, await self.terminal(admin, store_id)

    async def setup_with_customer(self) -> tuple[str, str, str]:
        """`setup` and the VIP customer of CARD-1: (admin key, terminal key, customer id)."""
        admin, terminal = await self.setup()
        return admin, terminal, (await self.customer(admin))["customer_id"]

    # ------------------------------------------------------------------ inspection

    async def outbox(self) -> list[tuple[str, Envelope]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(sa.text("SELECT topic, value FROM outbox ORDER BY id"))
            ).all()
        return [(r.topic, decode(r.value)) for r in rows]

    async def commands(self) -> list[Envelope]:
        return [env for topic, env in await self.outbox() if topic == "pos.commands.v1"]

    async def sale_waiting(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[asyncio.Task[httpx.Response], Envelope]:
        """POST a sale in the background: the request, waiting for its outcome, and the command
        it wrote (once written, within 4 s)."""
        request = asyncio.create_task(self.client.post("/v1/sales", json=body, headers=headers))
        for _ in range(200):
            if found := await self.commands():
                return request, found[0]
            await asyncio.sleep(0.02)
        request.cancel()
        raise AssertionError("no command was written within 4 s")

    async def until_waiting(self, command: Envelope) -> None:
        """Until the request that wrote `command` waits for its outcome (an outcome delivered
        before that is found by its first look, not by a wake-up)."""
        key = (
            uuid.UUID(command.payload["chain_id"]),
            "sale",
            uuid.UUID(command.payload["sale_id"]),
        )
        for _ in range(200):
            if self.gateway.waiter.is_waiting(key):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the request never waited for its outcome")

    async def as_another_instance(self) -> None:
        """From now on the consumer plays another gateway instance: its commits wake nobody
        in this process directly, only through PostgreSQL's NOTIFY and this process's
        listener."""
        self.gateway.waiter.unregister()
        listener = self.gateway.listen(self.engine.url.render_as_string(hide_password=False))
        await asyncio.wait_for(listener.listening.wait(), 10)

    async def count(self, table: str) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)

    async def snapshot(self) -> dict[str, int]:
        tables = [
            "outbox",
            "chains",
            "stores",
            "terminals",
            "api_keys",
            "customers",
            "cards",
            "operations",
            "sale_lines",
            "payments",
            "idempotency_keys",
        ]
        return {name: await self.count(name) for name in tables}

    # ------------------------------------------------------------------ playing credit

    async def deliver(self, topic: str, payload: Message, *, key: str = "k") -> Envelope:
        """Feed one event to the gateway's consumer as if Kafka delivered it; its envelope."""
        env = make_envelope(payload, chain_id=None, key=key, correlation_id=uuid.uuid4())
        await self.deliver_envelope(topic, env)
        return env

    async def deliver_envelope(self, topic: str, env: Envelope) -> None:
        """Feed one message to the gateway's consumer, as it was sent (Kafka delivering the
        same message again)."""
        key = env.key
        self._offset += 1
        record = ConsumerRecord(
            topic=topic,
            partition=0,
            offset=self._offset,
            timestamp=0,
            timestamp_type=0,
            key=key.encode(),
            value=encode(env),
            checksum=None,
            serialized_key_size=len(key),
            serialized_value_size=0,
            headers=(),
        )
        consumer = next(c for c in self.consumers if topic in c.topics)
        await consumer.process_records([record])


# --------------------------------------------------------------------------- playing credit


def _sale_completed(cmd: dict[str, Any], *, debt: str = "0.00") -> SaleCompleted:
    payments = [p for p in cmd["payments"] if p["method"] != "on_account"]
    on_account = sum(
        (Decimal(p["amount"]) for p in cmd["payments"] if p["method"] == "on_account"), Decimal(0)
    )
    paid = sum((Decimal(p["amount"]) for p in payments), Decimal(0)) - Decimal(cmd["change"])
    customer = cmd["customer"]
    return SaleCompleted(
        sale_id=cmd["sale_id"],
        chain_id=cmd["chain_id"],
        store_id=cmd["store_id"],
        terminal_id=cmd["terminal_id"],
        customer_id=customer["customer_id"] if customer else None,
        card_number=cmd["card_number"],
        credit_mode=cmd["settings"]["credit_mode"],
        sold_at=cmd["sold_at"],
        total=Decimal(cmd["total"]),
        paid=paid,
        on_account=on_account,
        advance_applied=Decimal("0.00"),
        change=Decimal(cmd["change"]),
        change_to_advance=Decimal(cmd["change_to_advance"]),
        change_allocated=[],
        advance_added=Decimal(cmd["change_to_advance"]),
        due_date=date(2026, 12, 31) if on_account else None,
        bonus_accrued=Decimal("0.00"),
        bonus_spent=Decimal("0.00"),
        payments=[
            SalePaymentOutcome(
                payment_id=p["payment_id"],
                method=p["method"],
                amount=Decimal(p["amount"]),
                bonus_accrued=Decimal("0.00"),
            )
            for p in payments
        ],
        lines=[
            SaleLineOutcome(
                line_no=ln["line_no"],
                sku=ln["sku"],
                barcode=ln["barcode"],
                name=ln["name"],
                quantity=Decimal(ln["quantity"]),
                unit_price=Decimal(ln["unit_price"]),
                discount=Decimal(ln["discount"]),
                amount=Decimal(ln["amount"]),
                owed=Decimal(ln["amount"]) if on_account else Decimal("0.00"),
            )
            for ln in cmd["lines"]
        ],
        customer_balances=CustomerBalances(
            debt=Decimal(debt), advance=Decimal("0.00"), bonus_balance=Decimal("0.00")
        )
        if customer
        else None,
        lines_changed=[],
    )


def _refused(
    operation_id: str, chain_id: str, kind: OperationKind, code: RefusalCode
) -> OperationRefused:
    return OperationRefused(
        operation_id=operation_id,
        operation_kind=kind,
        chain_id=chain_id,
        customer_id=None,
        code=code,
        detail=f"refused: {code.value}",
        refused_at=datetime.now(UTC),
    )


class CreditDouble:
    """Outcome events as credit would publish them for the gateway's commands."""

    sale_completed = staticmethod(_sale_completed)
    refused = staticmethod(_refused)


@pytest.fixture
def credit() -> CreditDouble:
    return CreditDouble()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def idem(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or str(uuid.uuid4())}


@pytest.fixture
async def harness(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    monkeypatch.setenv("OPERATOR_TOKEN", OPERATOR)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("GATEWAY_SALE_WAIT_SECONDS", "0.3")
    settings = Settings()
    await prepare_database(MIGRATIONS_DIR, fresh_database_url)
    engine = make_engine(fresh_database_url, pool_size=5)
    session_factory = make_session_factory(engine)
    internal = FakeInternal()
    gw = Gateway(settings)
    gw.start(
        session_factory,
        reporting_transport=httpx.MockTransport(internal.handler),
        notifier_transport=httpx.MockTransport(internal.handler),
        credit_transport=httpx.MockTransport(internal.handler),
    )
    members = consumers(settings)
    for consumer in members:
        consumer.bind(session_factory)
        consumer.retry_backoff_seconds = 0
    app = build_public_app(gw)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://gateway.test",
    ) as client:
        yield Harness(client, gw, engine, internal, members)
    await gw.stop()
    await engine.dispose()
