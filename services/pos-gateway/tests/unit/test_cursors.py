"""The lists' `next` cursor (api.md, "Lists and paging"): what a page returns reads back as its
position, and anything else is `422` naming `cursor`, never a 500 nor a page."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pos_gateway.domain.errors import ValidationFailed
from pos_gateway.service_layer.cursors import decode_cursor, encode_cursor

ID = uuid.uuid4()


def _forged(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def test_a_returned_cursor_reads_back_as_its_position() -> None:
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert decode_cursor(encode_cursor("Ana Pop", str(ID)), str, uuid.UUID) == ("Ana Pop", ID)
    at = encode_cursor(moment.isoformat(), str(ID))
    assert decode_cursor(at, datetime.fromisoformat, uuid.UUID) == (moment, ID)


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        _forged(["a\x00", str(ID)]),  # PostgreSQL refuses NUL
        _forged(["a", 1]),  # an id that is not a string
        _forged([1, str(ID)]),  # a sort key that is not a string
        _forged({"a": 0, str(ID): 1}),  # two keys are not a position
        _forged(["a", str(ID), "b"]),
        _forged(["a", "not-an-id"]),
    ],
)
def test_anything_but_a_returned_cursor_is_a_422_naming_cursor(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor, str, uuid.UUID)
    assert refused.value.status == 422
    assert [e["field"] for e in refused.value.errors] == ["cursor"]
