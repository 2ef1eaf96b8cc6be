"""Writes events to the outbox with the correlation of the message that caused them.

A parked command replayed later keeps its own correlation id, so the gateway can match the
outcome to its HTTP request even though another message triggered the replay.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from contracts.base import Message
from contracts.envelope import Envelope
from servicekit.outbox import enqueue_message
from servicekit.sql import Db


class Emitter:
    """Emits events caused by one message (or one scheduler run)."""

    def __init__(
        self,
        db: Db,
        *,
        correlation_id: uuid.UUID,
        causation_id: uuid.UUID | None,
    ) -> None:
        self.db = db
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.emitted: list[tuple[str, Envelope]] = []

    @classmethod
    def caused_by(cls, db: Db, envelope: Envelope) -> Emitter:
        return cls(db, correlation_id=envelope.correlation_id, causation_id=envelope.message_id)

    def for_message(self, envelope: Envelope) -> Emitter:
        """An emitter for events caused by another message, in the same transaction."""
        return Emitter.caused_by(self.db, envelope)

    def with_correlation(self, correlation_id: uuid.UUID) -> Emitter:
        return Emitter(self.db, correlation_id=correlation_id, causation_id=self.causation_id)

    async def emit(
        self, topic: str, payload: Message, *, key: str, occurred_at: datetime | None = None
    ) -> Envelope:
        env = await enqueue_message(
            self.db,
            topic,
            payload,
            chain_id=None,
            key=key,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            occurred_at=occurred_at,
        )
        self.emitted.append((topic, env))
        return env
