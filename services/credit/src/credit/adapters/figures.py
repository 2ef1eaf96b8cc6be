"""Whole-chain figures for the business gauges: cheap aggregates over the projections.

Open debt and advances come from the per-customer projection (`customers`, updated with every
confirmed operation); overdue debt from the sales with an unsettled overdue mark (set by the
overdue scan) and their confirmed ledger entries, read through the sale index.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from credit.adapters import tables as t
from credit.domain.model import CHARGES, CREDITS


@dataclass(frozen=True)
class ChainFigures:
    open_debt: dict[uuid.UUID, Decimal]
    advances: dict[uuid.UUID, Decimal]
    overdue_debt: dict[uuid.UUID, Decimal]
    overdue_customers: dict[uuid.UUID, int]
    chains: set[uuid.UUID]
    in_flight: int


async def chain_figures(session: AsyncSession) -> ChainFigures:
    chains = set((await session.execute(sa.select(t.chains.c.chain_id))).scalars())
    balances = (
        await session.execute(
            sa.select(
                t.customers.c.chain_id,
                sa.func.sum(t.customers.c.debt),
                sa.func.sum(t.customers.c.advance),
            ).group_by(t.customers.c.chain_id)
        )
    ).all()
    owed = _overdue_sales_owed()
    overdue = (
        await session.execute(
            sa.select(
                owed.c.chain_id,
                sa.func.sum(owed.c.owed),
                sa.func.count(sa.distinct(owed.c.customer_id)),
            )
            .where(owed.c.owed > 0)
            .group_by(owed.c.chain_id)
        )
    ).all()
    in_flight = await session.scalar(
        sa.select(sa.func.count())
        .select_from(t.customers)
        .where(t.customers.c.in_flight.is_not(None))
    )
    return ChainFigures(
        open_debt={r[0]: r[1] or Decimal(0) for r in balances},
        advances={r[0]: r[2] or Decimal(0) for r in balances},
        overdue_debt={r[0]: r[1] for r in overdue},
        overdue_customers={r[0]: r[2] for r in overdue},
        chains=chains | {r[0] for r in balances},
        in_flight=int(in_flight or 0),
    )


def _overdue_sales_owed() -> sa.Subquery:
    """What each sale with an unsettled overdue mark owes (chain, customer, owed): its
    confirmed entries, charges less credits."""
    signed = sa.case(
        (t.entries.c.kind.in_([k.value for k in CHARGES]), t.entries.c.amount),
        (t.entries.c.kind.in_([k.value for k in CREDITS]), -t.entries.c.amount),
        else_=0,
    )
    return (
        sa.select(
            t.overdue_marks.c.chain_id,
            t.overdue_marks.c.customer_id,
            sa.func.sum(signed).label("owed"),
        )
        .select_from(
            t.overdue_marks.join(
                t.entries,
                sa.and_(
                    t.entries.c.chain_id == t.overdue_marks.c.chain_id,
                    t.entries.c.sale_id == t.overdue_marks.c.sale_id,
                ),
            ).join(
                t.operations,
                sa.and_(
                    t.operations.c.chain_id == t.entries.c.chain_id,
                    t.operations.c.operation_id == t.entries.c.operation_id,
                    t.operations.c.status == "confirmed",
                ),
            )
        )
        .where(t.overdue_marks.c.settled_at.is_(None))
        .group_by(
            t.overdue_marks.c.chain_id, t.overdue_marks.c.customer_id, t.overdue_marks.c.sale_id
        )
        .subquery()
    )
