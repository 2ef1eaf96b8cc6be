"""The commands but a revocation keep no inbox row in credit (`NO_INBOX_FOR`): a command
delivered again (Kafka redelivers after a crash or a rebalance) is found seen, accepted or
refused, by the ledger's read under the customer's lock and passed over; one that comes while
its customer waits for loyalty is parked and passed over when it is replayed."""

from __future__ import annotations

import uuid

from credit.testing import customer_snapshot, one_line_sale, settings_snapshot

CHAIN = uuid.UUID("33333333-3333-3333-3333-333333333333")


async def test_a_command_delivered_again_changes_nothing(harness) -> None:
    customer = customer_snapshot()
    settings = settings_snapshot()
    key = str(customer.customer_id)
    sale = await harness.send(one_line_sale(CHAIN, customer, settings, "50.00"), key=key)
    await harness.send_envelope(sale)  # while the sale waits for loyalty: parked
    assert await harness.count("parked_commands") == 1
    await harness.settle()  # the sale completes; its copy is replayed and passed over
    await harness.send_envelope(sale)  # after it completed
    anonymous = await harness.send(
        one_line_sale(CHAIN, None, settings, "20.00", paid_with="cash"), key="anonymous"
    )
    outbox = await harness.outbox()

    await harness.send_envelope(anonymous)
    await harness.send_envelope(sale)

    assert await harness.outbox() == outbox
    completed = await harness.events("credit.SaleCompleted")
    assert [e["sale_id"] for e in completed] == [
        sale.payload["sale_id"],
        anonymous.payload["sale_id"],
    ]
    await harness.loyalty_asked(uuid.UUID(sale.payload["sale_id"]))  # asked once
    credit = await harness.credit(CHAIN, customer.customer_id)
    assert credit is not None and credit["debt"] == "50.00"
    assert await harness.count("operations") == 2
    assert await harness.count("parked_commands") == 0
    assert await harness.count("inbox") == 0
