"""Test helpers: wrap message models in envelopes and aiokafka `ConsumerRecord`s, so tests can
drive a servicekit `Consumer` through `process_records()` exactly as the broker would."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from aiokafka import ConsumerRecord

from contracts.base import Message
from contracts.envelope import Envelope, encode, make_envelope
from contracts.registry import lookup

_offsets = itertools.count()


def envelope_of(model: Message, *, key: str | uuid.UUID) -> Envelope:
    return make_envelope(model, chain_id=None, key=str(key), correlation_id=uuid.uuid4())


def record_of(
    item: Message | Envelope,
    *,
    key: str | uuid.UUID | None = None,
    partition: int = 0,
    offset: int | None = None,
) -> ConsumerRecord[Any, Any]:
    """A record as the broker would deliver it (a model gets a fresh envelope)."""
    env = item if isinstance(item, Envelope) else envelope_of(item, key=key or "k")
    value = encode(env)
    raw_key = env.key.encode()
    return ConsumerRecord(
        topic=lookup(env.type, env.schema_version).topic,
        partition=partition,
        offset=next(_offsets) if offset is None else offset,
        timestamp=0,
        timestamp_type=0,
        key=raw_key,
        value=value,
        checksum=None,
        serialized_key_size=len(raw_key),
        serialized_value_size=len(value),
        headers=[],
    )
