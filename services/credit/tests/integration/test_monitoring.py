"""The business gauges read credit's database (job `business-gauges`)."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from credit.service_layer.monitoring import refresh_gauges
from credit.service_layer.overdue import scan_overdue
from credit.testing import (
    customer_snapshot,
    day,
    one_line_sale,
    record_advance,
    record_sale,
    sale_line,
    settings_snapshot,
)


def gauge(name: str, chain_id: uuid.UUID | None = None) -> float | None:
    labels = {"chain_id": str(chain_id)} if chain_id else {}
    return REGISTRY.get_sample_value(name, labels)


async def test_gauges_show_open_overdue_debt_and_advances_per_chain_and_zero_for_a_quiet_one(
    harness,
):
    indebted, quiet = uuid.uuid4(), uuid.uuid4()
    settings = settings_snapshot(credit_mode="balance")
    for n, amount in enumerate(("45.00", "5.50")):
        customer = customer_snapshot()
        await harness.send(
            record_sale(
                chain_id=indebted,
                customer=customer,
                settings=settings,
                sold_at=day(n),
                lines=[sale_line(1, amount)],
                payments=[("on_account", amount)],
            ),
            key=str(customer.customer_id),
        )
    late = customer_snapshot()
    await harness.send(
        one_line_sale(indebted, late, settings, "10.00", at=30),
        key=str(late.customer_id),
    )
    saver = customer_snapshot()
    await harness.send_and_settle(
        record_advance(
            chain_id=quiet, customer=saver, settings=settings, at=day(0), amount="20.00"
        ),
        key=str(saver.customer_id),
    )
    await scan_overdue(harness.sf, now=day(35))  # the first two sales are overdue, not the last

    await refresh_gauges(harness.sf)

    assert gauge("credit_open_debt", indebted) == 60.5
    assert gauge("credit_overdue_debt", indebted) == 50.5
    assert gauge("credit_overdue_customers", indebted) == 2
    assert gauge("credit_advances_held", indebted) == 0
    assert gauge("credit_open_debt", quiet) == 0
    assert gauge("credit_overdue_debt", quiet) == 0
    assert gauge("credit_overdue_customers", quiet) == 0
    assert gauge("credit_advances_held", quiet) == 20
    assert gauge("credit_saga_in_flight_operations") == 0
