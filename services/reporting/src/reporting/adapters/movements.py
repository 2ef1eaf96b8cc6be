"""`rm_movements`: one row per money, goods or bonus movement of a customer (the statement's
entries; Payment-Balance and Bonus statistics sum them), as the projection writes them and the
statement reads them. Every method works in the caller's session and transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import tables as t

# Movements of one moment: the credit side first, then the bonus movements in the order the
# bonus ledger applies them (due expiries, spend, accrual, restore, reverse), so that the
# running bonus balance of a mixed payment never shows an amount the customer did not have
# and the statement reads the same every time (message ids are random).
_KIND_ORDER = sa.case(
    (t.movements.c.kind == "sale", 0),
    (t.movements.c.kind == "bonus_expired", 2),
    (t.movements.c.kind == "bonus_spent", 3),
    (t.movements.c.kind == "bonus_accrued", 4),
    (t.movements.c.kind == "bonus_restored", 5),
    (t.movements.c.kind == "bonus_reversed", 6),
    (t.movements.c.kind.like("bonus_%"), 7),
    else_=1,
)


class Movements:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def drop_bonus_movements(
        self, chain_id: UUID, customer_id: UUID, movement_ids: Sequence[UUID]
    ) -> list[Decimal]:
        """Delete the rows of these bonus movements of the customer; their `bonus_change`s."""
        m = t.movements.c
        return list(
            (
                await self.session.execute(
                    sa.delete(t.movements)
                    .where(
                        m.chain_id == chain_id,
                        m.customer_id == customer_id,
                        m.bonus_movement_id.in_(movement_ids),
                    )
                    .returning(m.bonus_change)
                )
            )
            .scalars()
            .all()
        )

    async def balances_before(
        self, chain_id: UUID, customer_id: UUID, lower: datetime
    ) -> tuple[Any, Any, Any]:
        """The customer's (debt, advance, bonus) changes summed over the movements before
        `lower` (0 each without any)."""
        m = t.movements
        row = (
            await self.session.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(m.c.debt_change), 0),
                    sa.func.coalesce(sa.func.sum(m.c.advance_change), 0),
                    sa.func.coalesce(sa.func.sum(m.c.bonus_change), 0),
                )
                .where(m.c.chain_id == chain_id, m.c.customer_id == customer_id)
                .where(m.c.at < lower)
            )
        ).one()
        return row[0], row[1], row[2]

    async def statement_entries(
        self,
        chain_id: UUID,
        customer_id: UUID,
        lower: datetime | None,
        upper: datetime | None,
    ) -> Sequence[Any]:
        """The customer's movements in [lower, upper), in statement order."""
        m = t.movements
        q = (
            sa.select(m)
            .where(m.c.chain_id == chain_id, m.c.customer_id == customer_id)
            .order_by(m.c.at, _KIND_ORDER, m.c.message_id, m.c.seq)
        )
        if lower is not None:
            q = q.where(m.c.at >= lower)
        if upper is not None:
            q = q.where(m.c.at < upper)
        return (await self.session.execute(q)).all()
