"""The opaque `next` cursor of the gateway's lists (api.md, "Lists and paging"): the last row's
position (its sort key and id) as base64url of a JSON list of strings.

Anything else given as `cursor` (forged, garbled, from another API) is `422` naming `cursor`:
it never reaches the database, where a NUL character or a wrong type would be a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from pos_gateway.domain.errors import invalid


def encode_cursor(*position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *parse: Callable[[str], Any]) -> tuple[Any, ...]:
    """The position a `next` cursor of this API holds, each part read by its `parse` (which
    raises ValueError for a part this API never wrote), or `422` naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        if not (
            isinstance(position, list)
            and len(position) == len(parse)
            and all(isinstance(p, str) and "\x00" not in p for p in position)
        ):
            raise ValueError(position)
        return tuple(read(part) for read, part in zip(parse, position, strict=True))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise invalid("cursor", "not a cursor this API returned") from exc
