"""Opaque cursors of the services' paged lists (reporting's reports, the notifier's tasks): what
a service made reads back, a forged one is refused before it reaches a query."""

from __future__ import annotations

import uuid

import pytest

from servicekit.paging import BadCursor, decode_cursor, encode_cursor, page_by_offset


def test_a_cursor_reads_back_the_position_it_holds() -> None:
    position = {"due": "2026-12-03T10:00:00+00:00", "id": "7"}
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        encode_cursor({"id": "a\x00"}),  # PostgreSQL refuses NUL: it would be a 500
        encode_cursor({"name": "a\x00", "id": str(uuid.uuid4())}),
        "WzEsMl0",  # a list, not a map
    ],
)
def test_a_forged_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(cursor)


def test_pages_by_offset_follow_each_other_without_gaps() -> None:
    rows = list(range(7))
    first, cursor = page_by_offset(rows, limit=3, cursor=None)
    second, cursor2 = page_by_offset(rows, limit=3, cursor=cursor)
    third, cursor3 = page_by_offset(rows, limit=3, cursor=cursor2)
    assert (list(first), list(second), list(third), cursor3) == ([0, 1, 2], [3, 4, 5], [6], None)


def test_without_a_limit_the_page_is_the_rest_of_the_list() -> None:
    rows = list(range(5))
    assert page_by_offset(rows, limit=None, cursor=encode_cursor({"o": 2})) == ([2, 3, 4], None)


@pytest.mark.parametrize("offset", [-1, "3", 1.5, True, None])
def test_an_offset_cursor_with_a_forged_offset_is_refused(offset: object) -> None:
    with pytest.raises(BadCursor):
        page_by_offset([1, 2, 3], limit=2, cursor=encode_cursor({"o": offset}))
