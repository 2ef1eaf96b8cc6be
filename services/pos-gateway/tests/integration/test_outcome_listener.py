"""Several gateway instances: an outcome consumed by another instance wakes the waiting
request through PostgreSQL's LISTEN/NOTIFY, not at the next poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ON_ACCOUNT_SALE = {
    "card_number": "CARD-1",
    "lines": [
        {
            "sku": "D1",
            "barcode": "4820000000017",
            "name": "Dress",
            "quantity": "1",
            "unit_price": "100.00",
        }
    ],
    "payments": [{"method": "on_account", "amount": "100.00"}],
}


async def test_an_outcome_consumed_by_another_instance_wakes_the_waiting_request_at_once(
    harness: Any, credit: Any
) -> None:
    admin, terminal = await harness.setup()
    await harness.customer(admin)
    gw = harness.gateway
    gw.settings.sale_wait_seconds = 4.0
    gw.settings.outcome_poll_interval_seconds = 10.0  # the poll alone would answer 202
    # the consumer below plays another instance: its commit wakes nobody in this process
    gw.waiter.unregister()
    listener = gw.listen(harness.engine.url.render_as_string(hide_password=False))
    await asyncio.wait_for(listener.listening.wait(), 10)
    request, command = await harness.sale_waiting(ON_ACCOUNT_SALE, harness.till(terminal))
    # the outcome must come while the request waits (else its first look finds it, not the
    # wake-up): wait until it has registered for its operation's wake-up
    key = (uuid.UUID(command.payload["chain_id"]), "sale", uuid.UUID(command.payload["sale_id"]))
    for _ in range(200):
        if gw.waiter.is_waiting(key):
            break
        await asyncio.sleep(0.02)
    assert gw.waiter.is_waiting(key), "the request never waited for its outcome"
    delivered = time.monotonic()
    await harness.deliver("credit.events.v1", credit.sale_completed(command.payload, debt="100.00"))
    response = await request
    assert response.status_code == 201
    assert response.json()["customer"]["debt"] == "100.00"
    assert time.monotonic() - delivered < 1.5
