"""Reminder digests by email through a REAL SMTP server the test starts on 127.0.0.1 (aiosmtpd):
one message per run and chain listing every new task with its back-office link, plain and
STARTTLS + AUTH LOGIN with a self-signed certificate, retries with back-off, nothing sent
twice."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.credit import v1 as credit
from contracts.gateway import v1 as gateway
from devstack.ports import free_port
from notifier.adapters import tables as t
from notifier.adapters.mailer import SmtpMailer
from notifier.config import Settings
from notifier.service_layer.jobs import scan_once
from notifier.service_layer.mail import mail_once
from notifier.testing import T0, chain_settings, sale_overdue, vip_customer
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory
from servicekit.testing import record_of

pytestmark = pytest.mark.integration

D = Decimal
BACKOFFICE = "https://backoffice.kids.example.ro/app"
TO = "service@kids.example.ro"
USER, PASSWORD = "notifier", "smtp pass: with @ and /"
#: the `open_tasks` fixture (conftest.py): `await open_tasks(chain_id)`
OpenTasks = Callable[[uuid.UUID], Awaitable[list[dict[str, Any]]]]


# --------------------------------------------------------------------------- the SMTP server


@dataclass
class Received:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    logins: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    #: answer DATA with this (e.g. "451 try later") instead of accepting
    refuse_with: str | None = None


class Handler:
    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.received.refuse_with:
            return self.received.refuse_with
        self.received.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.received.tls.append(session.ssl is not None)
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.messages.append(parsed)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    url: str
    received: Received
    ca_file: str = ""


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def plain_smtp() -> Iterator[SmtpServer]:
    received = Received()
    port = free_port()
    controller = Controller(Handler(received), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(f"smtp://127.0.0.1:{port}", received)
    finally:
        controller.stop()


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    """STARTTLS required before anything else; only AUTH LOGIN offered, only over TLS."""
    import ssl

    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    received = Received()

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        received.logins.append((mechanism, auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # the server answers 535 on failure

    port = free_port()
    controller = Controller(
        Handler(received),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=["PLAIN"],
        authenticator=authenticator,
    )
    controller.start()
    try:
        quoted = "smtp%20pass%3A%20with%20%40%20and%20%2F"
        yield SmtpServer(
            f"smtp://{USER}:{quoted}@127.0.0.1:{port}?starttls=true",
            received,
            ca_file=str(cert_file),
        )
    finally:
        controller.stop()


# --------------------------------------------------------------------------- the notifier


def settings_for(server: SmtpServer, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "postgresql://unused@127.0.0.1/unused",
        "smtp_url": server.url,
        "smtp_from": "Reminders <reminders@vip-credit.example>",
        "smtp_ca_file": server.ca_file,
        "smtp_timeout_seconds": 10,
        "backoffice_url": BACKOFFICE + "/",
        "mail_backoff_seconds": 30,
        "mail_backoff_max_seconds": 120,
        "mail_max_attempts": 3,
        **kw,
    }
    return Settings(**values)


def send_with(cfg: Settings) -> Any:
    target = cfg.smtp
    assert target is not None
    return SmtpMailer(target, ca_file=cfg.smtp_ca_file, timeout=cfg.smtp_timeout_seconds).send


class Chain:
    """A chain told to the notifier as the gateway and credit would tell it."""

    def __init__(self, consumer: Consumer, reminder_email: str | None = TO) -> None:
        self.consumer = consumer
        self.chain_id = uuid.uuid4()
        self.reminder_email = reminder_email

    async def register(self, name: str = "Kids & Co") -> Chain:
        settings = chain_settings(reminder_email=self.reminder_email)
        await self.consumer.process_records(
            [
                record_of(
                    gateway.ChainRegistered(
                        chain_id=self.chain_id, name=name, settings=settings, registered_at=T0
                    ),
                    key=self.chain_id,
                )
            ]
        )
        return self

    async def set_reminder_email(self, address: str | None) -> None:
        await self.consumer.process_records(
            [
                record_of(
                    gateway.ChainSettingsChanged(
                        chain_id=self.chain_id,
                        settings=chain_settings(reminder_email=address),
                        changed_at=T0,
                    ),
                    key=self.chain_id,
                )
            ]
        )

    async def overdue_customer(self, name: str, phone: str | None, owed: str) -> uuid.UUID:
        customer = uuid.uuid4()
        await self.consumer.process_records(
            [
                record_of(
                    vip_customer(self.chain_id, customer, name=name, phone=phone, card_number=None),
                    key=customer,
                ),
                record_of(
                    sale_overdue(self.chain_id, customer, uuid.uuid4(), owed, dress_line=False),
                    key=customer,
                ),
            ]
        )
        return customer


@pytest.fixture
async def ana_overdue(consumer: Consumer) -> Chain:
    """A chain mailing its reminders to TO, with one customer overdue (Ana Pop, 30.00)."""
    chain = await Chain(consumer).register()
    await chain.overdue_customer("Ana Pop", "+40700000001", "30.00")
    return chain


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    markup = message.get_body(preferencelist=("html",))
    assert text is not None and markup is not None
    return text.get_content(), markup.get_content()


def links_in(text: str) -> list[str]:
    return re.findall(r"https?://\S+", text)


async def digests(sf: SessionFactory) -> list[Any]:
    async with sf() as session:
        return list(
            (
                await session.execute(
                    sa.select(t.mail_digests).order_by(t.mail_digests.c.created_at)
                )
            ).all()
        )


# --------------------------------------------------------------------------- tests


async def test_one_digest_per_run_lists_every_new_task_with_a_link_to_its_back_office_page(
    consumer: Consumer, sf: SessionFactory, plain_smtp: SmtpServer, open_tasks: OpenTasks
) -> None:
    chain = await (Chain(consumer)).register()
    names = {
        "Ana Pop": "+40 700 000 001",
        "<script>alert(1)</script>": None,
        "\u05d3\u05e0\u05d4 \u05db\u05d4\u05df": "+972 50 000 0000",
    }
    for i, (name, phone) in enumerate(names.items()):
        await chain.overdue_customer(name, phone, f"{30 + i}.00")
    quiet = await Chain(consumer, reminder_email=None).register()
    await quiet.overdue_customer("No Mail", None, "10.00")
    tasks = await open_tasks(chain.chain_id)
    assert len(tasks) == 3
    cfg = settings_for(plain_smtp)

    assert await mail_once(sf, cfg, send_with(cfg), now=T0 + timedelta(days=32)) == (1, 1)

    [message] = plain_smtp.received.messages
    assert plain_smtp.received.envelopes == [("reminders@vip-credit.example", [TO])]
    assert message["To"] == TO and "reminders@vip-credit.example" in message["From"]
    assert message["Subject"] == "Kids & Co: 3 reminder tasks to call"
    assert message["Message-ID"].endswith("@vip-credit.example>")
    text, markup = parts(message)
    # every task, each with its link: <back office>/tasks/<task_id>
    linked = {urlsplit(link).path.rsplit("/", 1)[-1]: link for link in links_in(text)}
    assert set(linked) == {task["task_id"] for task in tasks}
    for task in tasks:
        link = urlsplit(linked[task["task_id"]])
        assert (link.scheme, link.netloc) == ("https", "backoffice.kids.example.ro")
        assert link.path == f"/app/tasks/{task['task_id']}"
        assert f'href="{BACKOFFICE}/tasks/{task["task_id"]}"' in markup
    for name in names:
        assert name in text
    assert "Ana Pop, +40 700 000 001" in text and "30.00 EUR" in text
    # the HTML alternative escapes what the data says, and phones are tel: links
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert 'href="tel:+40700000001"' in markup
    assert "No Mail" not in text

    # the next run has nothing new: nothing is sent again
    assert await mail_once(sf, cfg, send_with(cfg), now=T0 + timedelta(days=33)) == (0, 0)
    assert len(plain_smtp.received.messages) == 1
    # a task raised later comes alone in the next digest; a re-raised one says so
    late = await chain.overdue_customer("Late Payer", "+40 711 111 111", "5.00")
    assert await scan_once(sf, now=datetime.now(UTC) + timedelta(days=8)) >= 1
    assert await mail_once(sf, cfg, send_with(cfg)) == (1, 1)
    text, _ = parts(plain_smtp.received.messages[-1])
    assert "Late Payer" in text and "4 reminder tasks" in text  # all four were re-raised
    assert text.count("(raised again)") == 4
    assert str(late) not in text  # customers are named, not numbered


async def test_starttls_and_auth_login_with_a_self_signed_certificate_the_notifier_trusts(
    ana_overdue: Chain, sf: SessionFactory, tls_smtp: SmtpServer, open_tasks: OpenTasks
) -> None:
    [task] = await open_tasks(ana_overdue.chain_id)
    cfg = settings_for(tls_smtp)
    assert cfg.smtp is not None and cfg.smtp.password == PASSWORD  # percent-decoded
    assert await mail_once(sf, cfg, send_with(cfg)) == (1, 1)
    assert tls_smtp.received.tls == [True]
    assert tls_smtp.received.logins == [("LOGIN", USER.encode(), PASSWORD.encode())]
    text, _ = parts(tls_smtp.received.messages[0])
    assert links_in(text) == [f"{BACKOFFICE}/tasks/{task['task_id']}"]


async def test_an_untrusted_certificate_or_a_wrong_login_is_retried_and_never_sent_in_clear(
    ana_overdue: Chain, sf: SessionFactory, tls_smtp: SmtpServer
) -> None:
    now = datetime.now(UTC)
    untrusted = settings_for(tls_smtp, smtp_ca_file="")
    assert await mail_once(sf, untrusted, send_with(untrusted), now=now) == (1, 1)
    [digest] = await digests(sf)
    assert (digest.status, digest.attempts) == ("pending", 1)
    assert "certificate" in digest.last_error.lower()
    assert tls_smtp.received.logins == []  # the password never left over an unverified link
    wrong = settings_for(tls_smtp, smtp_url=tls_smtp.url.replace("smtp%20pass", "nope"))
    # not due before the back-off (30 s after the first try)
    assert await mail_once(sf, wrong, send_with(wrong), now=now + timedelta(seconds=29)) == (0, 0)
    assert await mail_once(sf, wrong, send_with(wrong), now=now + timedelta(seconds=30)) == (0, 1)
    [digest] = await digests(sf)
    assert (digest.status, digest.attempts) == ("pending", 2)
    assert "SMTPAuthenticationError" in digest.last_error
    assert digest.next_attempt_at == now + timedelta(seconds=90)  # 30, then 60
    assert tls_smtp.received.messages == []
    right = settings_for(tls_smtp)
    assert await mail_once(sf, right, send_with(right), now=now + timedelta(seconds=90)) == (0, 1)
    [digest] = await digests(sf)
    assert (digest.status, digest.attempts, digest.sent_to) == ("sent", 3, TO)
    assert len(tls_smtp.received.messages) == 1


async def test_a_server_that_keeps_refusing_ends_the_digest_dead_after_the_last_try(
    ana_overdue: Chain, sf: SessionFactory, plain_smtp: SmtpServer
) -> None:
    plain_smtp.received.refuse_with = "451 4.3.0 try again later"
    cfg = settings_for(plain_smtp)
    now = datetime.now(UTC)
    for moment in (now, now + timedelta(seconds=30), now + timedelta(seconds=90)):
        await mail_once(sf, cfg, send_with(cfg), now=moment)
    [digest] = await digests(sf)
    assert (digest.status, digest.attempts) == ("dead", 3)
    assert "451" in digest.last_error
    plain_smtp.received.refuse_with = None
    assert await mail_once(sf, cfg, send_with(cfg), now=now + timedelta(hours=1)) == (0, 0)
    assert plain_smtp.received.messages == []


async def test_a_digest_composed_before_a_crash_is_sent_once_by_the_next_run(
    ana_overdue: Chain, sf: SessionFactory, plain_smtp: SmtpServer
) -> None:
    cfg = settings_for(plain_smtp)
    now = datetime.now(UTC)

    async def crash(_message: EmailMessage) -> None:
        raise SystemExit("killed while talking to the SMTP server")

    with pytest.raises(SystemExit):
        await mail_once(sf, cfg, crash, now=now)
    [digest] = await digests(sf)
    assert (digest.status, digest.attempts) == ("pending", 0)  # the try rolled back whole
    assert await mail_once(sf, cfg, send_with(cfg), now=now) == (0, 1)
    assert await mail_once(sf, cfg, send_with(cfg), now=now + timedelta(hours=1)) == (0, 0)
    assert len(plain_smtp.received.messages) == 1


async def test_turning_reminder_mail_off_cancels_what_waits_and_a_paid_task_is_not_mailed(
    consumer: Consumer, sf: SessionFactory, plain_smtp: SmtpServer, ana_overdue: Chain
) -> None:
    chain = ana_overdue
    down = settings_for(plain_smtp, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    now = datetime.now(UTC)
    assert await mail_once(sf, down, send_with(down), now=now) == (1, 1)  # nobody listens
    await chain.set_reminder_email(None)
    cfg = settings_for(plain_smtp)
    assert await mail_once(sf, cfg, send_with(cfg), now=now + timedelta(hours=1)) == (0, 1)
    [digest] = await digests(sf)
    assert digest.status == "cancelled"
    await chain.set_reminder_email(TO)
    customer = await chain.overdue_customer("Paid Soon", "+40700000002", "10.00")
    await consumer.process_records(
        [
            record_of(
                credit.SaleSettled(
                    sale_id=uuid.uuid4(),
                    chain_id=chain.chain_id,
                    customer_id=customer,
                    was_overdue=True,
                    customer_overdue_amount=D("0.00"),
                    settled_at=T0 + timedelta(days=32),
                ),
                key=customer,
            )
        ]
    )
    assert await mail_once(sf, cfg, send_with(cfg), now=now + timedelta(hours=2)) == (0, 0)
    assert plain_smtp.received.messages == []
