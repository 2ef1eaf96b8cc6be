"""Read side for the internal debugging endpoint: a customer's credit as the ledger sees it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.gateway.v1 import ChainSettingsSnapshot
from credit.adapters.repository import Repository
from credit.service_layer import outcomes as oc
from credit.service_layer.decisions import local_date


async def customer_credit(
    repo: Repository, chain_id: uuid.UUID, customer_id: uuid.UUID, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """Debt, advance, overdue flag and open sales (with lines); None for another chain's."""
    if await repo.customer_chain(customer_id) != chain_id:
        return None
    raw = await repo.chain_settings(chain_id)
    settings = ChainSettingsSnapshot.model_validate(raw) if raw else None
    minor_units = settings.minor_units if settings else 2
    timezone = settings.timezone if settings else "UTC"
    m = oc.Money(minor_units)
    ledger = await repo.load_ledger(
        chain_id=chain_id, customer_id=customer_id, minor_units=minor_units
    )
    today = local_date(now or datetime.now(UTC), timezone)
    open_sales = []
    for sale, owed in ledger.open_sales():
        open_sales.append(
            {
                "sale_id": str(sale.sale_id),
                "sold_at": sale.sold_at.isoformat(),
                "due_date": sale.due_date.isoformat(),
                "amount_owed": str(m(owed)),
                "overdue": today > sale.due_date,
                "discount_revoked": ledger.is_revoked(sale.sale_id),
                "lines": [
                    {
                        "line_no": line.line_no,
                        "name": line.name,
                        "barcode": line.barcode,
                        "amount_owed": str(m(ledger.owed(sale.sale_id, line.line_no))),
                    }
                    for line in sale.lines
                    if ledger.owed(sale.sale_id, line.line_no) > 0
                ],
            }
        )
    return {
        "customer_id": str(customer_id),
        "credit_mode": settings.credit_mode.value if settings else None,
        "debt": str(m(ledger.debt)),
        "advance": str(m(ledger.advance)),
        "overdue": bool(ledger.overdue_sales(today)),
        "overdue_amount": str(m(ledger.overdue_amount(today))),
        "open_sales": open_sales,
    }
