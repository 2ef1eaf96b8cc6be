"""The envelope around every Kafka message, and how it goes to and from bytes.

```json
{"message_id": "uuid", "type": "credit.SaleCompleted", "schema_version": 1,
 "occurred_at": "RFC 3339", "chain_id": "uuid", "correlation_id": "uuid",
 "causation_id": "uuid|null", "key": "customer id", "payload": {...}}
```

``occurred_at`` is when the message was made (the business time is in the payload);
``correlation_id`` is the id of the HTTP request or scheduler run that started the chain of
messages; ``causation_id`` the message id that caused this one; ``key`` the partition key.
The payload stays a plain JSON object until ``parse_payload`` validates it against the
registered model, so a consumer can dead-letter a bad payload with its envelope intact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID, uuid4

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contracts.base import Message
from contracts.registry import UnknownMessageType, lookup, spec_of

__all__ = [
    "SCHEMA_VERSION_HEADER",
    "TYPE_HEADER",
    "Envelope",
    "MessageTypeMismatch",
    "UnknownMessageType",
    "decode",
    "encode",
    "headers_of",
    "make_envelope",
    "parse_payload",
    "parse_payload_as",
]

M = TypeVar("M", bound=Message)

MessageTypeName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*\.[A-Z][A-Za-z0-9]*$", max_length=200)
]


class MessageTypeMismatch(LookupError):
    """The envelope holds another message than the one the caller expected."""


class Envelope(BaseModel):
    """The envelope of every message on every topic (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    message_id: UUID
    """Unique per message; consumers skip a message id they have seen (inbox)."""
    type: MessageTypeName
    """``"<namespace>.<Name>"``, e.g. ``"credit.SaleCompleted"``."""
    schema_version: Annotated[int, Field(ge=1)]
    occurred_at: AwareDatetime
    chain_id: UUID | None
    """The tenant; null only for messages not tied to a chain (dead letters)."""
    correlation_id: UUID
    causation_id: UUID | None
    key: str
    """The Kafka partition key (customer id, sale id or chain id as text)."""
    payload: dict[str, Any]


def make_envelope(
    payload_model: Message,
    *,
    chain_id: UUID | None,
    key: str | UUID,
    correlation_id: UUID,
    causation_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wrap a registered message model in a new envelope with a fresh ``message_id``.

    ``chain_id`` may be left ``None`` when the payload has a ``chain_id`` (it is taken from
    there); a ``chain_id`` that contradicts the payload's is a ``ValueError``.
    """
    spec = spec_of(payload_model)
    payload_chain = getattr(payload_model, "chain_id", None)
    if isinstance(payload_chain, UUID):
        if chain_id is None:
            chain_id = payload_chain
        elif chain_id != payload_chain:
            raise ValueError(
                f"envelope chain_id {chain_id} differs from the payload's {payload_chain}"
            )
    return Envelope(
        message_id=uuid4(),
        type=spec.type,
        schema_version=spec.version,
        occurred_at=occurred_at if occurred_at is not None else datetime.now(UTC),
        chain_id=chain_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        key=str(key),
        payload=payload_model.model_dump(mode="json"),
    )


#: Kafka headers the outbox relay sets beside the envelope: its `type` and `schema_version`, so
#: a consumer can pass over a message it has no handler for without decoding it. The envelope
#: stays what counts: a record without them is decoded, as every record once was.
TYPE_HEADER = "message-type"
SCHEMA_VERSION_HEADER = "schema-version"


def headers_of(envelope: Envelope) -> dict[str, str]:
    """The Kafka headers that name the envelope's message (`TYPE_HEADER`, ...)."""
    return {TYPE_HEADER: envelope.type, SCHEMA_VERSION_HEADER: str(envelope.schema_version)}


#: orjson writes the payload (plain JSON values: `make_envelope`'s `model_dump(mode="json")`, or
#: what `decode` read) byte for byte as pydantic does (compact, UTF-8, the same escapes, floats
#: and their null for inf/NaN), in a sixth of the time; anything else (a datetime, a `str` or
#: `int` subclass such as an enum, an int beyond 64 bits, a lone surrogate) it refuses, and
#: pydantic writes the whole envelope as before. `test_the_wire_format_is_pinned` holds it.
_PLAIN_JSON_ONLY = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_NOT_THE_PAYLOAD = {"payload"}


def encode(envelope: Envelope) -> bytes:
    """Compact UTF-8 JSON of the envelope (money stays decimal strings).

    The envelope's own fields are written by pydantic (its datetime format), the payload, the
    last field, by orjson when it is plain JSON values (see `_PLAIN_JSON_ONLY`)."""
    try:
        payload = orjson.dumps(envelope.payload, option=_PLAIN_JSON_ONLY)
    except TypeError:  # orjson.JSONEncodeError is one
        return envelope.model_dump_json().encode("utf-8")
    head = envelope.__pydantic_serializer__.to_json(envelope, exclude=_NOT_THE_PAYLOAD)
    return b"".join((head[:-1], b',"payload":', payload, b"}"))


def decode(raw: bytes | str) -> Envelope:
    """Parse and validate an envelope; ``pydantic.ValidationError`` on anything malformed.

    The payload is validated later by ``parse_payload``.
    """
    return Envelope.model_validate_json(raw)


def parse_payload(envelope: Envelope) -> Message:
    """Validate the payload against the model registered for (type, schema_version).

    Raises ``UnknownMessageType`` (a ``LookupError``) for an unregistered type/version and
    ``pydantic.ValidationError`` for a payload that violates the schema.
    """
    spec = lookup(envelope.type, envelope.schema_version)
    return spec.model.model_validate(envelope.payload)


def parse_payload_as(envelope: Envelope, model: type[M]) -> M:
    """Like ``parse_payload`` but for a handler that expects exactly ``model``."""
    expected = spec_of(model)
    if (envelope.type, envelope.schema_version) != (expected.type, expected.version):
        raise MessageTypeMismatch(
            f"expected {expected.name}, got {envelope.type}.v{envelope.schema_version}"
        )
    return model.model_validate(envelope.payload)
