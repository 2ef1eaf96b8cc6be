"""What the use cases need from the running gateway, as a protocol.

The service layer names this and never `bootstrap.Gateway`, which wires the concrete parts
(and imports the service layer itself): layers point down, and a test may hand a use case
anything with these members.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from pos_gateway.adapters.internal_api import CreditClient
from pos_gateway.config import Settings
from pos_gateway.service_layer.waiter import OutcomeWaiter
from servicekit.sql import Tx


class GatewayPorts(Protocol):
    settings: Settings
    #: wakes requests waiting for an operation's outcome
    waiter: OutcomeWaiter
    #: password hashes (argon2) computed at once; None before the gateway starts
    hashing: asyncio.Semaphore | None

    def session(self) -> AsyncSession:
        """A session for a transaction (`async with gw.session() as s, s.begin():`)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction without a session (`async with gw.transaction() as db:`)."""
        ...

    def read(self) -> AsyncSession:
        """A session for reads only (autocommit); never write through it."""
        ...

    def read_one(self) -> AbstractAsyncContextManager[Tx]:
        """One read statement without a session, BEGIN or COMMIT (`async with gw.read_one()
        as db:`)."""
        ...

    @property
    def credit_api(self) -> CreditClient:
        """Credit's internal read API (a bonus cancellation's debt and advance)."""
        ...
