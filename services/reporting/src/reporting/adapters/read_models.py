"""Reporting's master data and balances read models as the projection and the reports need
them, one query object per read model.

Every method works in the caller's session and transaction and never commits: the projection's
handlers run in the consumer's batch transaction, the reports in the API's read-only one.
Rows come back as SQLAlchemy rows (attribute access by column name).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from reporting.adapters import tables as t
from servicekit import sql

#: `Balances.card_read`: $1 chain_id, $2 customer_id, $3 now
_CARD_READ = (
    "WITH ch AS (SELECT timezone, minor_units FROM rm_chains WHERE chain_id = $1::uuid),"
    " today AS (SELECT ($3::timestamptz AT TIME ZONE coalesce((SELECT timezone FROM ch), 'UTC'))"
    "::date AS d)"
    " SELECT (SELECT minor_units FROM ch) AS minor_units,"
    " coalesce((SELECT chain_id FROM rm_customers WHERE customer_id = $2::uuid),"
    " (SELECT chain_id FROM rm_balances WHERE customer_id = $2::uuid)) AS owner,"
    " b.debt, b.advance, b.bonus_balance,"
    " EXISTS (SELECT 1 FROM rm_sale_lines l JOIN rm_sales s"
    " ON s.chain_id = l.chain_id AND s.sale_id = l.sale_id"
    " WHERE l.chain_id = $1::uuid AND l.customer_id = $2::uuid AND l.owed > 0"
    " AND s.due_date < (SELECT d FROM today)) AS overdue"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN rm_balances b ON b.customer_id = $2::uuid AND b.chain_id = $1::uuid"
)


class _Tables:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


def _upsert(table: sa.Table, key: str, key_value: Any, values: dict[str, Any]) -> Any:
    return (
        pg_insert(table)
        .values({key: key_value, **values})
        .on_conflict_do_update(index_elements=[key], set_=values)
    )


# --------------------------------------------------------------------------- master data


class MasterData(_Tables):
    """`rm_chains`, `rm_stores` and `rm_customers`, as the gateway's masterdata events say."""

    async def upsert_chain(self, chain_id: UUID, name: str, values: dict[str, Any]) -> None:
        """Insert the chain with `name`, or update it with `values` (the name only if in it)."""
        stmt = pg_insert(t.chains).values({"chain_id": chain_id, "name": name, **values})
        await self.session.execute(
            stmt.on_conflict_do_update(index_elements=["chain_id"], set_=values)
        )

    async def upsert_store(self, store_id: UUID, values: dict[str, Any]) -> None:
        await self.session.execute(_upsert(t.stores, "store_id", store_id, values))

    async def upsert_customer(self, customer_id: UUID, values: dict[str, Any]) -> None:
        await self.session.execute(_upsert(t.customers, "customer_id", customer_id, values))

    async def set_card_number(self, customer_id: UUID, card_number: str) -> None:
        await self.session.execute(
            sa.update(t.customers)
            .where(t.customers.c.customer_id == customer_id)
            .values(card_number=card_number)
        )

    async def chain_settings(self, chain_id: UUID) -> Any:
        """(timezone, minor_units, credit_mode) of the chain, or None when not registered yet."""
        return (
            await self.session.execute(
                sa.select(
                    t.chains.c.timezone, t.chains.c.minor_units, t.chains.c.credit_mode
                ).where(t.chains.c.chain_id == chain_id)
            )
        ).first()

    async def customer_chain(self, customer_id: UUID) -> UUID | None:
        owner: UUID | None = await self.session.scalar(
            sa.select(t.customers.c.chain_id).where(t.customers.c.customer_id == customer_id)
        )
        return owner

    async def vip_customer_ids(self, chain_id: UUID) -> set[UUID]:
        return set(
            (
                await self.session.execute(
                    sa.select(t.customers.c.customer_id).where(
                        t.customers.c.chain_id == chain_id, t.customers.c.vip.is_(True)
                    )
                )
            ).scalars()
        )

    async def customer_names(self, chain_id: UUID) -> dict[UUID, str]:
        return await self._names(t.customers.c.customer_id, t.customers, chain_id)

    async def store_names(self, chain_id: UUID) -> dict[UUID, str]:
        return await self._names(t.stores.c.store_id, t.stores, chain_id)

    async def _names(self, key: Any, table: sa.Table, chain_id: UUID) -> dict[UUID, str]:
        return {
            r[0]: r.name
            for r in await self.session.execute(
                sa.select(key, table.c.name).where(table.c.chain_id == chain_id)
            )
        }


# --------------------------------------------------------------------------- balances

# The customer's row, locked (through `servicekit.sql`; the table unqualified, found on the
# connection's search_path, the rebuild's scratch schema there), and its creation.
_LOCK_BALANCES = (
    "SELECT debt, advance, bonus_balance FROM rm_balances WHERE customer_id = $1::uuid FOR UPDATE"
)
_CREATE_BALANCES = (
    "INSERT INTO rm_balances (customer_id, chain_id) VALUES ($1::uuid, $2::uuid)"
    " ON CONFLICT DO NOTHING"
)


class Balances(_Tables):
    """`rm_balances`: debt and advance as credit last said, the bonus balance as the sum of
    loyalty's movements; the customer's row is the lock every change of them takes."""

    async def lock(self, chain_id: UUID, customer_id: UUID) -> tuple[Decimal, Decimal, Decimal]:
        """The customer's (debt, advance, bonus_balance), the row created if missing, locked
        for this transaction."""
        row = await sql.lock_row(
            self.session, _LOCK_BALANCES, (customer_id,), _CREATE_BALANCES, (customer_id, chain_id)
        )
        assert row is not None
        return row["debt"], row["advance"], row["bonus_balance"]

    async def take_bonus(self, customer_id: UUID, amount: Decimal) -> None:
        await self.session.execute(
            sa.update(t.balances)
            .where(t.balances.c.customer_id == customer_id)
            .values(bonus_balance=t.balances.c.bonus_balance - amount)
        )

    async def customer_chain(self, customer_id: UUID) -> UUID | None:
        owner: UUID | None = await self.session.scalar(
            sa.select(t.balances.c.chain_id).where(t.balances.c.customer_id == customer_id)
        )
        return owner

    async def card_read(self, chain_id: UUID, customer_id: UUID, now: datetime) -> Any:
        """What a card lookup reads of one customer, in one statement: the chain's minor units
        (None for a chain not registered yet), the chain owning the customer (master data's,
        else the balances row's; None when unknown), the balances in this chain (None without
        a row), and whether a line still owed belongs to a sale due before today in the
        chain's time zone (UTC for a chain not registered yet)."""
        return await sql.fetchrow(self.session, _CARD_READ, chain_id, customer_id, now)

    async def of_customers(self, chain_id: UUID, customer_ids: Sequence[UUID]) -> dict[UUID, Any]:
        return {
            r.customer_id: r
            for r in (
                await self.session.execute(
                    sa.select(t.balances).where(
                        t.balances.c.chain_id == chain_id,
                        t.balances.c.customer_id.in_(customer_ids),
                    )
                )
            )
        }
