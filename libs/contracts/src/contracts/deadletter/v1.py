"""The dead letter, schema version 1, on ``deadletter.v1``.

Written by every consumer (through servicekit) for a message it can never process; read by
operators (``make dead-letters``), who fix the cause and replay the original by hand.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from contracts.base import Event, Text
from contracts.topics import DEAD_LETTERS

__all__ = ["DeadLetter"]


class DeadLetter(Event):
    """A message a consumer gave up on: where it was, why, and its original bytes as text.

    Produced by any consumer (unparsable bytes, unknown type, schema violation, a handler's
    ``PermanentError``); consumed by operators. Not tied to a chain: the envelope's chain id
    may be null because the original could not be read.
    """

    TYPE: ClassVar[str] = "deadletter.DeadLetter"
    TOPIC: ClassVar[str] = DEAD_LETTERS

    consumer: Text
    """The consumer group that failed."""
    original_topic: Text
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    key: str | None
    reason: Text
    error_type: Text
    original_value: str
    """The original value decoded as UTF-8, undecodable bytes replaced."""
    failed_at: AwareDatetime
    original_message_id: UUID | None = None
    """The original envelope's message id when it could be read."""
    original_type: str | None = None
    """The original envelope's type when it could be read."""
