"""Snapshots of the read models: the projection's positions per partition, and the catalog.

`consumer_positions` is written by every batch of the projection (servicekit's
`Consumer.record_positions`); it starts from the inbox, which holds the offset of every message
applied so far. `snapshots` lists the snapshots taken (`reporting.service_layer.snapshots`),
each a schema `rm_snapshot_<id>` of its own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from alembic import op

from servicekit.schema import create_positions_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_positions_table()
    op.execute(
        """INSERT INTO consumer_positions (consumer, topic, partition, next_offset)
           SELECT consumer, topic, partition, max("offset") + 1 FROM inbox
           GROUP BY consumer, topic, partition"""
    )
    op.execute(
        """CREATE TABLE snapshots (
               snapshot_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               schema_name text NOT NULL UNIQUE,
               consumer text NOT NULL,
               taken_at timestamptz NOT NULL,
               positions jsonb NOT NULL,
               row_counts jsonb NOT NULL,
               seconds double precision NOT NULL
           )"""
    )


def downgrade() -> None:
    op.execute(
        """DO $$ DECLARE s text; BEGIN
             FOR s IN SELECT schema_name FROM snapshots LOOP
               EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s);
             END LOOP; END $$"""
    )
    op.drop_table("snapshots")
    op.drop_table("consumer_positions")
