"""Wires the gateway's parts: settings, the database, internal API clients, the outcome waiter.

Routes and consumer handlers reach it through `Gateway`; tests build one with their own
database and fake transports for reporting and the notifier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from pos_gateway.adapters.internal_api import CreditClient, NotifierClient, ReportingClient
from pos_gateway.adapters.outcome_listener import OutcomeListener
from pos_gateway.config import Settings
from pos_gateway.service_layer.waiter import OutcomeWaiter
from servicekit.db import make_read_session_factory
from servicekit.sql import Tx, autocommit, transaction


@dataclass
class Gateway:
    settings: Settings
    waiter: OutcomeWaiter = field(default_factory=OutcomeWaiter)
    session_factory: Callable[[], AsyncSession] | None = None
    read_session_factory: Callable[[], AsyncSession] | None = None
    reporting: ReportingClient | None = None
    notifier: NotifierClient | None = None
    credit: CreditClient | None = None
    listener: OutcomeListener | None = None
    #: password hashes (argon2) computed at once; see `Settings.hashing_concurrency`
    hashing: asyncio.Semaphore | None = None

    def session(self) -> AsyncSession:
        """A session for a transaction (`async with gw.session() as s, s.begin():`)."""
        assert self.session_factory is not None, "the gateway has not started"
        return self.session_factory()

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction without a session (`async with gw.transaction() as db:`), on a
        connection checked out for it: a till request's (`servicekit.sql.transaction`)."""
        return transaction(self._engine())

    def read_one(self) -> AbstractAsyncContextManager[Tx]:
        """One read statement without a session, BEGIN or COMMIT (`async with gw.read_one() as
        db:`; `servicekit.sql.autocommit`): an answer's row, an API key's, a card lookup."""
        return autocommit(self._engine())

    def _engine(self) -> AsyncEngine:
        assert self.session_factory is not None, "the gateway has not started"
        engine = getattr(self.session_factory, "kw", {}).get("bind")
        assert isinstance(engine, AsyncEngine), "a session factory bound to an engine"
        return engine

    def read(self) -> AsyncSession:
        """A session for reads only: autocommit, no BEGIN/ROLLBACK round trips (see
        `servicekit.db.make_read_session_factory`). Never write through it."""
        assert self.read_session_factory is not None, "the gateway has not started"
        return self.read_session_factory()

    def start(
        self,
        session_factory: Callable[[], AsyncSession],
        *,
        reporting_transport: httpx.AsyncBaseTransport | None = None,
        notifier_transport: httpx.AsyncBaseTransport | None = None,
        credit_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.session_factory = session_factory
        engine = getattr(session_factory, "kw", {}).get("bind")
        self.read_session_factory = (
            make_read_session_factory(engine)
            if isinstance(engine, AsyncEngine)
            else session_factory
        )
        timeout = self.settings.internal_timeout_seconds
        self.reporting = ReportingClient(
            self.settings.reporting_url, timeout=timeout, transport=reporting_transport
        )
        self.notifier = NotifierClient(
            self.settings.notifier_url, timeout=timeout, transport=notifier_transport
        )
        self.credit = CreditClient(
            self.settings.credit_url, timeout=timeout, transport=credit_transport
        )
        self.hashing = asyncio.Semaphore(max(1, self.settings.hashing_concurrency))
        self.waiter.register()

    def listen(self, database_url: str) -> OutcomeListener:
        """Wake this process's waiters for outcomes other instances consume too."""
        if self.listener is None:
            self.listener = OutcomeListener(
                database_url, self.waiter.notify, wanted=self.waiter.is_waiting
            )
            self.listener.start()
        return self.listener

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        self.waiter.unregister()
        for client in (self.reporting, self.notifier, self.credit):
            if client is not None:
                await client.aclose()

    @property
    def credit_api(self) -> CreditClient:
        assert self.credit is not None
        return self.credit

    @property
    def reporting_api(self) -> ReportingClient:
        assert self.reporting is not None
        return self.reporting

    @property
    def notifier_api(self) -> NotifierClient:
        assert self.notifier is not None
        return self.notifier
