"""Opaque cursors for paged lists and CSV rendering of report rows (pure helpers)."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


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
    rows: Sequence[Any], *, limit: int | None, cursor: str | None
) -> tuple[Sequence[Any], str | None]:
    """A page of an already sorted list: all of it when no limit is given."""
    offset = 0
    if cursor:
        offset = decode_cursor(cursor).get("o", 0)
        if not isinstance(offset, int) or offset < 0:
            raise BadCursor("invalid cursor")
    if limit is None:
        return rows[offset:], None
    page = rows[offset : offset + limit]
    nxt = encode_cursor({"o": offset + limit}) if offset + limit < len(rows) else None
    return page, nxt


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def to_csv(rows: Iterable[Mapping[str, Any]], header: Sequence[str] | None = None) -> str:
    """One CSV line per row with a header of the row's scalar fields (lists/objects left out)."""
    rows = list(rows)
    if header is None:
        header = [k for k, v in rows[0].items() if is_scalar(v)] if rows else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else _cell(row.get(k)) for k in header])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
