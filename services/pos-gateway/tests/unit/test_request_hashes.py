"""A sale's two hashes come from one canonical JSON: the same values as `request_hash` and
`body_hash` each make (stored hashes of earlier requests still match their retries)."""

from __future__ import annotations

from typing import Any

import pytest

from pos_gateway.service_layer.common import body_hash, request_and_body_hash, request_hash


@pytest.mark.parametrize(
    "body",
    [
        {"b": [1, "2.50", None], "a": {"z": "ă", "y": True}},
        None,
        [],
    ],
)
def test_both_hashes_at_once_equal_each_on_its_own(body: Any) -> None:
    assert request_and_body_hash("POST", "/v1/sales", body) == (
        request_hash("POST", "/v1/sales", body),
        body_hash(body),
    )
