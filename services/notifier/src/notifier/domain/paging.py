"""Opaque cursors of the task list (pure helpers)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any


class BadCursor(ValueError):
    """The cursor was not made by this service."""


def encode_cursor(position: Mapping[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except (ValueError, TypeError) as exc:
        raise BadCursor("invalid cursor") from exc
    if not isinstance(value, dict):
        raise BadCursor("invalid cursor")
    if any(isinstance(v, str) and "\x00" in v for v in value.values()):
        raise BadCursor("invalid cursor")  # never in a position: forged (PostgreSQL refuses it)
    return value
