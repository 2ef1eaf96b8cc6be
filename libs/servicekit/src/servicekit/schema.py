"""The messaging tables every service has in its own database: `outbox` and `inbox`, and the
optional `consumer_positions`.

Services declare them on their own `MetaData` with `messaging_tables(metadata)` and create them
in their first migration with `create_messaging_tables()`. A service whose consumer records its
positions (`Consumer.record_positions`: reporting, for its snapshots) also has
`consumer_positions` (`positions_table(metadata)`, `create_positions_table()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID


@dataclass(frozen=True)
class MessagingTables:
    outbox: sa.Table
    inbox: sa.Table


def messaging_tables(metadata: sa.MetaData) -> MessagingTables:
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Index("outbox_unsent", "id", postgresql_where=sa.text("sent_at IS NULL")),
        sa.Index("outbox_sent_at", "sent_at", postgresql_where=sa.text("sent_at IS NOT NULL")),
    )
    inbox = sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("message_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )
    return MessagingTables(outbox=outbox, inbox=inbox)


def positions_table(metadata: sa.MetaData) -> sa.Table:
    """`consumer_positions`: per consumer and topic-partition, the offset after the last message
    a committed batch read (applied, skipped as a duplicate or dead-lettered). Written in the
    batch's own transaction, so whatever the database holds reflects every message below it:
    a copy of the database taken in one transaction is a consistent snapshot of the log up to
    these offsets."""
    return sa.Table(
        "consumer_positions",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def create_positions_table() -> None:
    """Create `consumer_positions` from inside an Alembic migration."""
    from alembic import op

    positions_table(sa.MetaData()).create(op.get_bind())


def create_messaging_tables() -> None:
    """Create `outbox` and `inbox` from inside an Alembic migration."""
    from alembic import op

    metadata = sa.MetaData()
    tables = messaging_tables(metadata)
    bind = op.get_bind()
    tables.outbox.create(bind)
    tables.inbox.create(bind)


def drop_messaging_tables() -> None:
    from alembic import op

    op.drop_table("inbox")
    op.drop_table("outbox")


#: The tables as servicekit itself uses them (same names and columns in every service database).
_METADATA = sa.MetaData()
_TABLES = messaging_tables(_METADATA)
OUTBOX = _TABLES.outbox
INBOX = _TABLES.inbox
POSITIONS = positions_table(_METADATA)
