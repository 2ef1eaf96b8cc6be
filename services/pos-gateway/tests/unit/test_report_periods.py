"""Report periods (and the statement's): both ends between 2000-01-01 and 2099-12-31 and
`from` <= `to`, else `422 validation_error` naming the field - never a 503 from reporting
(issue 13 finding 7)."""

from __future__ import annotations

from datetime import date

import pytest

from pos_gateway.domain.errors import ValidationFailed
from pos_gateway.entrypoints.api.routes import check_period


def _fields(from_: date | None, to: date | None) -> list[str]:
    try:
        check_period(from_, to)
    except ValidationFailed as exc:
        refused = exc
    else:
        return []
    assert refused.status == 422 and refused.code == "validation_error"
    return [e["field"] for e in refused.errors]


def test_periods_within_the_century_pass_both_ends_included() -> None:
    assert _fields(date(2000, 1, 1), date(2099, 12, 31)) == []
    assert _fields(date(2026, 3, 1), date(2026, 3, 1)) == []
    assert _fields(None, None) == _fields(date(2026, 1, 1), None) == []


@pytest.mark.parametrize(
    ("from_", "to", "fields"),
    [
        (date(1, 1, 1), None, ["from"]),
        (None, date(9999, 12, 31), ["to"]),
        (date(1999, 12, 31), date(2026, 1, 1), ["from"]),
        (date(2026, 1, 1), date(2100, 1, 1), ["to"]),
        (date(1, 1, 1), date(9999, 12, 31), ["from", "to"]),
    ],
)
def test_an_end_outside_the_century_is_refused_naming_it(
    from_: date | None, to: date | None, fields: list[str]
) -> None:
    assert _fields(from_, to) == fields


def test_from_after_to_is_refused_naming_both() -> None:
    assert _fields(date(2026, 2, 1), date(2026, 1, 31)) == ["from", "to"]
