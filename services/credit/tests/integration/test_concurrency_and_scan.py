"""Parallel sessions on real PostgreSQL: no over-allocation, one SaleOverdue per sale; the
internal credit read."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from credit.entrypoints.app import make_consumer
from credit.entrypoints.http import router
from credit.service_layer.overdue import scan_overdue
from credit.testing import (
    customer_snapshot,
    day,
    one_line_sale,
    record_advance,
    record_payment,
    record_refund,
    settings_snapshot,
)
from servicekit.testing import internal_api_client

CHAIN = uuid.UUID("33333333-3333-3333-3333-333333333333")


async def test_two_payments_at_the_same_moment_never_over_allocate(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot()
    await harness.send_and_settle(
        one_line_sale(CHAIN, customer, settings, "50.00"),
        key=str(cid),
    )
    one = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="40.00"
    )
    two = record_payment(
        chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="40.00"
    )
    # two consumer instances (two partitions after a rebalance), each with its own session
    first, second = make_consumer(), make_consumer()
    for consumer in (first, second):
        consumer.bind(harness.sf)
    await asyncio.gather(
        first.process_records([harness.record(harness.envelope(one, str(cid)))]),
        second.process_records([harness.record(harness.envelope(two, str(cid)))]),
    )
    await harness.settle()
    recorded = await harness.events("credit.DebtPaymentRecorded")
    allocated = sum((Decimal(a["amount"]) for r in recorded for a in r["allocated"]), Decimal(0))
    assert len(recorded) == 2
    assert allocated == Decimal("50.00")
    assert sorted(r["advance_added"] for r in recorded) == ["0.00", "30.00"]
    view = await harness.credit(CHAIN, cid)
    assert (view["debt"], view["advance"]) == ("0.00", "30.00")


async def test_two_refunds_at_the_same_moment_never_overdraw_the_advance(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot()
    await harness.send_and_settle(
        record_advance(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(0), amount="25.00"
        ),
        key=str(cid),
    )
    refunds = [
        record_refund(
            chain_id=CHAIN, customer=customer, settings=settings, at=day(1), amount="20.00"
        )
        for _ in range(2)
    ]
    consumers = [make_consumer(), make_consumer()]
    for consumer in consumers:
        consumer.bind(harness.sf)
    await asyncio.gather(
        *(
            c.process_records([harness.record(harness.envelope(r, str(cid)))])
            for c, r in zip(consumers, refunds, strict=True)
        )
    )
    await harness.settle()  # one waits for loyalty, the other is parked behind it
    assert len(await harness.events("credit.RefundRecorded")) == 1
    [refusal] = await harness.events("credit.OperationRefused")
    assert refusal["code"] == "insufficient_advance"
    assert (await harness.credit(CHAIN, cid))["advance"] == "5.00"


async def test_concurrent_scans_publish_one_sale_overdue_per_sale(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="balance", overdue_discount="revoke")
    sale = one_line_sale(CHAIN, customer, settings, "45.00", discount="5.00")
    await harness.send_and_settle(sale, key=str(cid))
    await asyncio.gather(*(scan_overdue(harness.sf, now=day(35)) for _ in range(4)))
    await scan_overdue(harness.sf, now=day(36))
    assert len(await harness.events("credit.SaleOverdue")) == 1
    assert len(await harness.events("credit.DiscountRevoked")) == 1
    assert (await harness.credit(CHAIN, cid))["debt"] == "50.00"


async def test_scan_before_the_due_date_finds_nothing(harness):
    customer = customer_snapshot(max_payment_delay_days=10)
    cid = customer.customer_id
    settings = settings_snapshot()
    await harness.send_and_settle(
        one_line_sale(CHAIN, customer, settings, "10.00"),
        key=str(cid),
    )
    await scan_overdue(harness.sf, now=day(10))
    assert await harness.events("credit.SaleOverdue") == []
    await scan_overdue(harness.sf, now=day(11))
    [overdue] = await harness.events("credit.SaleOverdue")
    assert overdue["days_overdue"] == 1 and overdue["discount_revoked"] is False


async def test_internal_credit_read_shows_debt_and_open_sales_and_hides_other_chains(harness):
    customer = customer_snapshot()
    cid = customer.customer_id
    settings = settings_snapshot(credit_mode="per_item")
    sale = one_line_sale(CHAIN, customer, settings, "12.50", name="Socks", barcode="123")
    await harness.send_and_settle(sale, key=str(cid))
    async with internal_api_client(router, harness.sf) as client:
        ok = await client.get(f"/internal/v1/chains/{CHAIN}/customers/{cid}/credit")
        other = await client.get(f"/internal/v1/chains/{uuid.uuid4()}/customers/{cid}/credit")
    assert ok.status_code == 200
    body = ok.json()
    assert body["debt"] == "12.50" and body["overdue"] is True  # day 0 is long past
    assert body["open_sales"][0]["sale_id"] == str(sale.sale_id)
    assert body["open_sales"][0]["lines"] == [
        {"line_no": 1, "name": "Socks", "barcode": "123", "amount_owed": "12.50"}
    ]
    assert other.status_code == 404 and other.json() == {"code": "not_found"}


async def _chain_row(harness, chain_id: uuid.UUID) -> tuple[dict, bool] | None:
    import sqlalchemy as sa

    async with harness.sf() as session:
        row = (
            await session.execute(
                sa.text("SELECT settings, from_masterdata FROM chains WHERE chain_id = :c"),
                {"c": chain_id},
            )
        ).first()
    return None if row is None else (row.settings, row.from_masterdata)


async def _snapshot(session, chain: uuid.UUID, settings: dict, path: str) -> None:
    """A command's snapshot of its chain, as an anonymous command remembers it (alone) or a
    customer's (with the customer's lock, in one statement)."""
    from credit.adapters.repository import Repository

    repo = Repository(session)
    if path == "alone":
        await repo.remember_chain(chain, settings, authoritative=False)
    else:
        await repo.remember_chain_and_lock_customer(chain, settings, uuid.uuid4())


SNAPSHOT_PATHS = pytest.mark.parametrize("path", ["alone", "with the customer's lock"])


@SNAPSHOT_PATHS
async def test_a_commands_chain_snapshot_leaves_the_chains_row_unlocked_once_it_is_known(
    harness, path
):
    """Every command remembers its chain. Two credit instances (or two partitions' batches)
    must not queue on the chain's row, nor deadlock on two chains met in opposite orders."""
    import sqlalchemy as sa

    from credit.adapters.repository import Repository

    chain = uuid.uuid4()
    snapshot = settings_snapshot().model_dump(mode="json")
    async with harness.sf() as session, session.begin():
        await Repository(session).remember_chain(chain, snapshot, authoritative=True)
    async with harness.sf() as first, first.begin():
        await _snapshot(first, chain, snapshot, path)
        # the first batch is still open; another transaction gets the row at once
        async with harness.sf() as second, second.begin():
            await second.execute(sa.text("SET LOCAL lock_timeout = '500ms'"))
            await second.execute(
                sa.text("SELECT 1 FROM chains WHERE chain_id = :c FOR UPDATE"), {"c": chain}
            )


@SNAPSHOT_PATHS
async def test_a_snapshot_fills_an_unknown_chain_and_never_overrides_master_data(harness, path):
    from credit.adapters.repository import Repository

    chain = uuid.uuid4()
    first = settings_snapshot().model_dump(mode="json")
    newer = settings_snapshot(timezone="Europe/Berlin").model_dump(mode="json")
    master = settings_snapshot(timezone="Europe/Paris").model_dump(mode="json")

    async def remember(settings: dict, authoritative: bool) -> None:
        async with harness.sf() as session, session.begin():
            if authoritative:
                await Repository(session).remember_chain(chain, settings, authoritative=True)
            else:
                await _snapshot(session, chain, settings, path)

    await remember(first, False)
    assert await _chain_row(harness, chain) == (first, False)
    await remember(newer, False)  # master data has not described the chain yet
    assert await _chain_row(harness, chain) == (newer, False)
    await remember(master, True)
    await remember(first, False)
    assert await _chain_row(harness, chain) == (master, True)
