"""Opaque cursors of the task list: what this service made reads back, a forged one is refused
before it reaches a query."""

from __future__ import annotations

import pytest

from notifier.domain.paging import BadCursor, decode_cursor, encode_cursor


def test_a_cursor_reads_back_the_position_it_holds() -> None:
    position = {"due": "2026-12-03T10:00:00+00:00", "id": "7"}
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize("cursor", [
    "not base64 !", encode_cursor({"id": "a\x00"}), "WzEsMl0",  # the last: a list, not a map
])
def test_a_forged_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(cursor)
