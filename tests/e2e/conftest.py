"""The whole system as real processes: Kafka, PostgreSQL and the five services, driven over HTTP.

Kafka and PostgreSQL come from `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` when set (`make test`
sets them), else devstack starts them as local processes. Each test session gets databases of
its own on that server, so an earlier run's data never leaks into this one. Services listen on
free loopback ports and are stopped (by PID) when the session ends, also after a failure.
"""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from devstack.ports import free_port
from devstack.services import ServicePorts
from devstack.stack import Stack, start_stack
from servicekit.settings import with_database

SERVICES_WITH_DATABASES = ("GATEWAY", "CREDIT", "LOYALTY", "REPORTING", "NOTIFIER")

#: overdue scans every second, so back-dated sales become overdue quickly in tests
FAST_JOBS = {
    "OVERDUE_SCAN_INTERVAL_SECONDS": "1",
    "CREDIT_OVERDUE_SCAN_INTERVAL_SECONDS": "1",
    "LOYALTY_EXPIRY_SCAN_INTERVAL_SECONDS": "1",
    "NOTIFIER_REMINDER_SCAN_INTERVAL_SECONDS": "1",
    "KAFKA_TOPIC_PARTITIONS": "3",
    # an operation waiting for loyalty fails after this long (default 7): roomier here, so a
    # test that pauses loyalty for a few seconds, or a busy machine, does not reach it
    # (tests/e2e/test_every_operation_ends.py waits it out on purpose)
    "CREDIT_OPERATION_DEADLINE_SECONDS": "15",
    # consumer lag and the business gauges (tests/e2e/test_observability.py)
    **{
        f"{p}_METRICS_INTERVAL_SECONDS": "1"
        for p in ("GATEWAY", "CREDIT", "LOYALTY", "REPORTING", "NOTIFIER")
    },
}


@dataclass
class Inbox:
    """What a real SMTP server on 127.0.0.1 received: the notifier's reminder digests."""

    url: str
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="session")
def smtp_inbox() -> Iterator[Inbox]:
    """An SMTP server (aiosmtpd) for the whole session; the stack's notifier mails to it."""
    port = free_port()
    inbox = Inbox(f"smtp://127.0.0.1:{port}")

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            message = email.message_from_bytes(
                envelope.original_content, policy=email.policy.default
            )
            assert isinstance(message, EmailMessage)
            with inbox.lock:
                inbox.messages.append(message)
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def stack(infra_endpoints: tuple[str, str], smtp_inbox: Inbox) -> Iterator[Stack]:
    kafka, database = infra_endpoints
    suffix = secrets.token_hex(4)
    env = dict(os.environ)
    env.update(FAST_JOBS)
    # reminder digests every second, to the session's SMTP server
    env.update(
        {
            "NOTIFIER_SMTP_URL": smtp_inbox.url,
            "NOTIFIER_SMTP_FROM": "reminders@vip-credit.test",
            "NOTIFIER_MAIL_INTERVAL_SECONDS": "1",
        }
    )
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka
    env["DATABASE_URL"] = database
    for prefix in SERVICES_WITH_DATABASES:
        env[f"{prefix}_DATABASE_URL"] = with_database(database, f"e2e_{prefix.lower()}_{suffix}")
    with start_stack(
        f"e2e-{suffix}",
        ports=ServicePorts.free(),
        operator_token=secrets.token_urlsafe(24),
        env=env,
        ready_timeout=240.0,
    ) as running:
        yield running


@dataclass
class Chain:
    """A chain set up through the public API, with one store, a terminal and its keys."""

    chain_id: str
    admin: httpx.Client
    terminal: httpx.Client
    store_id: str
    terminal_id: str

    def customer(self, *, vip: bool = True, card: bool = True, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": fields.pop("name", "Ana Popescu"),
            "phone": fields.pop("phone", "+40712345678"),
            "vip": vip,
            "bonus_accrual": fields.pop("bonus_accrual", True),
        }
        if card:
            body["card_number"] = fields.pop("card_number", f"VIP{secrets.randbelow(10**9):09d}")
        body.update(fields)
        response = self.admin.post("/v1/customers", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def _client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=15.0)


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> str:
    return stack.gateway_url


@pytest.fixture(scope="session")
def operator(stack: Stack) -> Iterator[httpx.Client]:
    with _client(stack.gateway_url, stack.operator_token) as client:
        yield client


@pytest.fixture
def new_chain(operator: httpx.Client, gateway: str) -> Iterator[Callable[..., Chain]]:
    opened: list[httpx.Client] = []

    def make(**settings: Any) -> Chain:
        created = operator.post(
            "/v1/chains",
            json={
                "name": f"Chain {uuid.uuid4().hex[:6]}",
                "currency": "EUR",
                "timezone": "Europe/Bucharest",
            },
        )
        assert created.status_code == 201, created.text
        admin = _client(gateway, created.json()["admin_api_key"])
        opened.append(admin)
        if settings:
            updated = admin.put("/v1/settings", json=settings)
            assert updated.status_code == 200, updated.text
        store = admin.post("/v1/stores", json={"code": "S1", "name": "Store one"})
        assert store.status_code == 201, store.text
        store_id = store.json()["store_id"]
        term = admin.post(f"/v1/stores/{store_id}/terminals", json={"name": "Till 1"})
        assert term.status_code == 201, term.text
        terminal = _client(gateway, term.json()["api_key"])
        opened.append(terminal)
        return Chain(
            created.json()["chain_id"], admin, terminal, store_id, term.json()["terminal_id"]
        )

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def idem() -> Callable[[], dict[str, str]]:
    """A fresh `Idempotency-Key` header for each call."""
    return lambda: {"Idempotency-Key": str(uuid.uuid4())}


@pytest.fixture
def eventually() -> Callable[..., Any]:
    return _eventually


def _eventually(check: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll until `check` returns a truthy value (read models are updated asynchronously)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
