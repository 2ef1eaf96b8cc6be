"""Base classes of every message model: immutable, no unknown fields, a declared identity.

Every message class declares ``TYPE`` (the envelope's ``type``, ``"<namespace>.<Name>"``),
``VERSION`` (the envelope's ``schema_version``) and ``TOPIC``. The namespace of a command is
the service that handles it (``credit.RecordSale``); the namespace of an event is the topic's
owner (``credit.SaleCompleted``, ``masterdata.CustomerRegistered``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "CardNumber",
    "Command",
    "ContractModel",
    "Days",
    "Event",
    "LineNo",
    "Message",
    "MessageKind",
    "Text",
    "ensure_unique",
]

MessageKind = Literal["command", "event"]

Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
"""A non-empty string (names, codes, details)."""

CardNumber = Annotated[str, StringConstraints(min_length=1, max_length=64)]
"""A loyalty/VIP card number as printed (digits or letters)."""

LineNo = Annotated[int, Field(ge=1)]
"""A receipt line number: 1, 2, ... in the order of the sale's lines."""

Days = Annotated[int, Field(ge=0)]
"""A whole number of days."""


def ensure_unique(values: Iterable[Hashable], what: str) -> None:
    """Raise ``ValueError`` naming the first duplicate (used by model validators)."""
    seen: set[Hashable] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value}")
        seen.add(value)


class ContractModel(BaseModel):
    """A value inside a message: frozen, and unknown fields are an error, not ignored."""

    # attribute docstrings become field descriptions in the JSON Schemas and AsyncAPI
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Message(ContractModel):
    """A payload that travels in an envelope on one topic."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[str]
    KIND: ClassVar[MessageKind]


class Command(Message):
    """A request to one service to do something (imperative name); it may be refused."""

    KIND: ClassVar[MessageKind] = "command"


class Event(Message):
    """A fact that has happened (past-tense name); any number of services may consume it."""

    KIND: ClassVar[MessageKind] = "event"
