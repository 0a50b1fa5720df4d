"""Delivery of audit events to notifiers and webhooks: a cursor per consumer, dead letters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A frozen snapshot of ``delivery.define_tables`` (``tests/records/test_records_migrations.py``
checks that the two agree).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from banata_middleware.stores.records.types import Ident

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.create_table(
        f"{p}delivery_cursors",
        sa.Column("consumer", Ident(128), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=False, server_default=""),
        sa.Column("lease_until", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(200), nullable=False, server_default=""),
    )
    op.create_table(
        f"{p}dead_letters",
        sa.Column("consumer", Ident(128), primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failed_at", sa.BigInteger, nullable=False),
        sa.Column("error", sa.String(200), nullable=False, server_default=""),
        sa.Column("replay_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    for table in ("dead_letters", "delivery_cursors"):
        op.drop_table(f"{p}{table}")
