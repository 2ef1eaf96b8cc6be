"""The text the hot statements send for their `jsonb` parameters (`repository._jsonb`) is the
JSON `json.dumps` wrote before: the same values, so PostgreSQL stores the same `jsonb`."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pos_gateway.adapters.repository import _jsonb

PAYLOAD: dict[str, Any] = {
    "sale_id": "6f1c3f0e-0d4b-4f57-9a55-3c2f6d1e7a10",
    "customer": {"name": "Ștefan Ăăâ 李 🙂", "vip": True, "credit_limit": None},
    "lines": [
        {"line_no": 1, "name": 'quote " backslash \\ tab \t nl \n nul \x00', "quantity": "2"},
        {"line_no": 2, "name": "\u2028\u2029\x7f", "quantity": "0.5"},
    ],
    "minor_units": 2,
    "big": 12345678901234567890123,
    "ratio": 0.1,
    "large": 1e16,
    "empty": {},
    "none": [],
}


@pytest.mark.parametrize("value", [PAYLOAD, None, {}, {"errors": [{"field": "x", "message": "y"}]}])
def test_the_text_is_json_of_the_same_value(value: Any) -> None:
    assert json.loads(_jsonb(value)) == json.loads(json.dumps(value)) == value


def test_nan_and_the_infinities_are_written_as_json_dumps_writes_them() -> None:
    text = _jsonb({"a": math.nan, "b": math.inf, "c": -math.inf})
    assert text == '{"a":NaN,"b":Infinity,"c":-Infinity}'
    assert json.dumps({"a": math.nan, "b": math.inf, "c": -math.inf}) == (
        '{"a": NaN, "b": Infinity, "c": -Infinity}'
    )
