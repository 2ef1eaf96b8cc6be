"""Webhook deliveries to a real HTTP receiver on 127.0.0.1: Standard Webhooks signatures,
retries with back-off, a dead-letter record after the last try, and the destination checked
again at every delivery (a loopback receiver is reachable only with the local-testing setting
`webhook_allow_private`, which the delivery tests here use)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import sqlalchemy as sa

from notifier.adapters import tables as t
from notifier.config import Settings
from notifier.service_layer.handlers import make_consumer
from notifier.service_layer.jobs import deliver_once
from notifier.testing import sale_overdue
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory
from servicekit.testing import record_of

SECRET = "a-long-enough-webhook-secret"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A local HTTP server that fails the first `fail_first` requests with 503."""

    fail_first: int = 0
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((body, dict(self.headers)))
            status = 503 if len(state.received) <= state.fail_first else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/tasks"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


async def raise_one_task(sf: SessionFactory, url: str) -> uuid.UUID:
    chain, customer = uuid.uuid4(), uuid.uuid4()
    async with sf() as session, session.begin():
        await session.execute(
            sa.insert(t.webhooks).values(
                chain_id=chain, url=url, secret=SECRET, updated_at=datetime.now(UTC)
            )
        )
    consumer: Consumer = make_consumer()
    consumer.bind(sf)
    overdue = sale_overdue(chain, customer, uuid.uuid4(), "30.00", dress_line=False)
    await consumer.process_records([record_of(overdue, key=customer)])
    return chain


def settings(**kw: object) -> Settings:
    values: dict[str, object] = {
        "webhook_backoff_seconds": 10,
        "webhook_backoff_max_seconds": 60,
        "webhook_max_attempts": 3,
        "webhook_allow_private": True,
        **kw,
    }
    return Settings(
        database_url="postgresql://unused@127.0.0.1/unused",
        **values,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def deliveries_to(
    sf: SessionFactory, receiver: Receiver, *, failing: int
) -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """One task raised for a chain whose webhook is `receiver`, which answers its first
    `failing` requests with 503: `deliver(after)` runs one delivery pass `after` (a timedelta,
    none by default) from now and returns what `deliver_once` returns."""
    await raise_one_task(sf, receiver.url)
    receiver.fail_first = failing
    cfg = settings()
    now = datetime.now(UTC)
    async with httpx.AsyncClient(trust_env=False) as client:

        async def deliver(after: timedelta = timedelta(0)) -> int:
            return await deliver_once(sf, cfg, client, now=now + after)

        yield deliver


async def test_webhook_retries_with_backoff_and_delivers_a_signed_body(
    sf: SessionFactory, receiver: Receiver
) -> None:
    async with deliveries_to(sf, receiver, failing=1) as deliver:
        assert await deliver() == 1  # 503
        # not due again before the back-off has passed
        assert await deliver(timedelta(seconds=9)) == 0
        assert await deliver(timedelta(seconds=10)) == 1
    assert len(receiver.received) == 2
    body, headers = receiver.received[-1]
    # Standard Webhooks: id.timestamp.body signed; the id is the same on every try
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest())
    assert headers["webhook-signature"] == "v1," + expected.decode()
    assert abs(int(timestamp) - time.time()) < 60
    assert receiver.received[0][1]["webhook-id"] == message_id
    payload = json.loads(body)
    assert payload["delivery_id"] == message_id
    assert payload["type"] == "notifier.ReminderTaskRaised"
    assert payload["event"]["overdue_amount"] == "30.00"
    async with sf() as session:
        row = (await session.execute(sa.select(t.webhook_deliveries))).one()
    assert (row.status, row.attempts) == ("delivered", 2)


async def test_webhook_that_never_answers_well_ends_in_a_dead_letter_record(
    sf: SessionFactory, receiver: Receiver
) -> None:
    async with deliveries_to(sf, receiver, failing=100) as deliver:
        for seconds in (0, 10, 30):  # back-off 10 s, then 20 s
            assert await deliver(timedelta(seconds=seconds)) == 1
        assert await deliver(timedelta(days=1)) == 0
    assert len(receiver.received) == 3
    async with sf() as session:
        delivery = (await session.execute(sa.select(t.webhook_deliveries))).one()
        dead = (await session.execute(sa.select(t.webhook_dead_letters))).one()
    assert (delivery.status, delivery.attempts) == ("dead", 3)
    assert (dead.attempts, dead.last_error, dead.url) == (3, "HTTP 503", receiver.url)


async def test_no_webhook_configured_means_no_delivery(sf: SessionFactory) -> None:
    chain = await raise_one_task(sf, "http://127.0.0.1:9/never")
    async with sf() as session, session.begin():
        await session.execute(sa.delete(t.webhooks).where(t.webhooks.c.chain_id == chain))
    async with httpx.AsyncClient(trust_env=False) as client:
        assert await deliver_once(sf, settings(), client) == 1
    async with sf() as session:
        assert (await session.execute(sa.select(t.webhook_deliveries.c.status))).scalar() == (
            "cancelled"
        )


async def test_without_the_local_testing_setting_a_loopback_receiver_gets_nothing(
    sf: SessionFactory, receiver: Receiver
) -> None:
    await raise_one_task(sf, receiver.url)
    cfg = settings(webhook_allow_private=False, webhook_max_attempts=1)
    async with httpx.AsyncClient(trust_env=False) as client:
        assert await deliver_once(sf, cfg, client) == 1
    assert receiver.received == []
    async with sf() as session:
        dead = (await session.execute(sa.select(t.webhook_dead_letters))).one()
    assert dead.last_error.startswith("destination refused")


async def test_a_name_that_resolves_to_a_private_address_at_delivery_time_is_not_called(
    sf: SessionFactory, receiver: Receiver
) -> None:
    # DNS rebinding: public when the chain set it, this machine when the task is delivered
    port = receiver.url.split(":")[2].split("/")[0]
    await raise_one_task(sf, f"https://hooks.example.test:{port}/hooks/tasks")
    looked_up: list[str] = []

    async def rebinding(host: str, _port: int) -> list[Address]:
        looked_up.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    cfg = settings(webhook_allow_private=False, webhook_max_attempts=1)
    async with httpx.AsyncClient(trust_env=False) as client:
        assert await deliver_once(sf, cfg, client, resolver=rebinding) == 1
    assert looked_up == ["hooks.example.test"]
    assert receiver.received == []
    async with sf() as session:
        dead = (await session.execute(sa.select(t.webhook_dead_letters))).one()
    assert "127.0.0.1" in dead.last_error


async def test_the_delivery_connects_to_the_address_it_checked_and_names_the_host(
    sf: SessionFactory, receiver: Receiver
) -> None:
    # the name exists only in this test's resolver: had the HTTP client looked it up again,
    # nothing would have arrived
    port = receiver.url.split(":")[2].split("/")[0]
    await raise_one_task(sf, f"http://hooks.example.test:{port}/hooks/tasks")

    async def resolver(host: str, _port: int) -> list[Address]:
        assert host == "hooks.example.test"
        return [ipaddress.ip_address("127.0.0.1")]

    async with httpx.AsyncClient(trust_env=False) as client:
        assert await deliver_once(sf, settings(), client, resolver=resolver) == 1
    [(_body, headers)] = receiver.received
    assert headers["Host"] == f"hooks.example.test:{port}"
