"""The overdue scan: ``SaleOverdue`` once per sale, automatic revocation, ``SaleSettled``.

Runs periodically in every instance. Each customer is handled in its own short transaction
under the customer's row lock (``SKIP LOCKED``: a customer busy elsewhere is simply looked at
next time); the overdue mark of a sale is a unique row, so whichever instance inserts it
publishes the event and nobody ever publishes it twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime

from contracts.credit.v1 import OverdueLine, SaleOverdue, SaleSettled
from contracts.enums import OverdueDiscountPolicy
from contracts.gateway.v1 import ChainSettingsSnapshot
from contracts.topics import CREDIT_EVENTS
from credit.adapters.repository import CustomerRow, Repository
from credit.domain.errors import Refusal
from credit.domain.model import Ledger, OverdueSale, Sale
from credit.service_layer import outcomes as oc
from credit.service_layer.decisions import local_date, revoked_event
from credit.service_layer.emitter import Emitter
from servicekit.db import SessionFactory

log = logging.getLogger(__name__)


async def scan_overdue(session_factory: SessionFactory, *, now: datetime | None = None) -> int:
    """One pass over every chain; returns how many events it published."""
    now = now or datetime.now(UTC)
    run_id = uuid.uuid4()
    async with session_factory() as session, session.begin():
        chains = await Repository(session).chains()
    published = 0
    for chain_id, raw_settings in chains:
        settings = ChainSettingsSnapshot.model_validate(raw_settings)
        async with session_factory() as session, session.begin():
            customer_ids = await Repository(session).customers_with_debt(chain_id)
        for customer_id in customer_ids:
            async with session_factory() as session, session.begin():
                emitter = Emitter(session, correlation_id=run_id, causation_id=None)
                published += await scan_customer(
                    Repository(session), emitter, chain_id, customer_id, settings, now
                )
    return published


async def scan_customer(
    repo: Repository,
    emitter: Emitter,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    settings: ChainSettingsSnapshot,
    now: datetime,
) -> int:
    row = await repo.lock_customer(customer_id, chain_id, skip_locked=True)
    if row is None or row.in_flight is not None:
        return 0  # busy: an operation is in flight or another instance holds it
    m = oc.Money(settings.minor_units)
    today = local_date(now, settings.timezone)
    ledger = await repo.load_ledger(
        chain_id=chain_id, customer_id=customer_id, minor_units=settings.minor_units
    )
    published = 0
    for found in ledger.overdue_sales(today):
        sale = found.sale
        if (
            settings.overdue_discount is OverdueDiscountPolicy.REVOKE
            and not ledger.is_revoked(sale.sale_id)
            and sale.discount > 0
        ):
            published += await revoke_overdue_discount(
                repo, emitter, ledger, sale, row, settings, now, today
            )
        if await repo.mark_overdue(
            sale_id=sale.sale_id,
            chain_id=chain_id,
            customer_id=customer_id,
            due_date=sale.due_date,
            detected_at=now,
        ):
            await emitter.emit(
                CREDIT_EVENTS,
                overdue_event(ledger, found, chain_id, customer_id, settings, now),
                key=str(customer_id),
            )
            published += 1
    published += await settle_paid_marks(
        repo, emitter, ledger, chain_id, customer_id, m, now, today
    )
    await repo.update_customer(customer_id, debt=ledger.debt, advance=ledger.advance)
    return published


async def settle_paid_marks(
    repo: Repository,
    emitter: Emitter,
    ledger: Ledger,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    m: oc.Money,
    now: datetime,
    today: date,
) -> int:
    """``SaleSettled`` for the overdue marks whose sale was paid off while the settle event
    could not be sent with the payment; returns how many it published."""
    published = 0
    for sale_id in await repo.unsettled_marks(customer_id):
        if (
            sale_id in ledger.sales
            and ledger.sale_owed(sale_id) <= 0
            and (await repo.settle_mark(chain_id, sale_id))
        ):
            await emitter.emit(
                CREDIT_EVENTS,
                SaleSettled(
                    sale_id=sale_id,
                    chain_id=chain_id,
                    customer_id=customer_id,
                    was_overdue=True,
                    customer_overdue_amount=m(ledger.overdue_amount(today)),
                    settled_at=now,
                ),
                key=str(customer_id),
            )
            published += 1
    return published


async def revoke_overdue_discount(
    repo: Repository,
    emitter: Emitter,
    ledger: Ledger,
    sale: Sale,
    row: CustomerRow,
    settings: ChainSettingsSnapshot,
    now: datetime,
    today: date,
) -> int:
    """The chain's policy revokes an overdue sale's discount: once (the operation id is the
    sale's revocation), recorded and published. Returns how many events were published."""
    try:
        rev = ledger.revoke_discount(sale_id=sale.sale_id, at=now, today=today)
    except Refusal:
        return 0
    event = revoked_event(
        row.chain_id,
        row.customer_id,
        rev,
        "automatic",
        now,
        row.bonus_balance,
        oc.Money(settings.minor_units),
    )
    inserted = await repo.add_operation(
        operation_id=rev.operation_id,
        kind="revoke_discount",
        chain_id=row.chain_id,
        customer_id=row.customer_id,
        status="confirmed",
        outcome_type=event.TYPE,
        outcome=event.model_dump(mode="json"),
        meta={"timezone": settings.timezone, "minor_units": settings.minor_units},
        correlation_id=emitter.correlation_id,
    )
    if not inserted:
        return 0
    await repo.add_entries(rev.entries, chain_id=row.chain_id, customer_id=row.customer_id)
    await emitter.emit(CREDIT_EVENTS, event, key=str(row.customer_id))
    return 1


def overdue_event(
    ledger: Ledger,
    found: OverdueSale,
    chain_id: uuid.UUID,
    customer_id: uuid.UUID,
    settings: ChainSettingsSnapshot,
    now: datetime,
) -> SaleOverdue:
    sale, m = found.sale, oc.Money(settings.minor_units)
    return SaleOverdue(
        sale_id=sale.sale_id,
        chain_id=chain_id,
        customer_id=customer_id,
        credit_mode=settings.credit_mode,
        sold_at=sale.sold_at,
        due_date=sale.due_date,
        amount_owed=m(ledger.sale_owed(sale.sale_id)),
        days_overdue=found.days_overdue,
        discount=m(sale.discount),
        discount_revoked=ledger.is_revoked(sale.sale_id),
        lines=[
            OverdueLine(
                line_no=line.line_no,
                barcode=line.barcode,
                name=line.name,
                quantity=line.quantity,
                amount_owed=m(ledger.owed(sale.sale_id, line.line_no)),
            )
            for line in sale.lines
            if ledger.owed(sale.sale_id, line.line_no) > 0
        ],
        detected_at=now,
    )
