"""The Bonus statistics report's statements over the bonus movements of `rm_movements` (the
sums per kind in a period, per store and per customer, and the balances at the period's end)
and, for a page, over the bonus ledger of `credit_ledger`. Every method works in the caller's
session and transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import credit_ledger
from reporting.adapters import tables as t
from reporting.domain.model import BONUS_FIELDS, ZERO

_m = t.movements


class BonusStatistics:
    """The statements of one chain's report over the period [lower, upper) (open ends: None),
    of one store's movements with `store_id`."""

    def __init__(
        self,
        session: AsyncSession,
        chain_id: UUID,
        lower: datetime | None,
        upper: datetime | None,
        store_id: UUID | None,
    ) -> None:
        self.session = session
        self.chain_id = chain_id
        self.lower = lower
        self.upper = upper
        self.store_id = store_id

    # ----------------------------------------------------------------------- the whole report

    def _in_period(self) -> list[Any]:
        m = _m
        in_period = [m.c.chain_id == self.chain_id, m.c.bonus_kind.is_not(None)]
        if self.lower is not None:
            in_period.append(m.c.at >= self.lower)
        if self.upper is not None:
            in_period.append(m.c.at < self.upper)
        if self.store_id is not None:
            in_period.append(m.c.store_id == self.store_id)
        return in_period

    @staticmethod
    def _sums() -> list[Any]:
        m = _m
        return [
            sa.func.coalesce(
                sa.func.sum(sa.case((m.c.bonus_kind == kind, m.c.bonus_amount), else_=0)), 0
            ).label(kind)
            for kind in BONUS_FIELDS
        ]

    async def totals(self) -> Any:
        """The period's sums per kind (one column per `BONUS_FIELDS`)."""
        return (
            await self.session.execute(sa.select(*self._sums()).where(*self._in_period()))
        ).one()

    async def by_store(self) -> Sequence[Any]:
        """The period's sums per kind of each store (store_id, ...), by store id."""
        m = _m
        return (
            await self.session.execute(
                sa.select(m.c.store_id, *self._sums())
                .where(*self._in_period())
                .group_by(m.c.store_id)
                .order_by(m.c.store_id)
            )
        ).all()

    async def balances(self) -> dict[UUID, Any]:
        """Every customer's bonus balance at the end of the period, over every movement up to
        then (all stores)."""
        m = _m
        upto = [m.c.chain_id == self.chain_id, m.c.bonus_kind.is_not(None)]
        if self.upper is not None:
            upto.append(m.c.at < self.upper)
        return {
            r.customer_id: r.balance
            for r in await self.session.execute(
                sa.select(m.c.customer_id, sa.func.sum(m.c.bonus_change).label("balance"))
                .where(*upto)
                .group_by(m.c.customer_id)
            )
        }

    async def by_customer(self) -> dict[UUID, Any]:
        """The period's sums per kind of each customer who moved in it, by customer id."""
        m = _m
        return {
            r.customer_id: r
            for r in await self.session.execute(
                sa.select(m.c.customer_id, *self._sums())
                .where(*self._in_period())
                .group_by(m.c.customer_id)
            )
        }

    # ----------------------------------------------------------------------- one page

    def _page_conds(self) -> tuple[list[Any], list[sa.ColumnElement[bool]]]:
        """(the chain's bonus movements up to the period's end, those in the period)."""
        m = _m
        conds = [m.c.chain_id == self.chain_id, m.c.bonus_kind.is_not(None)]
        if self.upper is not None:
            conds.append(m.c.at < self.upper)
        in_period: list[sa.ColumnElement[bool]] = [sa.true()]
        if self.lower is not None:
            in_period.append(m.c.at >= self.lower)
        if self.store_id is not None:
            in_period.append(m.c.store_id == self.store_id)
        return conds, in_period

    @staticmethod
    def _filtered_sums(where: sa.ColumnElement[Any] | None = None) -> list[Any]:
        m = _m
        return [
            sa.func.coalesce(
                sa.func.sum(m.c.bonus_amount).filter(
                    sa.and_(m.c.bonus_kind == kind, where if where is not None else sa.true())
                ),
                ZERO,
            ).label(kind)
            for kind in BONUS_FIELDS
        ]

    async def page_totals(self) -> Any:
        """`totals`, as the paged report reads them."""
        conds, in_period = self._page_conds()
        return (
            await self.session.execute(sa.select(*self._filtered_sums()).where(*conds, *in_period))
        ).one()

    async def page_by_store(self) -> Sequence[Any]:
        """`by_store` with each store's name (`store_name`), as the paged report reads them."""
        m = _m
        conds, in_period = self._page_conds()
        return (
            await self.session.execute(
                sa.select(m.c.store_id, t.stores.c.name.label("store_name"), *self._filtered_sums())
                .select_from(m.outerjoin(t.stores, t.stores.c.store_id == m.c.store_id))
                .where(*conds, *in_period)
                .group_by(m.c.store_id, t.stores.c.name)
                .order_by(m.c.store_id)
            )
        ).all()

    async def page_ids(self, *, vip_only: bool, after: UUID | None, limit: int) -> list[UUID]:
        """The ids of the next `limit` customers by id after `after`: every customer's balance
        at the end of the period from the bonus ledger (`credit_ledger.bonus_balances`) and
        who moved in the period."""
        m = _m
        conds, in_period = self._page_conds()
        return list(
            (
                await self.session.execute(
                    credit_ledger.bonus_page(
                        self.chain_id,
                        self.upper,
                        sa.select(m.c.customer_id).where(*conds, sa.and_(*in_period)),
                        balance_counts=self.store_id is None,
                        vip_only=vip_only,
                        after=after,
                        limit=limit,
                    )
                )
            ).scalars()
        )

    async def page_rows(self, ids: list[UUID]) -> Sequence[Any]:
        """These customers' sums per kind in the period, balance at its end (summed from their
        movements) and name, by customer id."""
        if not ids:
            return []
        m = _m
        c = t.customers
        conds, in_period = self._page_conds()
        per_customer = (
            sa.select(
                m.c.customer_id,
                *self._filtered_sums(sa.and_(*in_period)),
                sa.func.coalesce(sa.func.sum(m.c.bonus_change), ZERO).label("balance"),
            )
            .where(*conds, m.c.customer_id.in_(ids))
            .group_by(m.c.customer_id)
            .subquery("per_customer")
        )
        return (
            await self.session.execute(
                sa.select(per_customer, sa.func.coalesce(c.c.name, "").label("name"))
                .select_from(
                    per_customer.outerjoin(c, c.c.customer_id == per_customer.c.customer_id)
                )
                .order_by(per_customer.c.customer_id)
            )
        ).all()

    async def outstanding(self) -> Any:
        """The chain's bonus balances at the end of the period, summed (the bonus ledger)."""
        return (
            await self.session.execute(credit_ledger.bonus_outstanding(self.chain_id, self.upper))
        ).scalar_one()
