"""Opaque cursors of paged lists, one implementation for every service's internal API.

A cursor is the position after the last row of a page (a JSON object, base64url without
padding): the service reads back what it wrote, and anything else is `BadCursor`, which the
APIs answer with 422 `validation_error` on `cursor`, never 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["BadCursor", "decode_cursor", "encode_cursor", "page_by_offset"]

T = TypeVar("T")


class BadCursor(ValueError):
    """The cursor was not made by this service."""


def encode_cursor(position: Mapping[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise BadCursor("invalid cursor") from exc
    if not isinstance(value, dict):
        raise BadCursor("invalid cursor")
    if any(isinstance(v, str) and "\x00" in v for v in value.values()):
        raise BadCursor("invalid cursor")  # never in a position: forged (PostgreSQL refuses it)
    return value


def page_by_offset(
    rows: Sequence[T], *, limit: int | None, cursor: str | None
) -> tuple[Sequence[T], str | None]:
    """A page of an already sorted list: all of it when no limit is given."""
    offset = 0
    if cursor:
        offset = decode_cursor(cursor).get("o", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise BadCursor("invalid cursor")
    if limit is None:
        return rows[offset:], None
    page = rows[offset : offset + limit]
    nxt = encode_cursor({"o": offset + limit}) if offset + limit < len(rows) else None
    return page, nxt
