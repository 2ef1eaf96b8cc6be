"""The notifier process: the task consumer, the re-raise scan, webhook deliveries, reminder
digests by email, the API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from notifier.adapters import webhook_http
from notifier.adapters.mailer import SmtpMailer
from notifier.config import Settings
from notifier.entrypoints.api import router
from notifier.service_layer.handlers import make_consumer
from notifier.service_layer.jobs import deliver_once, scan_once
from notifier.service_layer.mail import mail_once
from notifier.service_layer.monitoring import refresh_gauges
from servicekit.jobs import PeriodicJob
from servicekit.runtime import Runtime, ServiceDefinition, create_app

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

log = logging.getLogger(__name__)


def make_definition(settings: Settings | None = None) -> ServiceDefinition:
    settings = settings or Settings()

    def jobs(runtime: Runtime) -> Sequence[PeriodicJob]:
        client = webhook_http.client()
        runtime.extras["webhook_client"] = client

        async def scan() -> None:
            await scan_once(runtime.session_factory)

        async def deliver() -> None:
            await deliver_once(runtime.session_factory, settings, client)

        async def gauges() -> None:
            await refresh_gauges(runtime.session_factory)

        periodic = [
            PeriodicJob("reminder-scan", settings.reminder_scan_interval_seconds, scan),
            PeriodicJob("webhook-delivery", settings.webhook_poll_interval_seconds, deliver),
            PeriodicJob("business-gauges", settings.metrics_interval_seconds, gauges),
        ]
        target = settings.smtp
        if target is None:
            # tasks of chains with a reminder email still wait in nt_mail_items: the first
            # run once SMTP is configured sends one digest per chain of those still open
            log.warning("reminder mail is off: NOTIFIER_SMTP_URL is not set")
            return periodic
        mailer = SmtpMailer(
            target, ca_file=settings.smtp_ca_file, timeout=settings.smtp_timeout_seconds
        )

        async def mail() -> None:
            await mail_once(runtime.session_factory, settings, mailer.send)

        return [*periodic, PeriodicJob("reminder-mail", settings.mail_interval_seconds, mail)]

    async def on_stop(runtime: Runtime) -> None:
        client = runtime.extras.get("webhook_client")
        if client is not None:
            await client.aclose()

    return ServiceDefinition(
        name="notifier",
        settings=settings,
        migrations_dir=MIGRATIONS_DIR,
        consumers=[make_consumer(settings.consumer_group)],
        jobs=jobs,
        routers=[router],
        on_stop=on_stop,
    )


settings = Settings()
app = create_app(make_definition(settings))
