"""The reminder digest as pure functions: where to send it (`NOTIFIER_SMTP_URL`) and what it
says (one message listing every new or re-raised task, plain text plus an HTML alternative,
each task with a link to its page in the back office: `<backoffice>/tasks/<task_id>`)."""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = {"smtp": 25, "smtps": 465}
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class BadSmtpUrl(ValueError):
    """`NOTIFIER_SMTP_URL` cannot be used (the message never contains the password)."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    #: TLS from the first byte (`smtps://`)
    implicit_tls: bool
    #: STARTTLS required before anything else is sent (`?starttls=true`)
    starttls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never shows the password, wherever it is logged
        return (
            f"SmtpTarget(host={self.host!r}, port={self.port}, "
            f"implicit_tls={self.implicit_tls}, starttls={self.starttls}, "
            f"username={self.username!r})"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://[user:password@]host[:port][?starttls=true]` or `smtps://...` (TLS at once).

    User and password are percent-decoded. Credentials are only sent over TLS (STARTTLS or
    smtps), except to a server on this machine's loopback."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadSmtpUrl(f"not a URL: {exc.__class__.__name__}") from None
    if parts.scheme not in SCHEMES:
        raise BadSmtpUrl("the scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise BadSmtpUrl("the URL names no host")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls"}
    if unknown:
        raise BadSmtpUrl(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    starttls_text = query.get("starttls", "false")
    if starttls_text not in _TRUE | _FALSE:
        raise BadSmtpUrl("starttls must be true or false")
    implicit = parts.scheme == "smtps"
    starttls = starttls_text in _TRUE
    if implicit and starttls:
        raise BadSmtpUrl("smtps:// is TLS already: leave starttls out")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username and not (implicit or starttls or _is_loopback(parts.hostname)):
        raise BadSmtpUrl("a login needs TLS: add ?starttls=true or use smtps://")
    return SmtpTarget(
        host=parts.hostname,
        port=port or SCHEMES[parts.scheme],
        implicit_tls=implicit,
        starttls=starttls,
        username=username,
        password=password,
    )


# --------------------------------------------------------------------------- the digest


@dataclass(frozen=True)
class DigestTask:
    """One task as the digest shows it."""

    task_id: str
    customer_name: str
    phone: str | None
    level: int
    overdue_amount: str
    days_overdue: int
    sales: int
    #: True when the task was raised again (a reminder that is still unanswered)
    re_raised: bool


@dataclass(frozen=True)
class Digest:
    subject: str
    text: str
    html: str


def task_link(backoffice_url: str, task_id: str) -> str:
    """The task's page in the back office."""
    return f"{backoffice_url.rstrip('/')}/tasks/{task_id}"


def one_line(value: str) -> str:
    """Control characters (line breaks included) as spaces: a customer's name cannot add
    lines to a message or a header."""
    return _CONTROL.sub(" ", value).strip()


def _tel(phone: str) -> str:
    return "tel:" + re.sub(r"[^0-9+]", "", phone)


def render_digest(
    tasks: list[DigestTask], *, chain_name: str, currency: str, backoffice_url: str
) -> Digest:
    """Subject, plain text and HTML of one digest. Every value from the data is escaped in the
    HTML and made one line in the text."""
    count = len(tasks)
    noun = "reminder task" if count == 1 else "reminder tasks"
    chain = one_line(chain_name) or "VIP credit"
    subject = f"{chain}: {count} {noun} to call"
    lines = [
        f"{count} {noun} for customer service, new or raised again since the last message.",
        "",
    ]
    rows = []
    for task in tasks:
        name = one_line(task.customer_name) or "(no name)"
        phone = one_line(task.phone or "") or "no phone"
        link = task_link(backoffice_url, task.task_id)
        what = "raised again" if task.re_raised else "new"
        amount = f"{task.overdue_amount} {currency}".strip()
        sales = "1 sale" if task.sales == 1 else f"{task.sales} sales"
        lines += [
            f"* {name}, {phone}",
            f"  level {task.level} ({what}): {amount} overdue for {task.days_overdue} days, "
            f"{sales}",
            f"  {link}",
            "",
        ]
        e = html.escape
        phone_html = (
            f'<a href="{e(_tel(task.phone), quote=True)}">{e(phone)}</a>'
            if task.phone and _tel(task.phone) != "tel:"
            else e(phone)
        )
        rows.append(
            "<tr>"
            f'<td><a href="{e(link, quote=True)}">{e(name)}</a></td>'
            f"<td>{phone_html}</td>"
            f"<td>{task.level} ({e(what)})</td>"
            f"<td>{e(amount)}</td>"
            f"<td>{task.days_overdue}</td>"
            f"<td>{e(sales)}</td>"
            "</tr>"
        )
    lines.append("Open each link to record the call's outcome.")
    body_html = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head><body>"
        f"<p>{count} {noun} for customer service, new or raised again since the last "
        "message.</p>"
        '<table border="1" cellpadding="4" cellspacing="0">'
        "<thead><tr><th>Customer</th><th>Phone</th><th>Level</th><th>Overdue</th>"
        "<th>Days</th><th>Sales</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table><p>Open each customer to record the call's outcome.</p>"
        "</body></html>\n"
    )
    return Digest(subject=subject, text="\n".join(lines) + "\n", html=body_html)
