"""Several gateway instances: an outcome consumed by another instance wakes the waiting
request through PostgreSQL's LISTEN/NOTIFY, not at the next poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

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
    _, terminal, _ = await harness.setup_with_customer()
    gw = harness.gateway
    gw.settings.sale_wait_seconds = 4.0
    gw.settings.outcome_poll_interval_seconds = 10.0  # the poll alone would answer 202
    await harness.as_another_instance()
    request, command = await harness.sale_waiting(ON_ACCOUNT_SALE, harness.till(terminal))
    await harness.until_waiting(command)
    delivered = time.monotonic()
    await harness.deliver("credit.events.v1", credit.sale_completed(command.payload, debt="100.00"))
    response = await request
    assert response.status_code == 201
    assert response.json()["customer"]["debt"] == "100.00"
    assert time.monotonic() - delivered < 1.5


async def test_the_notification_carries_the_stored_row_when_it_fits_and_the_key_alone_else(
    harness: Any,
) -> None:
    import asyncpg

    from pos_gateway.adapters.outcome_listener import CHANNEL, parse, payload_of
    from pos_gateway.adapters.repository import Operations
    from pos_gateway.domain.operations import OpRef
    from servicekit.db import plain_url

    await harness.setup()
    async with harness.engine.connect() as conn:
        chain_id = await conn.scalar(sa.text("SELECT chain_id FROM chains"))
    small, large = OpRef(chain_id, "sale", uuid.uuid4()), OpRef(chain_id, "sale", uuid.uuid4())
    heard: asyncio.Queue[str] = asyncio.Queue()
    url = harness.engine.url.render_as_string(hide_password=False)
    listening = await asyncpg.connect(plain_url(url))
    try:
        await listening.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[-1]))
        async with harness.gateway.session() as session, session.begin():
            for ref in (small, large):
                await Operations(session).insert(
                    ref, status="pending", request_hash="h", request={}, customer_id=uuid.uuid4()
                )
        outcomes = {small: {"total": "1.00"}, large: {"lines": ["x" * 100] * 80}}
        stored = {}
        async with harness.gateway.session() as session, session.begin():
            for ref, outcome in outcomes.items():
                stored[ref] = await Operations(session).settle_and_notify(
                    ref, status="completed", outcome=outcome, code=None, detail=None
                )
        payloads = [await asyncio.wait_for(heard.get(), 5) for _ in outcomes]
    finally:
        await listening.close()
    # the row as a read gives it, attribute for attribute, types included
    key, row = parse(payloads[0]) or (None, None)
    assert key == small.key and row is not None
    async with harness.gateway.session() as session:
        read = await Operations(session).read(small)
    assert read is not None
    assert vars(row) == vars(read)
    assert row.outcome == {"total": "1.00"} and isinstance(row.operation_id, uuid.UUID)
    # 8 KB of outcome does not fit: the key alone, its waiters read the row
    assert payloads[1] == payload_of(large.key)
    assert parse(payloads[1]) == (large.key, None)
    assert stored[large] is not None and stored[large].outcome == outcomes[large]
