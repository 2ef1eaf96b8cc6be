"""The notifier's tables as the service layer needs them, one query object per aggregate.

Every method works in the caller's session and transaction and never commits: handlers, jobs
and the internal API decide where a transaction starts and ends; these classes say how a row
is read, locked or written. Rows come back as SQLAlchemy rows (attribute access by column).
The few statements of the sale path (locking the customer, the sales followed, owed amounts)
go through `servicekit.sql` instead and return plain values.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.adapters import tables as t
from notifier.domain.tasks import OPEN
from servicekit import sql

# The statements of the sale path (every money event that changes what older sales owe):
# through `servicekit.sql`, asyncpg on the session's connection and in its transaction.
_LOCK_CUSTOMER = "SELECT customer_id FROM nt_customers WHERE customer_id = $1::uuid FOR UPDATE"
_LOCK_CUSTOMER_OR_SKIP = f"{_LOCK_CUSTOMER} SKIP LOCKED"
_CREATE_CUSTOMER = (
    "INSERT INTO nt_customers (customer_id, chain_id) VALUES ($1::uuid, $2::uuid)"
    " ON CONFLICT DO NOTHING"
)
_TRACKED_OF = (
    "SELECT sale_id FROM nt_overdue_sales WHERE chain_id = $1::uuid AND sale_id = ANY($2::uuid[])"
)
#: a line's owed amount, and the sale's one amount (line 0) dropped: other rows than the
#: line's, so the two changes of one statement never meet
_SET_OWED = (
    "WITH one_amount AS ("
    " DELETE FROM nt_overdue_lines WHERE chain_id = $1::uuid AND sale_id = $2::uuid"
    " AND line_no = 0)"
    " INSERT INTO nt_overdue_lines (chain_id, sale_id, line_no, owed)"
    " VALUES ($1::uuid, $2::uuid, $3::integer, $4::numeric)"
    " ON CONFLICT (chain_id, sale_id, line_no) DO UPDATE SET owed = excluded.owed"
)
_DROP_SALE_AMOUNT = (
    "DELETE FROM nt_overdue_lines WHERE chain_id = $1::uuid AND sale_id = $2::uuid AND line_no = 0"
)


def _upsert(table: sa.Table, key: str, key_value: Any, values: dict[str, Any]) -> Any:
    return (
        pg_insert(table)
        .values({key: key_value, **values})
        .on_conflict_do_update(index_elements=[key], set_=values)
    )


class _Tables:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


# --------------------------------------------------------------------------- master data


class Directory(_Tables):
    """What the notifier keeps of master data: chains (settings, reminder email) and
    customers (name, phone); the customer's row is the lock every task change takes."""

    async def upsert_chain(self, chain_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(_upsert(t.chains, "chain_id", chain_id, values))

    async def upsert_customer(self, customer_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(_upsert(t.customers, "customer_id", customer_id, values))

    async def chain(self, chain_id: uuid.UUID) -> Any:
        return (
            await self.session.execute(sa.select(t.chains).where(t.chains.c.chain_id == chain_id))
        ).first()

    async def chain_ids(self) -> set[uuid.UUID]:
        return set((await self.session.execute(sa.select(t.chains.c.chain_id))).scalars())

    async def lock_chain_or_skip(self, chain_id: uuid.UUID) -> Any:
        """The chain's row locked, or None when another transaction holds it (or unknown)."""
        return (
            await self.session.execute(
                sa.select(t.chains)
                .where(t.chains.c.chain_id == chain_id)
                .with_for_update(skip_locked=True)
            )
        ).first()

    async def reminder_email(self, chain_id: uuid.UUID) -> str | None:
        address: str | None = await self.session.scalar(
            sa.select(t.chains.c.reminder_email).where(t.chains.c.chain_id == chain_id)
        )
        return address

    async def lock_customer(
        self, chain_id: uuid.UUID, customer_id: uuid.UUID, *, skip_locked: bool = False
    ) -> bool:
        """Lock the customer's row (creating it if needed); False if skipped because busy.
        One statement when the row exists (`servicekit.sql.lock_row`: lock, else create and
        lock; with SKIP LOCKED, no row when another transaction holds it)."""
        lock = _LOCK_CUSTOMER_OR_SKIP if skip_locked else _LOCK_CUSTOMER
        found = await sql.lock_row(
            self.session, lock, (customer_id,), _CREATE_CUSTOMER, (customer_id, chain_id)
        )
        return found is not None

    async def customer(self, customer_id: uuid.UUID) -> Any:
        return (
            await self.session.execute(
                sa.select(t.customers).where(t.customers.c.customer_id == customer_id)
            )
        ).one()

    async def customers(self, customer_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
        return {
            c.customer_id: c
            for c in await self.session.execute(
                sa.select(t.customers).where(t.customers.c.customer_id.in_(list(customer_ids)))
            )
        }


# --------------------------------------------------------------------------- overdue sales


class OverdueSales(_Tables):
    """The sales credit reported overdue and what each of their lines still owes."""

    async def is_tracked(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> bool:
        known = await self.session.scalar(
            sa.select(t.overdue_sales.c.sale_id).where(
                t.overdue_sales.c.chain_id == chain_id, t.overdue_sales.c.sale_id == sale_id
            )
        )
        return known is not None

    async def tracked_of(self, chain_id: uuid.UUID, sale_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        rows = await sql.fetch(self.session, _TRACKED_OF, chain_id, list(sale_ids))
        return {row[0] for row in rows}

    async def sale_ids_of_customer(self, customer_id: uuid.UUID) -> list[uuid.UUID]:
        return list(
            (
                await self.session.execute(
                    sa.select(t.overdue_sales.c.sale_id).where(
                        t.overdue_sales.c.customer_id == customer_id
                    )
                )
            ).scalars()
        )

    async def insert_sale(self, lines: list[tuple[int, Any]], **values: Any) -> None:
        """The sale and its lines, (line_no, owed) each."""
        await self.session.execute(sa.insert(t.overdue_sales).values(**values))
        await self.session.execute(
            sa.insert(t.overdue_lines),
            [
                {
                    "chain_id": values["chain_id"],
                    "sale_id": values["sale_id"],
                    "line_no": no,
                    "owed": owed,
                }
                for no, owed in lines
            ],
        )

    async def mark_discount_revoked(self, chain_id: uuid.UUID, sale_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.update(t.overdue_sales)
            .where(t.overdue_sales.c.chain_id == chain_id, t.overdue_sales.c.sale_id == sale_id)
            .values(discount_revoked=True)
        )

    async def mark_settled(self, chain_id: uuid.UUID, sale_ids: list[uuid.UUID]) -> None:
        await self.session.execute(
            sa.update(t.overdue_sales)
            .where(t.overdue_sales.c.chain_id == chain_id, t.overdue_sales.c.sale_id.in_(sale_ids))
            .values(settled=True)
        )

    async def set_owed(
        self, chain_id: uuid.UUID, sale_id: uuid.UUID, line_no: int, owed: Any
    ) -> None:
        """The line's owed amount; a balance-mode sale followed as one amount (line 0) has
        that amount replaced by its lines. One statement (a change of line 0 itself leaves
        no line 0, as setting it and then dropping the one amount did)."""
        if line_no == 0:
            await sql.execute(self.session, _DROP_SALE_AMOUNT, chain_id, sale_id)
        else:
            await sql.execute(self.session, _SET_OWED, chain_id, sale_id, line_no, owed)

    async def owing(self, customer_ids: Sequence[uuid.UUID]) -> Sequence[Any]:
        """The live overdue view: unsettled sales of the customers that still owe money, by
        due date (customer_id, sale_id, due_date, discount, discount_revoked, owed)."""
        owed = sa.func.sum(t.overdue_lines.c.owed)
        return (
            await self.session.execute(
                sa.select(
                    t.overdue_sales.c.customer_id,
                    t.overdue_sales.c.sale_id,
                    t.overdue_sales.c.due_date,
                    t.overdue_sales.c.discount,
                    t.overdue_sales.c.discount_revoked,
                    owed.label("owed"),
                )
                .join(
                    t.overdue_lines,
                    sa.and_(
                        t.overdue_lines.c.chain_id == t.overdue_sales.c.chain_id,
                        t.overdue_lines.c.sale_id == t.overdue_sales.c.sale_id,
                    ),
                )
                .where(
                    t.overdue_sales.c.customer_id.in_(list(customer_ids)),
                    t.overdue_sales.c.settled.is_(False),
                )
                .group_by(t.overdue_sales.c.chain_id, t.overdue_sales.c.sale_id)
                .having(owed > 0)
                .order_by(t.overdue_sales.c.due_date, t.overdue_sales.c.sale_id)
            )
        ).all()

    async def owing_customers(self) -> Sequence[Any]:
        """(chain_id, customer_id) of every customer with an unsettled sale that owes money."""
        owed = sa.func.sum(t.overdue_lines.c.owed)
        return (
            await self.session.execute(
                sa.select(t.overdue_sales.c.chain_id, t.overdue_sales.c.customer_id)
                .join(
                    t.overdue_lines,
                    sa.and_(
                        t.overdue_lines.c.chain_id == t.overdue_sales.c.chain_id,
                        t.overdue_lines.c.sale_id == t.overdue_sales.c.sale_id,
                    ),
                )
                .where(t.overdue_sales.c.settled.is_(False))
                .group_by(t.overdue_sales.c.chain_id, t.overdue_sales.c.customer_id)
                .having(owed > 0)
            )
        ).all()


# --------------------------------------------------------------------------- tasks


class Tasks(_Tables):
    """Reminder tasks (one open task per customer at most: a partial unique index)."""

    async def get(self, task_id: uuid.UUID, chain_id: uuid.UUID | None = None) -> Any:
        """The task (of `chain_id` when given), or None."""
        query = sa.select(t.tasks).where(t.tasks.c.task_id == task_id)
        if chain_id is not None:
            query = query.where(t.tasks.c.chain_id == chain_id)
        return (await self.session.execute(query)).one_or_none()

    async def customer_of(self, chain_id: uuid.UUID, task_id: uuid.UUID) -> uuid.UUID | None:
        customer_id: uuid.UUID | None = await self.session.scalar(
            sa.select(t.tasks.c.customer_id).where(
                t.tasks.c.task_id == task_id, t.tasks.c.chain_id == chain_id
            )
        )
        return customer_id

    async def open_of(self, customer_id: uuid.UUID) -> Any:
        return (
            await self.session.execute(
                sa.select(t.tasks).where(
                    t.tasks.c.customer_id == customer_id, t.tasks.c.status == OPEN
                )
            )
        ).first()

    async def last_of(self, customer_id: uuid.UUID) -> Any:
        return (
            await self.session.execute(
                sa.select(t.tasks)
                .where(t.tasks.c.customer_id == customer_id)
                .order_by(t.tasks.c.raised_at.desc(), t.tasks.c.created_at.desc())
                .limit(1)
            )
        ).first()

    async def page(
        self,
        chain_id: uuid.UUID,
        status: str,
        *,
        oldest_first: bool,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> Sequence[Any]:
        """The chain's tasks in `status`: `oldest_first` by (created_at, task_id), else the
        latest closed first by (closed_at, task_id); `limit` of them after `after`."""
        tasks = t.tasks
        stmt = sa.select(tasks).where(tasks.c.chain_id == chain_id, tasks.c.status == status)
        if oldest_first:
            key_cols = (tasks.c.created_at, tasks.c.task_id)
            stmt = stmt.order_by(*key_cols)
        else:
            key_cols = (tasks.c.closed_at, tasks.c.task_id)
            stmt = stmt.order_by(*(c.desc() for c in key_cols))
        if after is not None:
            pair = sa.tuple_(*key_cols)
            stmt = stmt.where(pair > after if oldest_first else pair < after)
        return (await self.session.execute(stmt.limit(limit))).all()

    async def open_of_items(self, task_ids: list[uuid.UUID]) -> Sequence[Any]:
        """The tasks still open among `task_ids`, oldest first."""
        return (
            await self.session.execute(
                sa.select(t.tasks)
                .where(t.tasks.c.task_id.in_(task_ids), t.tasks.c.status == OPEN)
                .order_by(t.tasks.c.created_at, t.tasks.c.task_id)
            )
        ).all()

    async def open_per_chain(self) -> dict[uuid.UUID, int]:
        rows = (
            await self.session.execute(
                sa.select(t.tasks.c.chain_id, sa.func.count())
                .where(t.tasks.c.status == OPEN)
                .group_by(t.tasks.c.chain_id)
            )
        ).all()
        return {r[0]: r[1] for r in rows}

    async def insert(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.tasks).values(**values))

    async def update(self, task_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            sa.update(t.tasks).where(t.tasks.c.task_id == task_id).values(**values)
        )

    async def raise_again(self, task_id: uuid.UUID, **values: Any) -> datetime:
        """Update the open task; its `created_at`."""
        created_at: datetime = await self.session.scalar(
            sa.update(t.tasks)
            .where(t.tasks.c.task_id == task_id)
            .values(**values)
            .returning(t.tasks.c.created_at)
        )
        return created_at


# --------------------------------------------------------------------------- webhooks


class Webhooks(_Tables):
    """A chain's webhook, its deliveries (claimed `FOR UPDATE SKIP LOCKED`) and dead ones."""

    async def put(self, chain_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(_upsert(t.webhooks, "chain_id", chain_id, values))

    async def delete(self, chain_id: uuid.UUID) -> None:
        await self.session.execute(sa.delete(t.webhooks).where(t.webhooks.c.chain_id == chain_id))

    async def url(self, chain_id: uuid.UUID) -> str | None:
        url: str | None = await self.session.scalar(
            sa.select(t.webhooks.c.url).where(t.webhooks.c.chain_id == chain_id)
        )
        return url

    async def url_and_secret(self, chain_id: uuid.UUID) -> Any:
        return (
            await self.session.execute(
                sa.select(t.webhooks.c.url, t.webhooks.c.secret).where(
                    t.webhooks.c.chain_id == chain_id
                )
            )
        ).first()

    async def insert_delivery(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.webhook_deliveries).values(**values))

    async def claim_due(self, moment: datetime, limit: int) -> Sequence[Any]:
        """Pending deliveries due at `moment`, oldest first, locked (skipping those another
        transaction holds)."""
        d = t.webhook_deliveries
        return (
            await self.session.execute(
                sa.select(d.c.delivery_id, d.c.chain_id, d.c.task_id, d.c.body, d.c.attempts)
                .where(d.c.status == "pending", d.c.next_attempt_at <= moment)
                .order_by(d.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()

    async def update_delivery(self, delivery_id: uuid.UUID, **values: Any) -> None:
        d = t.webhook_deliveries
        await self.session.execute(
            sa.update(d).where(d.c.delivery_id == delivery_id).values(**values)
        )

    async def insert_dead_letter(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.webhook_dead_letters).values(**values))


# --------------------------------------------------------------------------- mail


class Mail(_Tables):
    """Items waiting for a chain's reminder digest, and the digests."""

    async def insert_item(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.mail_items).values(**values))

    async def chains_waiting(self) -> list[uuid.UUID]:
        return list(
            (
                await self.session.execute(
                    sa.select(t.mail_items.c.chain_id)
                    .where(t.mail_items.c.digest_id.is_(None))
                    .distinct()
                )
            ).scalars()
        )

    async def waiting_items(self, chain_id: uuid.UUID) -> Sequence[Any]:
        return (
            await self.session.execute(
                sa.select(t.mail_items)
                .where(t.mail_items.c.chain_id == chain_id, t.mail_items.c.digest_id.is_(None))
                .order_by(t.mail_items.c.raised_at, t.mail_items.c.item_id)
            )
        ).all()

    async def take_items(self, item_ids: list[uuid.UUID], digest_id: uuid.UUID) -> None:
        await self.session.execute(
            sa.update(t.mail_items)
            .where(t.mail_items.c.item_id.in_(item_ids))
            .values(digest_id=digest_id)
        )

    async def insert_digest(self, **values: Any) -> None:
        await self.session.execute(sa.insert(t.mail_digests).values(**values))

    async def claim_due_digest(self, moment: datetime) -> Any:
        """The oldest pending digest due at `moment`, locked (skipping those another
        transaction holds), or None."""
        d = t.mail_digests
        return (
            await self.session.execute(
                sa.select(d)
                .where(d.c.status == "pending", d.c.next_attempt_at <= moment)
                .order_by(d.c.next_attempt_at, d.c.digest_id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
        ).first()

    async def update_digest(self, digest_id: uuid.UUID, **values: Any) -> None:
        d = t.mail_digests
        await self.session.execute(sa.update(d).where(d.c.digest_id == digest_id).values(**values))
