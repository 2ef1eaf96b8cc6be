"""Log lines written while a request is handled carry the caller's chain once it is known.

(The correlation id comes from servicekit's HTTP middleware, tested with servicekit.)"""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson
import pytest

from pos_gateway.entrypoints.api.auth import AdminKey
from servicekit.logging import JsonFormatter

pytestmark = pytest.mark.integration


async def test_a_log_line_after_authentication_carries_the_callers_chain(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    app = harness.client._transport.app
    probe = logging.getLogger("pos_gateway.test_probe")

    async def log_something(principal: AdminKey) -> dict[str, str]:
        probe.warning("probe")
        return {"chain_id": str(principal.chain_id)}

    app.router.add_api_route("/test/log-probe", log_something, methods=["GET"])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    probe.addHandler(handler)
    try:
        response = await harness.client.get("/test/log-probe", headers=harness.auth(admin))
    finally:
        probe.removeHandler(handler)
    assert response.status_code == 200, response.text
    [line] = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert line["msg"] == "probe"
    assert line["chain_id"] == response.json()["chain_id"]
