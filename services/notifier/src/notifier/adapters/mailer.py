"""Sending one message through SMTP (aiosmtplib): STARTTLS or TLS at once, login, verified
certificates (the system's authorities plus `NOTIFIER_SMTP_CA_FILE`)."""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib

from notifier.domain.mail import SmtpTarget

#: what a failed send raises: the server refused (SMTP), it could not be reached or the TLS
#: handshake failed (OSError, ssl.SSLError is one), or it did not answer in time
SEND_ERRORS: tuple[type[BaseException], ...] = (aiosmtplib.SMTPException, OSError, TimeoutError)


class SmtpMailer:
    """One SMTP conversation per message (a digest a minute at most per chain: no pool)."""

    def __init__(self, target: SmtpTarget, *, ca_file: str = "", timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self._tls = ssl.create_default_context()
        if ca_file:
            self._tls.load_verify_locations(cafile=ca_file)

    async def send(self, message: EmailMessage) -> None:
        """Raises one of `SEND_ERRORS` unless the server accepted the message."""
        target = self.target
        await aiosmtplib.send(
            message,
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.implicit_tls,
            start_tls=target.starttls,
            tls_context=self._tls,
            timeout=self.timeout,
        )


def describe(error: BaseException) -> str:
    """A short reason to store and log (an SMTP reply keeps its code)."""
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]
