"""The SMTP URL and what a reminder digest says (pure functions)."""

from __future__ import annotations

import pytest

from notifier.config import Settings
from notifier.domain.mail import (
    BadSmtpUrl,
    DigestTask,
    SmtpTarget,
    parse_smtp_url,
    render_digest,
    task_link,
)


def test_an_smtp_url_gives_host_port_tls_and_the_percent_decoded_login() -> None:
    assert parse_smtp_url("smtp://u%40x:p%3Aw%2Fd@mail.example.ro:2525?starttls=true") == (
        SmtpTarget("mail.example.ro", 2525, False, True, "u@x", "p:w/d")
    )
    assert parse_smtp_url("smtps://u:p@mail.example.ro") == SmtpTarget(
        "mail.example.ro", 465, True, False, "u", "p"
    )
    assert parse_smtp_url("smtp://127.0.0.1") == SmtpTarget(
        "127.0.0.1", 25, False, False, None, None
    )
    # a login in clear is only for a server on this machine
    assert parse_smtp_url("smtp://u:p@localhost:2525").username == "u"


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.ro",
        "smtp://",
        "smtp://u:p@mail.example.ro",
        "smtp://mail.example.ro?starttls=maybe",
        "smtp://mail.example.ro?tls=1",
        "smtps://mail.example.ro?starttls=true",
        "smtp://mail.example.ro:99999",
    ],
)
def test_an_unusable_smtp_url_is_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(BadSmtpUrl) as refused:
        parse_smtp_url(url)
    assert "p@" not in str(refused.value)


def test_the_password_is_in_no_representation_of_the_target_or_the_settings() -> None:
    settings = Settings(
        database_url="postgresql://x@127.0.0.1/x",
        smtp_url="smtps://user:s3cret-pw@mail.example.ro",
        smtp_from="reminders@example.ro",
    )
    assert settings.smtp is not None and settings.smtp.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in repr(settings.smtp)


def test_mail_needs_a_from_address() -> None:
    with pytest.raises(ValueError, match="NOTIFIER_SMTP_FROM"):
        Settings(database_url="postgresql://x@127.0.0.1/x", smtp_url="smtp://127.0.0.1")


def task(name: str, phone: str | None = "+40 700-000 001", **kw: object) -> DigestTask:
    values: dict[str, object] = {
        "task_id": "t-1",
        "customer_name": name,
        "phone": phone,
        "level": 1,
        "overdue_amount": "30.00",
        "days_overdue": 3,
        "sales": 1,
        "re_raised": False,
        **kw,
    }
    return DigestTask(**values)  # type: ignore[arg-type]


def test_the_link_is_the_task_page_of_the_back_office() -> None:
    assert task_link("https://bo.example.ro/", "abc") == "https://bo.example.ro/tasks/abc"
    assert task_link("http://127.0.0.1:8085", "abc") == "http://127.0.0.1:8085/tasks/abc"


def test_the_html_escapes_names_and_the_text_keeps_each_task_on_its_own_lines() -> None:
    digest = render_digest(
        [
            task('<b>Ana</b> & "Co"'),
            task("Line\r\nBreak: injected", task_id="t-2", phone=None, re_raised=True, level=2),
        ],
        chain_name="Kids\r\nBcc: x@evil.example",
        currency="EUR",
        backoffice_url="https://bo.example.ro",
    )
    assert digest.subject == "Kids Bcc: x@evil.example: 2 reminder tasks to call"
    assert "\n" not in digest.subject and "\r" not in digest.subject
    assert "&lt;b&gt;Ana&lt;/b&gt; &amp; &quot;Co&quot;" in digest.html
    assert "<b>Ana</b>" not in digest.html
    assert 'href="tel:+40700000001"' in digest.html
    assert 'href="https://bo.example.ro/tasks/t-2"' in digest.html
    assert "* Line Break: injected, no phone\n" in digest.text
    assert "  level 2 (raised again): 30.00 EUR overdue for 3 days, 1 sale\n" in digest.text
    assert "  https://bo.example.ro/tasks/t-1\n" in digest.text
